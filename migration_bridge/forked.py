"""Forked helper processes that report over a pipe: how they start, fail and stop, in one
place. The helper runs ``work(*args, send)`` with connections of its own to the target
(never the parent's pooled ones); what it sends is the caller's business, but
a failure always arrives as ``("error", (exit code, one line))`` and is raised by
``Helper.receive`` as the same error the helper would have ended a run with.

A helper ignores Ctrl-C (its parent handles it and stops it), holds only its own end of
the pipe (a gone parent is a broken pipe, not a blocked write) and, on Linux, is ended
with its parent however that ends: a helper waiting for a lock would otherwise outlive it.
"""
from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
from typing import Any, Callable

import sqlalchemy as sa

from .errors import EXIT_INTERRUPTED, BridgeError, Interrupted, describe, quiet_child_signals, signals_held_for_fork


class Helper:
    def __init__(self, work: Callable[..., None], args: tuple, name: str, engine: sa.Engine, daemon: bool = True):
        """``engine``: the target engine the work uses; ``daemon=False`` for a helper that
        starts helpers of its own."""
        fork = multiprocessing.get_context("fork")
        self._receive, send = fork.Pipe(duplex=False)
        self.name = name
        self.finished = False  # it sent ("done", ...): all it had to say
        self.process = fork.Process(target=_main, args=(work, args, engine, self._receive, send, os.getpid()), name=name,
                                    daemon=daemon)
        with signals_held_for_fork():
            self.process.start()
        send.close()

    @property
    def connection(self):
        """For ``multiprocessing.connection.wait``."""
        return self._receive

    def receive(self) -> tuple[str, Any]:
        """The next ``(kind, payload)`` the helper sent; its failure raised."""
        try:
            kind, payload = self._receive.recv()
        except EOFError:
            self.process.join()
            raise BridgeError(f"{self.name} died (exit status {self.process.exitcode})") from None
        if kind == "error":
            code, line = payload
            raise Interrupted() if code == EXIT_INTERRUPTED else BridgeError(line)
        self.finished = kind == "done"
        return kind, payload

    def stop(self) -> None:
        """Ended and joined: once it has said "done" it exits by itself, else it is terminated."""
        if self.finished:
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self._receive.close()


def settle_forked_child() -> None:
    """First thing in a forked child: its own signal handling, and the objects its parent
    made left out of its garbage collections, which then walk only what the child makes
    (on medium, verify's processes spent 11.7 s of CPU in full collections, 1.2 s without them)."""
    quiet_child_signals()
    gc.freeze()


def _main(work: Callable[..., None], args: tuple, engine: sa.Engine, receive, send, parent: int) -> None:
    settle_forked_child()
    receive.close()  # the parent's end: with it closed here, a gone parent is a broken pipe
    try:
        _end_with(parent)
        engine.dispose(close=False)  # the parent's pooled connections are not ours
        work(*args, send)
    except BaseException as exc:  # noqa: BLE001 - the parent raises it
        try:
            send.send(("error", describe(exc)))
        except OSError:  # the parent is gone
            pass
    finally:
        send.close()


def _end_with(parent: int) -> None:
    """SIGTERM when the parent ends (Linux's PR_SET_PDEATHSIG); elsewhere, nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before this helper could ask
        raise Interrupted("the parent process is gone")


_PR_SET_PDEATHSIG = 1

"""The one error path of the three management commands.

``run_command(command, work, traceback=...)`` runs ``work()`` with

- SIGINT and SIGTERM turned into ``errors.Interrupted`` in the main thread (a second
  signal while the first is being handled ends the process at once, exit 130);
- the ``migration_bridge`` log sent to the command's own streams for its duration:
  progress and notices to stdout, warnings to stderr (the project's other handlers,
  e.g. files, keep receiving them);
- every exception turned into one line on stderr and the exit code of
  ``errors.describe`` (``--traceback``: unexpected errors re-raised with their stack).
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, BridgeError, Interrupted, describe

T = TypeVar("T")
log = logging.getLogger("migration_bridge")

# Set by the running command (--lock-timeout), so error lines can say how long was waited.
current = {"lock_timeout": None, "waiting_for": None}  # waiting_for: set by waits.Watch


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _StreamHandler(logging.StreamHandler):
    """Writes to the stream current at emit time (tests and Django swap sys.stdout)."""

    def __init__(self, get_stream):
        super().__init__()
        self._get_stream = get_stream

    @property
    def stream(self):
        return self._get_stream()

    @stream.setter
    def stream(self, value):
        pass


@contextmanager
def command_logging(stdout, stderr):
    """INFO (progress, notices) → stdout; WARNING and above → stderr."""
    logger = logging.getLogger("migration_bridge")
    saved_handlers, saved_level = logger.handlers[:], logger.level
    out = _StreamHandler(lambda: stdout)
    out.addFilter(_Below(logging.WARNING))
    out.setLevel(logging.INFO)
    err = _StreamHandler(lambda: stderr)
    err.setLevel(logging.WARNING)
    # console handlers the project configured would print the same lines twice
    logger.handlers = [h for h in saved_handlers if type(h) is not logging.StreamHandler] + [out, err]
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.level = saved_handlers, saved_level


# allocations between two collections of the young objects (Python's default: 700)
YOUNG_COLLECTION_EVERY = 10_000


@contextmanager
def fewer_collections():
    """The young objects collected every YOUNG_COLLECTION_EVERY allocations: a batch of rows
    is thousands of dicts that die together by reference count, and collected every 700
    they were walked two or three times first (on medium, an export's processes spent 25 s
    of their 206 s of CPU collecting, 3.3 s with this; a verify's 6.2 s, then 1.5 s)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_COLLECTION_EVERY), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def interruptible():
    """SIGINT/SIGTERM → Interrupted in the main thread; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if received:
            os.write(2, f"{name} again: stopping now\n".encode())
            os._exit(EXIT_INTERRUPTED)
        received.append(name)
        raise Interrupted(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_command(command, work: Callable[[], T], traceback: bool = False) -> T:
    """Run ``work`` for a BaseCommand; on failure print one line and exit with its code."""
    stderr = getattr(command.stderr, "_out", command.stderr)  # Django's OutputWrapper → its stream
    stdout = getattr(command.stdout, "_out", command.stdout)
    try:
        with command_logging(stdout, stderr), interruptible(), fewer_collections():
            return work()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the one place that turns them into exit codes
        code, line = describe(exc, current["lock_timeout"], current["waiting_for"])
        try:
            if traceback and code == EXIT_UNEXPECTED:
                import traceback as tb

                tb.print_exception(exc, file=stderr)
            stderr.write(f"error: {line}\n")
            stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not hide the exit code
            pass
        if code == EXIT_INTERRUPTED:
            # an interrupted command ends now, its helper processes with it: the interpreter's
            # exit would join threads still in a file upload or a statement, and a helper
            # left waiting on a lock held elsewhere would keep the command's output open
            # (what was committed is kept; the next run cleans up)
            for stream in (stdout, stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            for child in multiprocessing.active_children():
                try:
                    child.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            os._exit(code)
        raise SystemExit(code) from None


# --- checks every command makes before any work ---------------------------------------

def check_writable_dir(path: str | os.PathLike, what: str, option: str) -> Path:
    """Create ``path`` (a directory) if needed and prove it can hold a file: raises
    BridgeError naming ``option`` when not. Called before any work starts."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bridge-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError):
            reason = "a file is in the way"
        where = exc.filename or directory
        raise BridgeError(f"cannot write the {what} to {directory} ({reason}: {where}); "
                          f"choose another {option} or fix the path — checked before any work") from None
    return directory


def one_line(exc: BaseException) -> str:
    """What a report says about an error: the line the user saw (no secret)."""
    return describe(exc, current["lock_timeout"])[1]


# --- options declared once, on the options dataclass --------------------------------------

def flag(default: Any, help: str, **argparse: Any):
    """A dataclass field that is also a command-line option (``--field-name``, or
    ``flag=``); ``argparse`` keywords pass through (``type``, ``choices``, ``metavar``,
    ``cli_default`` for a command-line default other than the field's)."""
    return field(default=default, metadata={"help": help, **argparse})


def add_options(parser, options_class) -> None:
    """One ``parser.add_argument`` per ``flag`` field of ``options_class``."""
    for f in fields(options_class):
        meta = dict(f.metadata)
        if "help" not in meta:
            continue
        name = "--" + meta.pop("flag", f.name.replace("_", "-"))
        default = meta.pop("cli_default", None if f.default is MISSING else f.default)
        if default is False and "type" not in meta:
            meta["action"] = "store_true"
        elif "type" not in meta and default is not None and "choices" not in meta:
            meta["type"] = type(default)
        parser.add_argument(name, dest=f.name, default=default, **meta)


def options_from(options_class, opts: dict, **values: Any):
    """``options_class`` from parsed options (its ``flag`` fields), ``values`` winning."""
    given = {f.name: opts[f.name] for f in fields(options_class) if "help" in f.metadata and f.name in opts}
    return options_class(**{**given, **values})

"""Errors and exit codes shared by the three commands.

Every failure the tool can anticipate ends as one line and an exit code (see
``describe``); ``cli.run_command`` is the one place that prints it.

=====  ==================================================================
code   meaning
=====  ==================================================================
0      success
1      the work ran but needs a decision (a verify check failed, --strict rejects)
2      bad input, or a database/storage unreachable or failing mid-run, a timeout,
       a lock not granted in time, a disk or permission error: fix it, run again
3      unexpected error (a bug): one line; ``--traceback`` shows the stack
130    interrupted (SIGINT / Ctrl-C, or SIGTERM): committed work is kept, run again
=====  ==================================================================
"""
from __future__ import annotations

import contextlib
import errno
import re
import signal

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130

RERUN = "run the same command again: it resumes from the last committed batch"


class BridgeError(Exception):
    """An error the user can cause or fix: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT), raised in the main thread by cli's signal handler."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def quiet_child_signals() -> None:
    """In a forked helper process: its parent handles Ctrl-C and stops it with SIGTERM,
    which ends it at once (its open transaction rolls back), with nothing printed. Then
    lets through the signals ``signals_held_for_fork`` held."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


@contextlib.contextmanager
def signals_held_for_fork():
    """Around starting a forked helper: Ctrl-C and SIGTERM wait (in the parent, for the
    moment of the fork) until the child has its own handling (``quiet_child_signals``).
    Else one arriving just after the fork runs the parent's handler in the child, in the
    middle of its at-fork hooks, and can leave a lock there held for good."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


# --- secrets never reach a message ------------------------------------------------------

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?=@)")
_PASSWORD_WORDS = re.compile(r"(?i)(?P<head>\bpassword\s*[=:]\s*)(?P<pw>'[^']*'|\"[^\"]*\"|\S+)")


def redact(text: str) -> str:
    """``text`` with URL passwords and ``password=...`` values replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    return _PASSWORD_WORDS.sub(lambda m: m.group("head") + "***", text)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (the driver's own for DB errors)."""
    inner = getattr(exc, "orig", None) or exc
    args = getattr(inner, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):  # MySQLdb: (code, text)
        return redact(f"{args[1].strip()} ({args[0]})")
    for line in str(inner).strip().splitlines():
        if line.strip():
            return redact(line.strip())
    return type(inner).__name__


# --- classification ---------------------------------------------------------------------

_LOST = ("server closed the connection", "connection already closed", "terminating connection",
         "lost connection", "has gone away", "connection refused", "could not connect",
         "connection to server", "does not exist", "unknown database", "no such table",
         "consuming input failed", "the connection is closed", "connection is lost")


def _sqlstate(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or getattr(exc, "__cause__", None) or exc
    state = getattr(inner, "sqlstate", None) or getattr(getattr(inner, "diag", None), "sqlstate", None)
    return state or ""


def _mysql_code(exc: BaseException) -> int | None:
    inner = getattr(exc, "orig", None) or getattr(exc, "__cause__", None) or exc
    args = getattr(inner, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _is_lock_wait(state: str, code, lowered: str) -> bool:
    return (state == "55P03" or code == 1205 or "lock wait timeout" in lowered or "lock timeout" in lowered
            or "database is locked" in lowered)


def _is_statement_timeout(state: str, code, lowered: str) -> bool:
    return (state == "57014" or code in (1317, 3024, 1969) or "statement timeout" in lowered
            or "max_statement_time" in lowered or "maximum statement execution time" in lowered)


def is_wait_error(exc: BaseException) -> bool:
    """A lock not granted in time or a statement cancelled by a timeout."""
    state, code, lowered = _sqlstate(exc), _mysql_code(exc), first_line(exc).lower()
    return _is_lock_wait(state, code, lowered) or _is_statement_timeout(state, code, lowered)


def database_error_line(exc: BaseException, side: str, lock_timeout: float | None = None,
                        waiting_for: str | None = None) -> str:
    """One line for a database error raised mid-run, naming ``side`` (target / legacy)."""
    state, code, text = _sqlstate(exc), _mysql_code(exc), first_line(exc)
    lowered = text.lower()
    wait = f" after {lock_timeout:g}s (--lock-timeout)" if lock_timeout else " (--lock-timeout)"
    if _is_lock_wait(state, code, lowered):
        on = f" on {waiting_for}" if waiting_for else ""
        return (f"gave up waiting for a lock{on} in the {side} database{wait}: {text}; "
                f"end the session holding it (or raise --lock-timeout), then {RERUN}")
    if _is_statement_timeout(state, code, lowered):
        return (f"the {side} database cancelled a statement: {text}; raise or remove its statement "
                f"timeout (e.g. options=-c statement_timeout=... in the URL), then {RERUN}")
    if state.startswith("08") or state in ("57P01", "57P02", "57P03", "3D000") or code in (
            1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013, 2055) or any(w in lowered for w in _LOST):
        return f"the {side} database became unreachable mid-run: {text}; when it is back, {RERUN}"
    if state.startswith("53") or code in (1021, 1114, 3) or "no space left" in lowered or "disk full" in lowered:
        return f"the {side} database is out of space: {text}; free some space, then {RERUN}"
    if state == "42501" or code in (1142, 1143, 1227) or "permission denied" in lowered:
        return f"the {side} database refused an operation: {text}; grant the privilege, then {RERUN}"
    return f"{side} database error: {text}; {RERUN}"


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    reason = exc.strerror or first_line(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left writing{where}: free some space, then {RERUN}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied on{where}: {reason}; fix the permissions, then {RERUN}"
    return f"cannot use{where}: {reason}; fix it, then {RERUN}"


def _is_raw_driver_error(exc: BaseException) -> bool:
    import importlib

    for name in ("psycopg", "MySQLdb", "sqlite3"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if isinstance(exc, module.Error):
            return True
    return False


def describe(exc: BaseException, lock_timeout: float | None = None,
             waiting_for: str | None = None) -> tuple[int, str]:
    """(exit code, one line) for any exception that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        name = getattr(exc, "signal_name", "SIGINT")
        return EXIT_INTERRUPTED, (f"interrupted ({name}): what was committed is kept and the run is "
                                  f"recorded as failed; {RERUN}")
    if isinstance(exc, BridgeError):
        return exc.exit_code, redact(str(exc))
    try:
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.DBAPIError):
            return EXIT_BAD_INPUT, database_error_line(exc, "target", lock_timeout, waiting_for)
        if isinstance(exc, sa.exc.TimeoutError):  # the connection pool
            return EXIT_BAD_INPUT, f"no target database connection became free in time: {first_line(exc)}"
    except ImportError:  # pragma: no cover
        pass
    try:
        from django.db import Error as DjangoDatabaseError

        if isinstance(exc, DjangoDatabaseError):
            return EXIT_BAD_INPUT, database_error_line(exc, "legacy", lock_timeout)
    except ImportError:  # pragma: no cover
        pass
    if _is_raw_driver_error(exc):  # e.g. psycopg's COPY, used on the driver connection directly
        return EXIT_BAD_INPUT, database_error_line(exc, "target", lock_timeout, waiting_for)
    if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_BAD_INPUT, _os_error(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_BAD_INPUT, f"a connection failed: {type(exc).__name__}: {first_line(exc)}; {RERUN}"
    return EXIT_UNEXPECTED, (f"unexpected error: {type(exc).__name__}: {first_line(exc)} "
                             "(a bug: run again with --traceback for the stack and report it)")

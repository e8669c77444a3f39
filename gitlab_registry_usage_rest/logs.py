"""Logging set-up for the process: plain text lines, or one JSON object per line for log collectors.

Only the CLI calls ``configure``; every module just uses ``logging.getLogger(__name__)``. Structured
fields go in ``extra={"fields": {...}}``: text lines already carry them in the message, JSON lines
also get them as keys.

Lines are written in batches, a few times a second (warnings and errors at once). Written one by
one, every access log line took the handler's lock around a write to stderr, and at a thousand
requests a second the request threads queued on that lock (a quarter of the throughput at 32
connections); handing each record to a writing thread instead (QueueHandler) cost a thread switch
per request, as much again. ``flush`` writes what is pending; it runs at exit too.

Text lines escape what the code did not write itself: every argument of a record (a request's path,
a user name, a registry's repository or tag name, an exception's text), a message that is not a
string, and the messages of a traceback's exceptions, as ``repr`` would (a line feed becomes ``\\n``, an
escape character ``\\x1b``, a backslash ``\\\\``), while printable characters of every script pass as
they are. So no value can start a line of its own that would pass for a record, or move the cursor of
a terminal showing the log. Line breaks the code writes into a message template (one line per
refresh error) stay. JSON lines need nothing of this: ``json.dumps`` escapes every control character.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import numbers
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any, TextIO

FLUSH_INTERVAL = 0.25

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def escape(text: str, backslash: bool = True) -> str:
    """``text`` with each control or other non-printable character escaped as ``repr`` escapes it.

    With ``backslash``, a backslash is doubled too, so that an escape in the output always stands for the
    character it names (``repr`` output already has its own backslashes: it is escaped without).
    """
    if text.isprintable() and (not backslash or "\\" not in text):
        return text  # nearly every value: no copy
    return "".join(
        char if char.isprintable() and (char != "\\" or not backslash) else _escaped_char(char) for char in text)


def _escaped_char(char: str) -> str:
    # repr("\n") == "'\\n'", repr("\\") == "'\\\\'": the text between the quotes.
    return repr(char)[1:-1]


class _EscapedStr(str):
    """An escaped string argument: its text for ``%s``, and for ``%r`` the original's ``repr`` (safe as it is)."""

    __slots__ = ("_original",)
    _original: str

    def __new__(cls, original: str) -> _EscapedStr:
        escaped = super().__new__(cls, escape(original))
        escaped._original = original
        return escaped

    def __repr__(self) -> str:
        return repr(self._original)


class _EscapedObject:
    """Any other argument (an exception, a path): ``str`` and ``repr`` computed, then escaped."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __str__(self) -> str:
        return escape(str(self._value))

    def __repr__(self) -> str:
        return escape(repr(self._value), backslash=False)


# Numbers stay numbers, for %d and %.1f: none of them prints anything but digits, signs, dots and letters.
_NUMBERS = frozenset({int, float, bool})


def _escaped_arg(value: Any) -> Any:
    kind = type(value)
    if kind is str:  # the usual case first: an access log line has three
        return value if value.isprintable() and "\\" not in value else _EscapedStr(value)
    if kind in _NUMBERS or isinstance(value, numbers.Number):
        return value
    return _EscapedObject(value)  # str subclasses too: %s uses their __str__, which may differ from their text


def escaped_message(record: logging.LogRecord) -> str:
    """The record's message with its arguments (and a message that is not a string) escaped."""
    message = record.msg
    if not isinstance(message, str):
        message = escape(str(message))  # an object logged as it is (log.error(error)): data, not a template
    args = record.args
    if not args:
        return message
    if isinstance(args, dict):  # log.info("%(name)s", {"name": ...})
        return message % {key: _escaped_arg(value) for key, value in args.items()}
    return message % tuple([_escaped_arg(value) for value in args])


def escaped_traceback(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    """The standard traceback text, with the message of each exception in it (data as well) escaped.

    Its layout stays: frames and the chained exceptions' headers are the interpreter's, one per line.
    """
    text = "".join(traceback.format_exception(*exc_info))
    seen: set[int] = set()
    error: BaseException | None = exc_info[1]
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        raw = "".join(traceback.format_exception_only(type(error), error))
        safe = escape(raw.removesuffix("\n"), backslash=False) + "\n"
        if safe != raw:
            text = text.replace(raw, safe)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return text.removesuffix("\n")


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines, with the date and time part computed once per second, not once per line,
    and every value that came from outside escaped (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format, with the message built from escaped arguments.
        record.message = escaped_message(record)
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        # Not the text another handler's formatter may have cached in record.exc_text: that one is unescaped.
        exc_text = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        if exc_text:
            line = f"{line}\n{exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line

    def formatException(self, ei: Any) -> str:
        return escaped_traceback(ei)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's fields, any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Formats each record at once and writes the lines every ``interval`` seconds, or at once from WARNING on."""

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._write_periodically, args=(interval,), name="log-writer",
                                        daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the handler's lock held (Handler.handle).
        try:
            self._pending.append(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self._write()
        except Exception:  # noqa: BLE001 - logging's own policy: report on stderr, never raise into the caller
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _write(self) -> None:
        if self._pending:
            lines, self._pending = "".join(self._pending), []
            self.stream.write(lines)
            self.stream.flush()

    def _write_periodically(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - stderr gone: nothing better to do than keep trying
                pass


_handler: BatchingHandler | None = None


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """Send the package's records to stderr in the chosen format, in batches."""
    global _handler
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
        if existing is _handler:
            existing.close()
    root.addHandler(handler)
    _handler = handler
    root.setLevel(level)
    # The logging HOWTO's "Optimization": no format here shows threads, processes or source lines, so a
    # record (one per request) need not look them up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    # Werkzeug's and cheroot's own request lines would repeat ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def flush() -> None:
    """Write every pending line now (before the process ends)."""
    if _handler is not None:
        _handler.flush()


atexit.register(flush)

"""Logging set-up for the process: plain text lines, or one JSON object per line for log collectors.

Only the CLI calls ``configure``; every module just uses ``logging.getLogger(__name__)``. Structured
fields go in ``extra={"fields": {...}}``: text lines already carry them in the message, JSON lines
also get them as keys.

Lines are written in batches, a few times a second (warnings and errors at once). Written one by
one, every access log line took the handler's lock around a write to stderr, and at a thousand
requests a second the request threads queued on that lock (a quarter of the throughput at 32
connections); handing each record to a writing thread instead (QueueHandler) cost a thread switch
per request, as much again. ``flush`` writes what is pending; it runs at exit too.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import sys
import threading
import time
from typing import TextIO

FLUSH_INTERVAL = 0.25

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines, with the date and time part computed once per second, not once per line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._stamp = ""

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

"""Process wiring: the WSGI server (cheroot, or Werkzeug in debug mode) and clean shutdown on signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import run_simple

from .config import GeneralConfig
from .refresher import Refresher

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

MAX_REQUEST_BODY = 64 * 1024
LISTEN_BACKLOG = 1024
# cheroot copies each chunk it is given into its write buffer, and again before every send() of what is
# left, so one 12 MB chunk costs quadratic copying and a copy per connection: bodies go out in pieces.
PIECE = 128 * 1024


def serve(app: Flask, general: GeneralConfig, refresher: Refresher | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` at ``server_prefix`` until SIGTERM or SIGINT, running ``refresher`` alongside."""
    if refresher is not None:
        refresher.start()
    try:
        if general.debug:
            _serve_debug(app, general)
        else:
            _serve_cheroot(app, general, on_ready, refresher)
    finally:
        if refresher is not None:
            refresher.stop()


def _serve_cheroot(app: Flask, general: GeneralConfig, on_ready: Callable[[str], None] | None,
                   refresher: Refresher | None) -> None:
    prefix = "" if general.server_prefix == "/" else general.server_prefix
    dispatcher = wsgi.PathInfoDispatcher({prefix or "/": in_pieces(app)})  # type: ignore[no-untyped-call]
    # The Server header names no version. cheroot's default listen backlog of 5 drops the SYNs of a burst
    # of new connections (dashboards after a restart, a load balancer's pool), and each retransmit costs
    # the client a second: the kernel's limit (somaxconn) caps this anyway.
    server = wsgi.Server((general.socket_host, general.socket_port), dispatcher, server_name="registry-usage",
                         numthreads=general.threads, request_queue_size=LISTEN_BACKLOG)
    # Bounded headers and bodies (the API takes no bodies): cheroot answers 413 or 414 beyond them.
    server.max_request_header_size = general.max_request_header_size
    server.max_request_body_size = MAX_REQUEST_BODY
    if general.tls_cert and general.tls_key:
        server.ssl_adapter = BuiltinSSLAdapter(general.tls_cert, general.tls_key)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if refresher is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda _signum, _frame: refresher.trigger())
    server.prepare()  # binds now, so a busy port fails here with a clear OSError
    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    scheme = "https" if server.ssl_adapter is not None else "http"
    url = f"{scheme}://{general.socket_host}:{server.bind_addr[1]}{prefix}"
    log.info("serving on %s", url)
    if on_ready is not None:
        on_ready(url)
    try:
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        server.stop()
        thread.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def in_pieces(app: WSGIApplication) -> WSGIApplication:
    """``app`` with every response body cut into chunks of at most ``PIECE`` bytes, for cheroot."""

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _pieces(app(environ, start_response))

    return wrapped


def _pieces(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes in chunks of at most ``PIECE`` bytes; closes ``chunks`` as WSGI requires."""
    try:
        for chunk in chunks:
            if len(chunk) <= PIECE:
                yield chunk
                continue
            view = memoryview(chunk)
            for start in range(0, len(chunk), PIECE):
                yield bytes(view[start:start + PIECE])
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _serve_debug(app: Flask, general: GeneralConfig) -> None:
    # Werkzeug's development server with its debugger, as the original's debug mode. No reloader:
    # it would run a second process with a second refresh thread.
    wsgi_app = app
    if general.server_prefix != "/":
        wsgi_app = DispatcherMiddleware(Flask("debugging_frontend"), {general.server_prefix: app})  # type: ignore[assignment]
    log.warning("debug mode: Werkzeug development server with the interactive debugger; never expose it")
    ssl_context = (general.tls_cert, general.tls_key) if general.tls_cert and general.tls_key else None
    run_simple(general.socket_host, general.socket_port, wsgi_app, use_debugger=True, use_reloader=False,
               ssl_context=ssl_context)

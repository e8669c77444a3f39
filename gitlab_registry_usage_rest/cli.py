"""Command line: the original's options (``-c``, ``--print-default-config``, ``-V``) plus ``--demo``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__, logs
from .config import (
    DEFAULT_CONFIG_FILENAME,
    Config,
    ConfigError,
    default_config_text,
    effective_config_text,
    environment_overrides,
    load_config,
    parse_config,
    unknown_keys,
)
from .state import RefreshState, SnapshotHolder

if TYPE_CHECKING:
    from .crawl.process import ProcessCrawler
    from .history import History
    from .model import Snapshot

PROG = "gitlab-registry-usage-rest"
log = logging.getLogger(__name__)

# The crawler child is ended after this many request timeouts without a word from it (its heartbeat comes
# every few seconds during a crawl), and never sooner than the floor: a fresh interpreter must have time to start.
ANSWER_TIMEOUT_FACTOR = 4
MIN_ANSWER_TIMEOUT = 10.0


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A RESTful web service for querying the memory usage of repositories in a GitLab registry.",
    )
    parser.add_argument(
        "-c", "--config-file", dest="config_filename", type=os.path.abspath, default=DEFAULT_CONFIG_FILENAME,
        help="web service config file (default: %(default)s)",
    )
    parser.add_argument("--print-default-config", action="store_true",
                        help="print the default config to stdout and exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config in force (file and environment, secrets masked) and exit")
    parser.add_argument("-V", "--version", action="store_true", dest="print_version",
                        help="print the version number and exit")
    parser.add_argument("--demo", action="store_true",
                        help="serve a built-in sample registry on 127.0.0.1 with a demo login (no GitLab, no LDAP)")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help="listen on this port instead of [general] socket_port (0: any free port)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad config, as for bad arguments)."""
    args = _argument_parser().parse_args(argv)
    if args.print_version:
        sys.stdout.write(f"{PROG}, version {__version__}\n")
        return 0
    if args.print_default_config:
        sys.stdout.write(default_config_text())
        return 0
    if args.port is not None and not 0 <= args.port < 65536:
        sys.stderr.write(f"{PROG}: error: --port: {args.port} is not a port number\n")
        return 2
    if args.demo:
        return _run_demo(args.port)
    try:
        parser = load_config(args.config_filename)
        config = parse_config(parser, source=args.config_filename, from_environment=environment_overrides())
    except ConfigError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 2
    if args.print_config:
        sys.stdout.write(effective_config_text(parser))
        return 0
    if args.port is not None:
        config = dataclasses.replace(config, general=dataclasses.replace(config.general, socket_port=args.port))
    logs.configure(_log_level(config), config.general.log_format)
    for key in unknown_keys(parser):
        log.warning("%s: unknown config key %s is ignored", args.config_filename, key)
    return _run_service(config)


def _run_service(config: Config) -> int:
    # Imported here so that --help, --version and config errors do not pay for Flask and ldap3.
    from .history import recorder
    from .ldap_auth import LdapAuthenticator, LdapUnavailable
    from .persistence import DataFile
    from .refresher import Refresher
    from .server import serve
    from .web.app import create_app
    from .web.history_api import prepare_pages
    from .web.metrics import Metrics

    data_file = DataFile(config.general.data_file) if config.general.data_file else None
    # The last good data from before the restart is served at once, while the first refresh runs; the
    # config dates saved with it spare the crawler a config request per image.
    saved = data_file.load_saved() if data_file else None
    snapshots, state = SnapshotHolder(saved.snapshot if saved else None), RefreshState()
    crawler, registry_requests = _crawler(config, state, dict(saved.configs) if saved else {})

    def save(snapshot: Snapshot) -> None:
        if data_file is not None:
            data_file.save(snapshot, crawler.config_dates())

    # Recorded after each successful refresh only: a snapshot loaded from the data file was recorded when
    # it was new (and History skips a time it already has).
    history = _history(config)
    metrics = Metrics(snapshots, state, registry_requests)
    app = create_app(config, snapshots, LdapAuthenticator(config.ldap), unavailable=(LdapUnavailable,),
                     refresh=state, metrics=metrics, history=history)
    # Once recorded, what the pages show of the new snapshot's history is read in the refresh thread, not by
    # the first person to look.
    keepers = [keep for keep in (save if data_file else None, history.record if history else None,
                                 functools.partial(prepare_pages, app) if history else None) if keep]
    refresher = Refresher(
        crawler, snapshots, state, config.general.refresh_interval.total_seconds(),
        on_snapshot=recorder(*keepers) if keepers else None,
    )

    def run() -> None:
        try:
            serve(app, config.general, refresher)
        finally:
            crawler.close()  # _serve ends with os._exit, which no atexit hook survives
            if history is not None:
                history.close()  # after the write under way, if any

    return _serve(run, config)


def _history(config: Config) -> History | None:
    """The history file of the config, opened (a file that cannot be used is logged, and records nothing)."""
    from .history import History

    general = config.general
    path = general.history_path
    return None if path is None else History(path, general.history_full_days, general.history_days)


def _crawler(config: Config, state: RefreshState, known_configs: dict[str, float | None]
             ) -> tuple[ProcessCrawler, Callable[[], dict[str, int]] | None]:
    """The configured crawler in a child process, and where its request counts can be read (the library keeps none).

    ``known_configs`` are the config dates kept in the data file: the builtin crawler requests no config it names.

    In this process the crawl's Python work would take the GIL from the request threads. The child gets
    only the registry's settings, its access token among them, in the factory's arguments: nothing else
    of the config, and (``ProcessCrawler`` sees to it) none of the environment's secrets.
    """
    from .crawl.process import CrawlerFactory, ProcessCrawler

    registry = config.registry
    factory: CrawlerFactory
    if registry.collector == "gitlab-registry-usage":
        from .crawl.library import LibraryCrawler

        factory = functools.partial(
            LibraryCrawler, registry.gitlab_base_url, registry.registry_base_url, registry.username,
            registry.access_token, timeout=registry.timeout,
        )
    else:
        from .crawl.builtin import BuiltinCrawler

        factory = functools.partial(
            BuiltinCrawler.connect, registry.registry_base_url, registry.gitlab_base_url, registry.username,
            registry.access_token, concurrency=registry.concurrency, timeout=registry.timeout,
            known_configs=known_configs,
        )
    crawler = ProcessCrawler(factory, state.progress, log_level=_log_level(config),
                             log_format=config.general.log_format, answer_timeout=_answer_timeout(registry.timeout))
    return crawler, None if registry.collector == "gitlab-registry-usage" else crawler.request_stats


def _answer_timeout(request_timeout: float) -> float:
    """How long the crawler child may stay silent during a crawl before it counts as hung."""
    return max(ANSWER_TIMEOUT_FACTOR * request_timeout, MIN_ANSWER_TIMEOUT)


def _log_level(config: Config) -> str:
    return "DEBUG" if config.general.debug else config.general.log_level


def _run_demo(port: int | None) -> int:
    from .demo import DemoAuthenticator, banner, demo_config
    from .server import serve
    from .web.app import create_app

    logs.configure()
    config = demo_config(5000 if port is None else port)
    password = secrets.token_urlsafe(12)
    folder = tempfile.mkdtemp(prefix="registry-usage-demo-")
    history, snapshot = _demo_history(os.path.join(folder, "history.sqlite3"), time.time())
    snapshots = SnapshotHolder(snapshot)
    app = create_app(config, snapshots, DemoAuthenticator(password), history=history)

    def ready(url: str) -> None:
        sys.stdout.write(banner(url, password))
        sys.stdout.flush()

    def run() -> None:
        try:
            serve(app, config.general, on_ready=ready)
        finally:
            history.close()
            shutil.rmtree(folder, ignore_errors=True)  # the demo leaves nothing behind

    return _serve(run, config)


def _demo_history(path: str, now: float) -> tuple[History, Snapshot]:
    """A history file holding the demo's generated 90 days, and the snapshot it ends with (the one to serve)."""
    from .demo import demo_history
    from .history import History

    history = History(path)
    quiet = logging.getLogger("gitlab_registry_usage_rest.history")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not a line per generated refresh
    try:
        for snapshot in demo_history(now):
            history.record(snapshot)
    finally:
        quiet.setLevel(level)
    return history, snapshot


def _serve(run: Callable[[], None], config: Config) -> int:
    try:
        run()
    except OSError as error:
        general = config.general
        sys.stderr.write(f"{PROG}: error: cannot listen on {general.socket_host}:{general.socket_port}: {error}\n")
        return 1
    log.info("stopped")
    # Interpreter exit would join the worker threads of a cancelled crawl, whose requests may wait for
    # their timeouts; everything worth keeping is written by now, so the process ends here.
    logs.flush()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""Memory benchmark: the real service (and its crawler child) crawling a synthetic registry, old commit and new.

    python3 -m bench.memory [--repositories 10000] [--tags 10] [--layers 8] [--crawls 10] [--base /tmp/mem-base]
                            [--extra-tags 1000000] [--gitlab-v1]

The synthetic registry of ``bench.gitlab_v1`` (10,000 repositories x 10 tags x 8 layers: 100,000 tags, each with a
manifest and a config of its own) runs in a process of its own. For each tree (``--base``, a checkout of the
commit before, e.g. ``git worktree add /tmp/mem-base <commit>``; and this one) the service is started as an
administrator starts it, ``python -m gitlab_registry_usage_rest -c CONFIG``, with ``PYTHONPATH`` pointing at the
tree, with a data file and the history database as by default. It crawls at start; each further crawl is asked
for with SIGHUP, and its end is seen in ``/health``'s ``refreshes``.

A sampler reads ``VmRSS`` of the service and of every descendant (the crawler child) from ``/proc`` every 100 ms:
the peak is the largest sum seen (``VmHWM`` summed over the processes is printed too: an upper bound, since the
peaks need not coincide). "after crawl n" is the tree's RSS once the refresh has been recorded and the service
is idle again (data file and history written). ``--extra-tags 1000000`` adds a row for the new tree only at
that many tags (repositories scaled up, ``--tags`` per repository), fewer crawls.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "memory-benchmark-secret-" + "m" * 40


class Registry:
    """``bench.gitlab_v1``'s synthetic registry, in a process of its own."""

    def __init__(self, repositories: int, tags: int, layers: int, gitlab_v1: bool) -> None:
        command = [sys.executable, "-m", "bench.gitlab_v1", "--serve", "--repositories", str(repositories),
                   "--tags", str(tags), "--layers", str(layers), *(["--gitlab-v1"] if gitlab_v1 else [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                        env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "READY":
            self.process.kill()
            raise RuntimeError(f"the synthetic registry did not start: {line}")
        self.url = line[1]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(child) for child in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def _status_kib(pid: int, keys: tuple[str, ...]) -> dict[str, int]:
    values = dict.fromkeys(keys, 0)
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values


@dataclass
class Sampler:
    """The tree's summed VmRSS every ``interval`` seconds; ``peak`` is the largest sum seen, in KiB."""

    pid: int
    interval: float = 0.1
    peak: int = 0
    peak_parts: tuple[int, ...] = ()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def tree(self) -> dict[int, dict[str, int]]:
        return {pid: _status_kib(pid, ("VmRSS", "VmHWM")) for pid in [self.pid, *_descendants(self.pid)]}

    def rss(self) -> tuple[int, ...]:
        return tuple(values["VmRSS"] for values in self.tree().values())

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval):
                parts = self.rss()
                if sum(parts) > self.peak:
                    self.peak, self.peak_parts = sum(parts), parts

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Result:
    tree: str
    tags: int
    crawl_seconds: list[float]
    after: dict[int, tuple[int, ...]]  # crawl number -> RSS (KiB) of each process, service first
    peak: int
    peak_parts: tuple[int, ...]
    hwm_sum: int
    data_file_bytes: int


def _config(workdir: Path, registry: str, port: int) -> Path:
    path = workdir / "service.conf"
    path.write_text(
        f"[general]\nsocket_host = 127.0.0.1\nsocket_port = {port}\nrefresh_interval = 100 hours\n"
        f"data_file = {workdir / 'snapshot.json'}\nlog_level = INFO\n\n"
        "[ldap]\nhost = ldap://127.0.0.1:9/\nbase_dn = dc=example,dc=com\nvalid_gid = 1\n\n"
        f"[jwt]\nsecret_key = {SECRET}\n\n"
        f"[registry]\ngitlab_base_url = {registry}\nregistry_base_url = {registry}\nusername = root\n"
        "access_token = glpat-benchmark\n"
    )
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refreshes(http: requests.Session, url: str) -> int:
    try:
        return int(http.get(url + "/health", timeout=5).json()["refresh"]["refreshes"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return -1


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, window: float = 0.5) -> None:
    """Until the service uses less than 5 % of a CPU over ``window``: the data file and history are written."""
    before = _cpu(pid)
    while True:
        time.sleep(window)
        now = _cpu(pid)
        if now - before < 0.05 * window:
            return
        before = now


def measure(name: str, tree: Path, registry: str, crawls: int, tags: int, timeout: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        workdir = Path(folder)
        port = _free_port()
        config = _config(workdir, registry, port)
        log_file = (workdir / "service.log").open("wb")
        env = {key: value for key, value in os.environ.items() if not key.startswith("GITLAB_REGISTRY_USAGE_REST_")}
        env.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "gitlab_registry_usage_rest", "-c", str(config)],
                                   cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT)
        sampler = Sampler(process.pid)
        sampler.start()
        http = requests.Session()
        http.trust_env = False
        url = f"http://127.0.0.1:{port}"
        after: dict[int, tuple[int, ...]] = {}
        seconds: list[float] = []
        try:
            for number in range(1, crawls + 1):
                if number > 1:
                    process.send_signal(signal.SIGHUP)
                while _refreshes(http, url) < number:
                    if process.poll() is not None or time.monotonic() - started > timeout:
                        raise RuntimeError(f"{name}: crawl {number} did not finish:\n"
                                           + (workdir / "service.log").read_text()[-3000:])
                    time.sleep(0.2)
                seconds.append(time.monotonic() - started)
                _wait_idle(process.pid)
                after[number] = sampler.rss()
                started = time.monotonic()
                print(f"  {name}, {tags} tags, crawl {number}: {seconds[-1]:.1f} s, tree RSS "
                      f"{sum(after[number]) / 1024:.0f} MiB {[round(part / 1024) for part in after[number]]}",
                      flush=True)
            hwm = sum(values["VmHWM"] for values in sampler.tree().values())
            size = (workdir / "snapshot.json").stat().st_size
        finally:
            sampler.stop()
            http.close()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_file.close()
        return Result(name, tags, seconds, after, sampler.peak, sampler.peak_parts, hwm, size)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--crawls", type=int, default=10)
    parser.add_argument("--base", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--extra-tags", type=int, default=0, help="one more row, new tree only, at this many tags")
    parser.add_argument("--extra-crawls", type=int, default=2)
    parser.add_argument("--gitlab-v1", action="store_true", help="the registry answers GitLab's /gitlab/v1/ too")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one crawl may take")
    parser.add_argument("--only-base", action="store_true", help="measure the --base tree alone")
    args = parser.parse_args()

    results: list[Result] = []
    tags = args.repositories * args.tags
    print(f"synthetic registry: {args.repositories} repositories x {args.tags} tags x {args.layers} layers "
          f"({tags} tags), {'GitLab /gitlab/v1/' if args.gitlab_v1 else 'registry API v2'}", flush=True)
    registry = Registry(args.repositories, args.tags, args.layers, args.gitlab_v1)
    try:
        # The new tree first: its figures are there even if the old tree's slower crawls are cut short.
        trees = ([] if args.only_base else [("new", ROOT)]) + ([("base", args.base)] if args.base else [])
        for name, tree in trees:
            results.append(measure(name, tree, registry.url, args.crawls, tags, args.timeout))
    finally:
        registry.stop()
    if args.extra_tags:
        repositories = args.extra_tags // args.tags
        print(f"synthetic registry: {repositories} repositories x {args.tags} tags", flush=True)
        registry = Registry(repositories, args.tags, args.layers, args.gitlab_v1)
        try:
            results.append(measure("new", ROOT, registry.url, args.extra_crawls, repositories * args.tags,
                                   args.timeout * 10))
        finally:
            registry.stop()

    shown = sorted({number for result in results for number in result.after if number in (1, 2) or
                    number == max(result.after)})
    print(f"\n{'tree':<6} {'tags':>9} {'peak (MiB)':>11} {'peak: service + child':>22} {'sum VmHWM':>10} "
          + " ".join(f"{f'after {n}':>9}" for n in shown) + f" {'child after last':>17} {'first crawl (s)':>16} "
          f"{'data file (MiB)':>16}")
    for result in results:
        cells = " ".join(f"{_mib(sum(result.after[n])) if n in result.after else '':>9}" for n in shown)
        last = result.after[max(result.after)]
        print(f"{result.tree:<6} {result.tags:>9} {_mib(result.peak):>11} "
              f"{' + '.join(_mib(part) for part in result.peak_parts):>22} {_mib(result.hwm_sum):>10} {cells} "
              f"{_mib(sum(last[1:])):>17} {result.crawl_seconds[0]:>16.1f} "
              f"{result.data_file_bytes / 2**20:>16.1f}")


if __name__ == "__main__":
    main()

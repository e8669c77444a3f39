"""The login limiter's memory under a flood of failed logins, before and after it was bounded.

    python3 -m bench.throttle [--logins 10000] [--addresses 1000] [--name-bytes 8192] [--window 3]

For each limiter (the ``limits``-based one from the last commit that had it, and the working tree's), a child
process serves our app on cheroot, as the service does (``server.serve``, same header limit and threads), with
a directory that refuses every password: only the limiter keeps state. Two rounds of ``--logins`` failed logins,
each with its own ``--name-bytes`` user name, come from ``--addresses`` loopback source addresses
(127.0.0.1, 127.0.0.2, ... 127.0.3.232 for 1,000: each client socket is bound to its own), ten per keep-alive
connection; between the rounds the window expires. The resident memory (VmRSS) of the child is read at start,
after round 1 and after round 2: a limiter that frees expired entries is back where round 1 left it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.util
import logging
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, stop_process, until
from tests.support.webapp import basic

ROOT = Path(__file__).resolve().parent.parent
THROTTLE = "gitlab_registry_usage_rest/web/throttle.py"
MAX_FAILURES = 10
WARM_UP_ADDRESS = "127.255.255.254"


class RefuseEveryone:
    """A directory that knows nobody: every login fails, at once."""

    def authenticate(self, username: str, password: str) -> bool:
        return False


def serve(port: int, window: float, throttle_file: str | None) -> None:
    """The child: our app on cheroot, with the given limiter module instead of ours if ``throttle_file``."""
    from gitlab_registry_usage_rest.config import Config, GeneralConfig, JwtConfig, LdapConfig, RegistryConfig
    from gitlab_registry_usage_rest.server import serve as serve_app
    from gitlab_registry_usage_rest.state import SnapshotHolder
    from gitlab_registry_usage_rest.web import app as web_app

    logging.basicConfig(level=logging.WARNING)
    if throttle_file is not None:
        spec = importlib.util.spec_from_file_location("bench_throttle_before", throttle_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        setattr(web_app, "LoginThrottle", module.LoginThrottle)  # noqa: B010 - a module's global, on purpose
    general = GeneralConfig(socket_port=port, data_file=None, login_max_failures=MAX_FAILURES,
                            login_failure_window=datetime.timedelta(seconds=window))
    config = Config(general=general, ldap=LdapConfig(), jwt=JwtConfig(secret_key=secrets.token_urlsafe(48)),
                    registry=RegistryConfig())
    serve_app(web_app.create_app(config, SnapshotHolder(None), RefuseEveryone()), general)


@dataclass
class Row:
    limiter: str
    start_kib: int
    round1_kib: int
    round2_kib: int
    seconds: float
    statuses: Counter[int]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def source_address(index: int) -> str:
    """The index-th loopback address from 127.0.0.1 on (127.0.3.232 is the 1,000th)."""
    number = index + 1
    return f"127.0.{number // 256}.{number % 256}"


def logins_from(port: int, source: str, names: list[str]) -> Counter[int]:
    """Failed logins, one per name, over one keep-alive connection from ``source``."""
    statuses: Counter[int] = Counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        for name in names:
            connection.request("GET", "/auth_token", headers=basic(name, "wrong"))
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
    finally:
        connection.close()
    return statuses


def flood(port: int, round_number: int, logins: int, addresses: int, name_bytes: int) -> tuple[float, Counter[int]]:
    per_address = logins // addresses

    def one(index: int) -> Counter[int]:
        names = [f"r{round_number}-{index:05d}-{n:03d}-" for n in range(per_address)]
        return logins_from(port, source_address(index), [name.ljust(name_bytes, "x") for name in names])

    started = time.perf_counter()
    statuses: Counter[int] = Counter()
    with ThreadPoolExecutor(8) as pool:
        for counted in pool.map(one, range(addresses)):
            statuses.update(counted)
    return time.perf_counter() - started, statuses


@contextlib.contextmanager
def child(window: float, throttle_file: str | None, log: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, "-m", "bench.throttle", "--serve", str(port), "--window", str(window)]
    if throttle_file is not None:
        command += ["--throttle-file", throttle_file]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            with contextlib.suppress(OSError):
                # From an address outside the flood's, so that its failure counts for nobody in it.
                return bool(logins_from(port, WARM_UP_ADDRESS, ["warm-up"]))
            return process.poll() is not None

        until(answers, "the benchmark's service", 30.0, log.read_text)
        if process.poll() is not None:
            raise RuntimeError(f"the benchmark's service exited:\n{log.read_text()}")
        yield port, process.pid
    finally:
        stop_process(process)


def measure(name: str, throttle_file: str | None, args: argparse.Namespace, workdir: Path) -> Row:
    with child(args.window, throttle_file, workdir / f"{name.split()[0]}.log") as (port, pid):
        start = rss_kib(pid)
        seconds, statuses = flood(port, 1, args.logins, args.addresses, args.name_bytes)
        round1 = rss_kib(pid)
        # The window has to pass in real time: the limiters read the wall clock.
        time.sleep(args.window + 1)
        seconds2, statuses2 = flood(port, 2, args.logins, args.addresses, args.name_bytes)
        round2 = rss_kib(pid)
    return Row(name, start, round1, round2, seconds + seconds2, statuses + statuses2)


def before_throttle(workdir: Path) -> tuple[str, Path] | None:
    """The newest committed throttle.py built on ``limits``, written to a file, with its commit."""
    commits = subprocess.run(["git", "log", "--format=%H", "--", THROTTLE], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    for commit in commits:
        source = subprocess.run(["git", "show", f"{commit}:{THROTTLE}"], cwd=ROOT, capture_output=True, text=True)
        if source.returncode == 0 and "from limits" in source.stdout:
            path = workdir / "throttle_before.py"
            path.write_text(source.stdout)
            return commit[:7], path
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=10_000, help="failed logins per round")
    parser.add_argument("--addresses", type=int, default=1_000, help="loopback source addresses (at most 65,000)")
    parser.add_argument("--name-bytes", type=int, default=8192, help="length of each user name")
    parser.add_argument("--window", type=float, default=3.0, help="login_failure_window, seconds")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--throttle-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.window, args.throttle_file)
        return 0
    if not 0 < args.addresses <= 65_000 or args.logins < args.addresses:
        parser.error("--addresses must be 1 to 65,000 and no more than --logins")
    with tempfile.TemporaryDirectory(prefix="bench-throttle-") as tmp:
        workdir = Path(tmp)
        limiters: list[tuple[str, str | None]] = []
        before = before_throttle(workdir)
        if before is not None and importlib.util.find_spec("limits") is not None:
            limiters.append((f"before ({before[0]}, limits)", str(before[1])))
        limiters.append(("after (working tree)", None))
        rows = [measure(name, path, args, workdir) for name, path in limiters]
    per_address = args.logins // args.addresses
    print(f"two rounds of {per_address * args.addresses:,} failed logins, {args.name_bytes:,}-byte names, "
          f"{args.addresses:,} loopback addresses; window {args.window:g} s, expired between the rounds")
    print(f"{'limiter':<28} {'RSS start':>10} {'round 1':>10} {'round 2':>10} {'2 - 1':>9} {'logins/s':>9}  statuses")
    for row in rows:
        rate = 2 * per_address * args.addresses / row.seconds
        statuses = " ".join(f"{status}x{count}" for status, count in sorted(row.statuses.items()))
        print(f"{row.limiter:<28} {mib(row.start_kib):>10} {mib(row.round1_kib):>10} {mib(row.round2_kib):>10} "
              f"{mib(row.round2_kib - row.round1_kib, sign=True):>9} {rate:>9,.0f}  {statuses}")
    return 0


def mib(kib: int, sign: bool = False) -> str:
    return f"{kib / 1024:{'+' if sign else ''}.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())

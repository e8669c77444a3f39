"""Run the original gitlab-registry-usage-rest 0.3.3 and ours side by side, for the serving benchmarks.

    python3 -m bench.original --check       # builds what is missing, then checks that both really serve

Importable helpers (bench/serve.py and bench/load.py use them):

- ``ensure_venv()``: a virtual environment with the original and the versions it runs with, built once and
  cached under ``~/.cache/gitlab-registry-usage-rest-bench/original-venv``. With Flask or Werkzeug 2.1 or later
  every GET of the original answers 415, so those two are 2.0.3; everything else is pinned to the set this
  script was verified with, so that a later release of a dependency cannot break the baseline.
- ``registry_with(repositories, tags)``: a real Docker Distribution registry and the GitLab token stand-in in a
  child process, on storage pushed once and cached under ``~/.cache/gitlab-registry-usage-rest-bench/
  registry-<R>x<T>``. Tokens are signed by a fresh key each start: the registry is told to trust it, and the
  stored images do not depend on it, so nothing but the storage needs to be kept.
- ``start_original(...)`` and ``start_ours(...)``: each service as a process of its own on cheroot, with a
  config file written into a work folder, returned (a ``Service``, i.e. a ``subprocess.Popen`` with ``url``,
  ``token``, ``memory_kib()``, ``wait_idle()``, ``stop()``) once it serves. The original listens only after a
  whole crawl and starts a second one at once; ``settle_original`` waits for that one and for the disk sizes
  it computes on the first request that needs them.
- ``forge_token(secret)``: both services check Flask-JWT-Extended HS256 tokens signed with ``secret_key``, so a
  benchmark can make a valid access token instead of logging in (ours also sets and requires ``iss`` and
  ``aud``: ``our_token(config)`` reads them from its config; ``Service.token`` is always the right one).
- ``run_wrk(...)``: one wrk measurement (requests/s, latency percentiles, errors, optionally status counts).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests

from tests.support.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gitlab-registry-usage-rest-bench"
VENV = CACHE / "original-venv"
USER, ACCESS_TOKEN = "root", "glpat-benchmark"

# Flask and Werkzeug must be below 2.1 (from 2.1 on, every GET of the original answers 415). The rest is the set
# these two resolve to today, verified to serve, pinned so that a future release (say a Flask-JWT-Extended that
# needs Flask 2.2) cannot change or break the baseline. cheroot, PyJWT and Flask-JWT-Extended are the versions
# our constraints.txt pins as well, so both services run on the same server and token code.
ORIGINAL_PINS = (
    "gitlab-registry-usage-rest==0.3.3",
    "gitlab-registry-usage==0.3.3",
    "Flask==2.0.3",
    "Werkzeug==2.0.3",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "itsdangerous==2.2.0",
    "click==8.5.1",
    "Flask-JWT-Extended==4.7.4",
    "PyJWT==2.15.1",
    "flask-cors==6.0.5",
    "Flask-HTTPAuth==4.8.1",
    "Flask-RESTful==0.3.10",
    "flask-restful-hal==0.2.6",
    "future==1.0.0",
    "aniso8601==10.0.1",
    "pytz==2026.6",
    "six==1.17.0",
    "json2html==1.3.0",
    "ldap3==2.9.1",
    "pyasn1==0.6.5",
    "cheroot==11.1.2",
    "jaraco.functools==4.6.0",
    "more-itertools==11.2.1",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "idna==3.20",
    "charset-normalizer==3.5.3",
    "certifi==2026.10.19.post1",
    "pyOpenSSL==26.4.0",
    "cryptography==50.0.2",
    "cffi==2.1.1",
    "pycparser==3.12",
    "typing_extensions==4.16.0",
    "yacl==0.6.1",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies, so no benchmark leaves servers behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two benchmark runs do not build the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc: benchmark traffic stays on 127.0.0.1
    return session


# --- the original's virtual environment ---------------------------------------------------------

def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv() -> Path:
    """The cached virtual environment with the original and its pins; built (once) if missing or outdated."""
    marker = VENV / "bench-pins.json"
    wanted = json.dumps(sorted(ORIGINAL_PINS))
    if marker.exists() and marker.read_text() == wanted and venv_python().exists():
        return VENV
    with _locked(CACHE / "original-venv.lock"):
        if marker.exists() and marker.read_text() == wanted and venv_python().exists():
            return VENV
        log(f"building the original's virtual environment in {VENV} ...")
        # Built in place; the marker, written last, says it is complete.
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        result = subprocess.run([*pip, *ORIGINAL_PINS], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not install the original's pins:\n{result.stdout}\n{result.stderr}")
        check = subprocess.run([str(venv_python()), "-m", "pip", "check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"pip check failed in the original's environment:\n{check.stdout}")
        marker.write_text(wanted)
        log("the original's virtual environment is ready")
    return VENV


def installed_versions(venv: Path = VENV) -> dict[str, str]:
    """``pip freeze`` of the venv as {name: version} (names lower-cased, ``_`` as ``-``)."""
    frozen = subprocess.run([str(venv_python(venv)), "-m", "pip", "freeze", "--all"], capture_output=True,
                            text=True, check=True).stdout
    versions = {}
    for line in frozen.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            versions[_norm(name)] = version
    return versions


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- tokens -------------------------------------------------------------------------------------

def new_secret() -> str:
    return secrets.token_urlsafe(48)


def forge_token(secret: str, subject: str = "alice", lifetime_s: int = 24 * 3600, *, issuer: str | None = None,
                audience: str | None = None) -> str:
    """A Flask-JWT-Extended access token (HS256) for a service configured with ``secret``.

    The original checks neither ``iss`` nor ``aud``; ours sets and requires both (``[jwt] issuer``, ``audience``):
    ``Service.token`` is forged with what the service's own config says.
    """
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "nbf": now, "exp": now + lifetime_s,
                              "jti": str(uuid.uuid4()), "type": "access", "fresh": False}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def our_token(config_path: Path, subject: str = "alice", lifetime_s: int = 24 * 3600) -> str:
    """A token our service accepts: secret, issuer and audience as its config (file and defaults) has them."""
    from gitlab_registry_usage_rest.config import load_config, parse_config

    jwt_config = parse_config(load_config(str(config_path)), source=str(config_path)).jwt
    return forge_token(jwt_config.secret_key, subject, lifetime_s, issuer=getattr(jwt_config, "issuer", None),
                       audience=getattr(jwt_config, "audience", None))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


# --- LDAP parameters ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LdapParams:
    """What both configs need of a directory; ``from_slapd`` takes a running tests.support.slapd.Slapd."""

    url: str = "ldaps://127.0.0.1:9"  # nothing listens there: logins fail, bearer tokens still work
    base_dn: str = "dc=example,dc=org"
    valid_gid: str = "1000"
    ca_file: Path | None = None

    @classmethod
    def from_slapd(cls, slapd: Any) -> LdapParams:
        return cls(url=slapd.ldaps_url, base_dn=slapd.base_dn, valid_gid=slapd.valid_gid, ca_file=slapd.ca_file)


def _ldap(ldap: Any) -> LdapParams:
    if ldap is None:
        return LdapParams()
    if isinstance(ldap, LdapParams):
        return ldap
    return LdapParams.from_slapd(ldap)


# --- services -----------------------------------------------------------------------------------

class Service(subprocess.Popen):  # type: ignore[type-arg]
    """A service process with its URL and log file."""

    name: str
    url: str
    log_path: Path
    config_path: Path
    token: str  # a valid bearer token for this service (forged with its secret)
    startup_seconds: float

    def get(self, path: str, token: str | None = None, timeout: float = 30, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers.update(bearer(token))
        with local_session() as session:
            return session.get(self.url + path, headers=headers, timeout=timeout, **kwargs)

    def memory_kib(self) -> dict[str, int]:
        """VmHWM (peak resident set) and VmRSS of the process, in KiB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
        return values

    def descendants(self) -> list[int]:
        """Process ids of the service's child processes and theirs (ours crawls in a child process)."""
        found, pending = [], [self.pid]
        while pending:
            pid = pending.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    children = [int(child) for child in (task / "children").read_text().split()]
                except OSError:
                    continue
                found += children
                pending += children
        return found

    def tree_memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM summed over the service and its descendants (peaks need not coincide: an upper bound)."""
        total = dict.fromkeys(("VmHWM", "VmRSS"), 0)
        for pid in [self.pid, *self.descendants()]:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, rest = line.partition(":")
                if key in total:
                    total[key] += int(rest.split()[0])
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 900.0, window: float = 0.5, busy: float = 0.05) -> float:
        """Wait until the process uses less than ``busy`` of a CPU over ``window`` seconds (requests left over from
        a previous measurement have finished); returns the seconds waited, or raises after ``timeout``."""
        started = time.monotonic()
        before = self.cpu_seconds()
        while True:
            time.sleep(window)
            now = self.cpu_seconds()
            if now - before < busy * window:
                return time.monotonic() - started
            before = now
            if self.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} still busy after {timeout:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int:
        stop_process(self, timeout)
        return self.returncode


def _launch(name: str, args: list[str], workdir: Path, port: int, config_path: Path,
            env: Mapping[str, str] | None = None) -> Service:
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = Service(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, preexec_fn=_die_with_parent)
    process.name, process.url, process.log_path, process.config_path = name, f"http://127.0.0.1:{port}", log_path, \
        config_path
    return process


def _wait_listening(service: Service, port: int, deadline: float) -> None:
    while True:
        if service.poll() is not None:
            raise RuntimeError(f"{service.name} exited with status {service.returncode}:\n{service.log_tail()}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{service.name} did not listen on {port} in time:\n{service.log_tail()}")
        time.sleep(0.25)


def write_original_config(path: Path, registry_url: str, gitlab_url: str, ldap: Any, port: int, secret: str,
                          username: str = USER, access_token: str = ACCESS_TOKEN) -> Path:
    params = _ldap(ldap)
    path.write_text(
        "[general]\nsocket_host = 127.0.0.1\n"
        f"socket_port = {port}\nserver_prefix = /\ndebug = False\n\n"
        # The original prefixes a host without ldaps:// itself; it uses ldap3's default TLS, which does not
        # verify certificates, so the test CA needs no trusting (SSL_CERT_FILE is set all the same).
        f"[ldap]\nhost = {params.url}\nbase_dn = {params.base_dn}\nvalid_gid = {params.valid_gid}\n"
        "username_attribute = uid\ngid_attribute = gidNumber\n\n"
        f"[jwt]\nauth_token_expires = 2 weeks\nsecret_key = {secret}\n\n"
        f"[registry]\ngitlab_base_url = {gitlab_url}\nregistry_base_url = {registry_url}\n"
        f"username = {username}\naccess_token = {access_token}\n"
    )
    return path


def start_original(workdir: Path, registry_url: str, gitlab_url: str, ldap: Any, port: int, secret: str, *,
                   username: str = USER, access_token: str = ACCESS_TOKEN, timeout: float = 1800.0) -> Service:
    """The original on cheroot; returns once it listens, i.e. after its first (synchronous) crawl.

    Note that it starts a second crawl at once when it starts listening (its refresh thread crawls first and
    sleeps afterwards): ``settle_original`` waits for that one and for the disk sizes it computes lazily.
    """
    venv = ensure_venv()
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_original_config(workdir / "original.conf", registry_url, gitlab_url, ldap, port, secret,
                                   username, access_token)
    params = _ldap(ldap)
    env = {"SSL_CERT_FILE": str(params.ca_file)} if params.ca_file else {}
    started = time.monotonic()
    service = _launch("original", [str(venv_python(venv)), "-m", "gitlab_registry_usage_rest", "-c", str(config)],
                      workdir, port, config, env)
    _wait_listening(service, port, started + timeout)
    service.startup_seconds = time.monotonic() - started
    service.token = forge_token(secret)
    return service


def settle_original(service: Service, token: str, warm_path: str, timeout: float = 1800.0) -> tuple[float, float]:
    """Wait for the crawl the original starts right after listening, then warm its lazily computed disk sizes.

    Returns (seconds waited for the crawl, seconds the first figure request took).
    """
    started = time.monotonic()
    first = service.get("/repositories", token).json()["timestamp"]
    while service.get("/repositories", token).json()["timestamp"] == first:
        if time.monotonic() - started > timeout:
            raise RuntimeError("the original's second crawl did not finish in time")
        if service.poll() is not None:
            raise RuntimeError(f"the original exited:\n{service.log_tail()}")
        time.sleep(1)
    crawl = time.monotonic() - started
    started = time.monotonic()
    response = service.get(warm_path, token, timeout=timeout)
    response.raise_for_status()
    return crawl, time.monotonic() - started


def write_our_config(path: Path, registry_url: str, gitlab_url: str, ldap: Any, port: int, secret: str, *,
                     data_file: Path, refresh_interval: str = "60 minutes", username: str = USER,
                     access_token: str = ACCESS_TOKEN, extra: Mapping[str, Mapping[str, str]] | None = None) -> Path:
    params = _ldap(ldap)
    sections: dict[str, dict[str, str]] = {
        "general": {"socket_host": "127.0.0.1", "socket_port": str(port), "server_prefix": "/", "debug": "False",
                    "refresh_interval": refresh_interval, "data_file": str(data_file)},
        "ldap": {"host": params.url, "base_dn": params.base_dn, "valid_gid": params.valid_gid,
                 "username_attribute": "uid", "gid_attribute": "gidNumber",
                 **({"ca_file": str(params.ca_file)} if params.ca_file else {})},
        "jwt": {"auth_token_expires": "2 weeks", "secret_key": secret},
        "registry": {"gitlab_base_url": gitlab_url, "registry_base_url": registry_url, "username": username,
                     "access_token": access_token},
    }
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    path.write_text("\n".join(f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
                              for section, values in sections.items()))
    return path


def start_ours(workdir: Path, registry_url: str, gitlab_url: str, ldap: Any, port: int, secret: str, *,
               data_file: Path | None = None, refresh_interval: str = "60 minutes", username: str = USER,
               access_token: str = ACCESS_TOKEN, extra: Mapping[str, Mapping[str, str]] | None = None,
               timeout: float = 900.0) -> Service:
    """Our service on cheroot; returns once ``/repositories`` has a timestamp (first crawl or data file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_file = data_file if data_file is not None else workdir / "snapshot.json"
    config = write_our_config(workdir / "ours.conf", registry_url, gitlab_url, ldap, port, secret,
                              data_file=data_file, refresh_interval=refresh_interval, username=username,
                              access_token=access_token, extra=extra)
    started = time.monotonic()
    service = _launch("ours", [sys.executable, "-m", "gitlab_registry_usage_rest", "-c", str(config),
                               "--port", str(port)], workdir, port, config, {"PYTHONPATH": str(ROOT)})
    deadline = started + timeout
    _wait_listening(service, port, deadline)
    token = service.token = our_token(config)
    while True:
        with contextlib.suppress(requests.RequestException, ValueError):
            response = service.get("/repositories", token, timeout=10)
            if response.status_code in (401, 403, 422):
                service.stop()
                raise RuntimeError(f"ours refused the forged token: {response.status_code} {response.text}")
            if response.json().get("timestamp") is not None:
                break
        if service.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"ours served no data in time:\n{service.log_tail()}")
        time.sleep(0.25)
    service.startup_seconds = time.monotonic() - started
    return service


def start_floor(workdir: Path, port: int, threads: int | None = None, timeout: float = 30.0) -> Service:
    """bench.floor: cheroot with a WSGI app that answers fixed bytes (what any cheroot service costs here),
    with ours' default number of threads unless told otherwise."""
    if threads is None:
        from gitlab_registry_usage_rest.config import GeneralConfig

        threads = GeneralConfig().threads
    workdir.mkdir(parents=True, exist_ok=True)
    service = _launch("floor", [sys.executable, "-m", "bench.floor", str(port), str(threads)],
                      workdir, port, workdir / "floor.conf", {"PYTHONPATH": str(ROOT)})
    _wait_listening(service, port, time.monotonic() + timeout)
    service.token = ""
    return service


def refreshes(service: Service) -> int:
    """``refresh.refreshes`` of our /health (finished refreshes, successful or not)."""
    return int(service.get("/health", timeout=30).json()["refresh"]["refreshes"])


# --- the registry fixture -----------------------------------------------------------------------

REGISTRY_LAYOUT = 1  # bump when the pushed images change, so old caches are rebuilt


def repository_name(number: int) -> str:
    return f"group{number % 10}/project{number:04d}"


def _point_storage(registry: Any, storage: Path) -> None:
    """Make a tests.support DistributionRegistry (config written, not started) use ``storage``."""
    config = json.loads(registry.config_path.read_text())
    config["storage"]["filesystem"]["rootdirectory"] = str(storage)
    registry.config_path.write_text(json.dumps(config, indent=2))


def _push(storage: Path, repositories: int, tags: int) -> None:
    """Push the benchmark images into ``storage`` (the layout of bench/crawl.py: shared bases, per-repo deps)."""
    from tests.support.distribution import DistributionRegistry
    from tests.support.gitlab_stand_in import GitLabTokenEndpoint, TokenSigner
    from tests.support.pusher import Pusher

    with tempfile.TemporaryDirectory() as tmp, GitLabTokenEndpoint(TokenSigner(), USER, ACCESS_TOKEN) as gitlab:
        registry = DistributionRegistry(Path(tmp), gitlab)
        _point_storage(registry, storage)
        with registry:
            bases = [Pusher.make_layer(f"base-{n}", 2048 + n) for n in range(3)]
            done = [0]
            lock = threading.Lock()

            def push(number: int) -> None:
                with Pusher(registry.url, gitlab.url, USER, ACCESS_TOKEN) as pusher:
                    repo = repository_name(number)
                    shared = Pusher.make_layer(f"{repo}-deps", 1024 + number)
                    for tag in range(tags):
                        own = Pusher.make_layer(f"{repo}:{tag}", 512 + tag)
                        pusher.push_image(repo, f"v{tag}", [bases[number % 3], shared, own])
                with lock:
                    done[0] += 1
                    if done[0] % 100 == 0:
                        log(f"  pushed {done[0]}/{repositories} repositories")

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(push, range(repositories)))
            with Pusher(registry.url, gitlab.url, USER, ACCESS_TOKEN) as pusher:
                found = len(pusher.catalog())
            if found != repositories:
                raise RuntimeError(f"pushed {repositories} repositories but the catalog lists {found}")


def cached_storage(repositories: int, tags: int) -> Path:
    """Registry storage with ``repositories`` x ``tags`` images, pushed on first use and kept in the cache."""
    folder = CACHE / f"registry-{repositories}x{tags}"
    storage, marker = folder / "storage", folder / "complete.json"
    wanted = {"layout": REGISTRY_LAYOUT, "repositories": repositories, "tags": tags}

    def ready() -> bool:
        return marker.exists() and storage.is_dir() and json.loads(marker.read_text()).get("layout") == REGISTRY_LAYOUT

    if ready():
        return storage
    with _locked(CACHE / f"registry-{repositories}x{tags}.lock"):
        if ready():
            return storage
        log(f"pushing {repositories} repositories x {tags} tags into {folder} (once; later runs reuse it) ...")
        started = time.monotonic()
        shutil.rmtree(folder, ignore_errors=True)
        building = folder / "building"
        _push(building, repositories, tags)
        building.rename(storage)
        marker.write_text(json.dumps({**wanted, "pushed_seconds": round(time.monotonic() - started, 1)}))
        log(f"pushed in {time.monotonic() - started:.0f} s")
    return storage


def _serve_registry(repositories: int, tags: int) -> None:
    """Child process: the cached registry and a token endpoint; prints READY <registry> <gitlab>, stops on SIGTERM."""
    from tests.support.distribution import DistributionRegistry
    from tests.support.gitlab_stand_in import GitLabTokenEndpoint, TokenSigner

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    storage = cached_storage(repositories, tags)
    with tempfile.TemporaryDirectory() as tmp, GitLabTokenEndpoint(TokenSigner(), USER, ACCESS_TOKEN) as gitlab:
        registry = DistributionRegistry(Path(tmp), gitlab)
        _point_storage(registry, storage)
        with registry:
            print(f"READY {registry.url} {gitlab.url}", flush=True)
            stop.wait()


@dataclass
class RegistryFixture:
    registry_url: str
    gitlab_url: str
    repositories: int
    tags: int
    username: str = USER
    access_token: str = ACCESS_TOKEN
    process: subprocess.Popen | None = field(default=None, repr=False)  # type: ignore[type-arg]

    def names(self) -> list[str]:
        return [repository_name(number) for number in range(self.repositories)]


@contextlib.contextmanager
def registry_with(repositories: int, tags: int, timeout: float = 3600.0) -> Iterator[RegistryFixture]:
    """A running registry with ``repositories`` x ``tags`` images (cached storage) and its token endpoint."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.harness", "--serve-registry", str(repositories), str(tags)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=_die_with_parent,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"the registry child did not start: {line} (status {process.poll()})")
        yield RegistryFixture(line[1], line[2], repositories, tags, process=process)
    finally:
        stop_process(process, 30)


# --- wrk ------------------------------------------------------------------------------------------

STATUS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + count end
  end
  for code, count in pairs(total) do io.write(string.format("STATUS %d %d\\n", code, count)) end
end
"""


def ensure_wrk() -> str:
    """The wrk executable; installs the Debian package when it is missing and this runs as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: apt-get install -y wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is not installed: run `apt-get update && apt-get install -y wrk` (Debian package wrk)")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    statuses: dict[int, int] | None
    output: str

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def count(self, low: int, high: int) -> int | None:
        if self.statuses is None:
            return None
        return sum(count for status, count in self.statuses.items() if low <= status <= high)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, statuses: bool) -> WrkResult:
    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    done = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)")
    rps = find(r"^Requests/sec:\s*([\d.]+)")
    p50, p99 = find(r"^\s*50%\s+(\S+)"), find(r"^\s*99%\s+(\S+)")
    non = find(r"Non-2xx or 3xx responses: (\d+)")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    if done is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    counted = None
    if statuses:
        counted = {int(code): int(count) for code, count in re.findall(r"^STATUS (\d+) (\d+)$", output, re.MULTILINE)}
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_duration_ms(done.group(2) + done.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_duration_ms(p50.group(1)) if p50 and int(done.group(1)) else None,
        p99_ms=_duration_ms(p99.group(1)) if p99 and int(done.group(1)) else None,
        non_2xx_3xx=int(non.group(1)) if non else 0,
        socket_errors=(dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
                       if sock else {}),
        statuses=counted,
        output=output,
    )


def run_wrk(url: str, *, connections: int, seconds: float, headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
            threads: int = 1, timeout_s: float = 30.0, count_statuses: bool = False) -> WrkResult:
    """One wrk run against ``url`` (127.0.0.1 only) with ``--latency``; statuses counted by a Lua script if asked."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"benchmarks only target 127.0.0.1, not {url}")
    items = headers.items() if isinstance(headers, Mapping) else headers
    args = [ensure_wrk(), f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_s))}s", "--latency"]
    for name, value in items:
        args += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(STATUS_LUA)
    try:
        if count_statuses:
            args += ["-s", script.name]
        result = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + timeout_s + 60,
                                preexec_fn=_die_with_parent)
    finally:
        os.unlink(script.name)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr}\n{result.stdout}")
    return parse_wrk(result.stdout, count_statuses)


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


# --- the self-test ----------------------------------------------------------------------------------

def check() -> int:
    """Build what is missing, then check that the original and ours both serve the same figures."""
    from tests.support.slapd import Slapd

    failures: list[str] = []

    def expect(condition: bool, what: str) -> None:
        print(f"  {'ok  ' if condition else 'FAIL'} {what}", flush=True)
        if not condition:
            failures.append(what)

    venv = ensure_venv()
    versions = installed_versions(venv)
    print(f"original's venv: {venv}")
    for pin in ORIGINAL_PINS:
        name, _, version = pin.partition("==")
        expect(versions.get(_norm(name)) == version, f"{pin} installed (found {versions.get(_norm(name))})")
    ensure_wrk()
    secret = new_secret()
    with tempfile.TemporaryDirectory() as tmp, registry_with(20, 3) as registry, Slapd(Path(tmp) / "slapd") as slapd:
        name = registry.names()[3]
        quoted = name.replace("/", "%2F")
        alice = slapd.users["alice"]
        figures = {}
        for label in ("original", "ours"):
            start = start_original if label == "original" else start_ours
            service = start(Path(tmp) / label, registry.registry_url, registry.gitlab_url, slapd, free_port(),
                            secret)
            token = service.token
            try:
                print(f"{label}: serving at {service.url} after {service.startup_seconds:.1f} s", flush=True)
                listing = service.get("/repositories", token)
                expect(listing.status_code == 200, f"{label}: GET /repositories answers {listing.status_code}")
                expect(listing.json().get("timestamp") is not None, f"{label}: /repositories has a timestamp")
                one = service.get(f"/repositories/{quoted}", token)
                expect(one.status_code == 200, f"{label}: GET /repositories/{quoted} answers {one.status_code}")
                figures[label] = {key: one.json().get(key) for key in ("name", "size", "disk_size")}
                embedded = service.get("/repositories?embed=true&links=true", token)
                items = embedded.json().get("_embedded", {}).get("items", []) if embedded.ok else []
                expect(embedded.status_code == 200 and len(items) == registry.repositories,
                       f"{label}: /repositories?embed=true&links=true answers {embedded.status_code} "
                       f"with {len(items)} items")
                expect(service.get("/repositories").status_code == 401, f"{label}: no token, 401")
                login = service.get("/auth_token", auth=(alice.uid, alice.password))
                expect(login.status_code == 200 and "auth_token" in login.json(),
                       f"{label}: LDAP login of alice answers {login.status_code}")
                if login.status_code == 200:
                    issued = login.json()["auth_token"]
                    expect(service.get("/repositories", issued).status_code == 200,
                           f"{label}: the issued token works")
                wrong = service.get("/auth_token", auth=(alice.uid, "wrong-password"))
                expect(wrong.status_code == 401, f"{label}: wrong password answers {wrong.status_code}")
                result = run_wrk(service.url + f"/repositories/{quoted}", connections=2, seconds=1,
                                 headers=bearer(token), count_statuses=True)
                expect(result.requests > 0 and result.statuses == {200: result.requests},
                       f"{label}: wrk: {result.rps:.0f} req/s, statuses {result.statuses}")
                memory = service.memory_kib()
                expect(memory.get("VmHWM", 0) > 0, f"{label}: VmHWM {memory.get('VmHWM')} KiB")
            finally:
                service.stop()
        expect(figures["original"] == figures["ours"] and figures["ours"]["size"],
               f"same figures for {name}: {figures}")
    print("check passed" if not failures else f"check FAILED: {len(failures)} problem(s)")
    return 0 if not failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="build the original's venv if needed and check that both services serve (20x3 registry)")
    parser.add_argument("--serve-registry", nargs=2, type=int, metavar=("REPOSITORIES", "TAGS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_registry:
        _serve_registry(*args.serve_registry)
        return
    if args.check:
        sys.exit(check())
    parser.print_help()


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    main()

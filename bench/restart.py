"""Restart with a data file: how soon the real process answers 200 when it starts on 100,000 tags of data.

    python3 -m bench.restart [--repositories 10000] [--tags 10] [--runs 3]

Writes a synthetic snapshot (10,000 repositories x 10 tags, layers shared inside each repository and
across the registry) with ``DataFile.save``, times ``DataFile.load``, then starts
``python -m gitlab_registry_usage_rest`` on it and times process start -> the first 200 from
``GET /repositories/<name>``. The registry URL points at a port where nothing listens, so the data can
only come from the file; the token is forged with the config's secret, so no LDAP is needed. For
contrast, the same start without a data file answers 503 until a crawl succeeds (here: never).
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import jwt
import requests

from gitlab_registry_usage_rest.config import load_config, parse_config
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.persistence import DataFile, encode
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.processes import free_port, stop_process

SECRET = "bench-restart-secret-" + "k7" * 20
START_TIMEOUT = 30.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def synthetic_listing(repositories: int, tags: int, seed: int = 1) -> Listing:
    """Repository names as GitLab groups have them; tags as CI pushes them; layers of realistic sizes."""
    rng = random.Random(seed)
    base = [f"sha256:{rng.getrandbits(256):064x}" for _ in range(60)]
    sizes = {digest: rng.randint(2_000_000, 80_000_000) for digest in base}
    groups = [f"team-{name}" for name in ("payments", "search", "platform", "data", "mobile", "infra", "web", "ml")]
    listed = []
    for number in range(repositories):
        group = groups[number % len(groups)]
        name = f"{group}/sub{number % 37}/service-{number:05d}"
        own = [f"sha256:{rng.getrandbits(256):064x}" for _ in range(8)]
        sizes.update((digest, rng.randint(500, 40_000_000)) for digest in own)
        images = []
        for tag in range(tags):
            if tag == 0:
                label = "latest"
            else:
                label = f"1.{tag // 4}.{tag % 4}" if tag % 3 else f"main-{rng.getrandbits(28):07x}"
            media_type = OCI_MANIFEST if number % 4 == 0 else DOCKER_MANIFEST
            images.append(ImageListing(label, tuple(rng.sample(base, 3) + rng.sample(own, 4)),
                                       digest=f"sha256:{rng.getrandbits(256):064x}", media_type=media_type))
        listed.append(RepositoryListing(name, tuple(dict((image.tag, image) for image in images).values())))
    return Listing(tuple(listed), sizes)


def forged_token(config: Path, identity: str = "bench") -> str:
    """An access token as Flask-JWT-Extended issues it with ``config``'s [jwt] settings (HS256, type access,
    not fresh, and the issuer and audience the service requires)."""
    settings = parse_config(load_config(str(config), environ={}), source=str(config)).jwt
    if settings.algorithm != "HS256":
        raise SystemExit(f"{config}: the benchmark forges HS256 tokens only")
    now = int(time.time())
    claims = {"sub": identity, "iat": now, "nbf": now, "exp": now + 3600, "jti": str(uuid.uuid4()),
              "type": "access", "fresh": False, "iss": settings.issuer, "aud": settings.audience}
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


def write_config(workdir: Path, data_file: Path | None) -> Path:
    nowhere = f"http://127.0.0.1:{free_port()}/"  # nothing listens: every crawl fails
    config = workdir / f"{'with' if data_file else 'without'}-data.conf"
    config.write_text(
        "[general]\n"
        f"data_file = {data_file or ''}\n"
        "refresh_interval = 1 hour\n"
        "log_level = INFO\n\n"
        "[ldap]\n"
        f"host = ldap://127.0.0.1:{free_port()}\n\n"
        "[jwt]\n"
        f"secret_key = {SECRET}\n\n"
        "[registry]\n"
        f"gitlab_base_url = {nowhere}\n"
        f"registry_base_url = {nowhere}\n"
        "access_token = unused\n"
        "timeout = 5 seconds\n"
    )
    return config


def start_to_first(config: Path, path: str, token: str, wanted: int, log: Path) -> float:
    """Seconds from starting the process to the first answer with status ``wanted``."""
    port = free_port()
    http = requests.Session()
    http.trust_env = False
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    with log.open("ab") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "gitlab_registry_usage_rest", "-c", str(config), "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, cwd=config.parent,
        )
        try:
            deadline = started + START_TIMEOUT
            while time.perf_counter() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"the service exited with {process.returncode}; see {log}")
                try:
                    status = http.get(url, headers=headers, timeout=5).status_code
                except requests.ConnectionError:
                    time.sleep(0.005)
                    continue
                if status == wanted:
                    return time.perf_counter() - started
                raise RuntimeError(f"GET {path} answered {status}, expected {wanted}; see {log}")
            raise RuntimeError(f"no answer within {START_TIMEOUT}s; see {log}")
        finally:
            stop_process(process)
            http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=10, help="tags per repository")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-restart-") as directory:
        workdir = Path(directory)
        started = time.perf_counter()
        snapshot = build_snapshot(synthetic_listing(args.repositories, args.tags), timestamp=time.time() - 600)
        built = time.perf_counter() - started
        repositories = len(snapshot.repositories)
        tag_count = sum(len(repository.tags or ()) for repository in snapshot.repositories)
        name = snapshot.repositories[repositories // 2].name
        data_file = DataFile(str(workdir / "snapshot.json"))
        started = time.perf_counter()
        if not data_file.save(snapshot):
            raise SystemExit(f"could not write {data_file.path}")
        saved = time.perf_counter() - started
        # Loaded as at start-up: without another copy of the data on the heap for the collector to walk.
        del snapshot
        gc.collect()
        loads = []
        for _ in range(args.runs):
            started = time.perf_counter()
            loaded = data_file.load()
            loads.append(time.perf_counter() - started)
            assert loaded is not None and encode(loaded) == data_file.path.read_bytes()
            del loaded
            gc.collect()

        path = "/repositories/" + quote(name, safe="")
        log = workdir / "service.log"
        with_data = write_config(workdir, data_file.path)
        without_data = write_config(workdir, None)
        token = forged_token(with_data)
        warm = start_to_first(with_data, path, token, 200, log)  # fills the OS page cache, as on a restart
        first_200 = [start_to_first(with_data, path, token, 200, log) for _ in range(args.runs)]
        first_503 = [start_to_first(without_data, path, token, 503, log) for _ in range(args.runs)]
        in_service = [float(seconds) for seconds in re.findall(r"loaded \d+ repositories from .* in ([\d.]+)s",
                                                                 log.read_text(errors="replace"))]

        print(f"snapshot: {repositories:,} repositories, {tag_count:,} tags "
              f"(built in {built:.2f}s, written in {saved:.2f}s)")
        print(f"warm-up start, not counted: first 200 after {warm:.2f}s\n")
        rows = [
            ("data file size", f"{data_file.path.stat().st_size / 1e6:.1f} MB", ""),
            (f"DataFile.load (best of {args.runs})", f"{min(loads):.3f} s", ""),
            ("DataFile.load inside the service (best, from its log)",
             f"{min(in_service):.2f} s" if in_service else "-", "before it listens"),
            (f"start -> first 200, data file (min / median of {args.runs})",
             f"{min(first_200):.2f} s / {statistics.median(first_200):.2f} s", f"GET {path}"),
            (f"start -> first 503, no data file (min / median of {args.runs})",
             f"{min(first_503):.2f} s / {statistics.median(first_503):.2f} s",
             "no data until the first crawl"),
        ]
        print(f"{'measure':<58} {'value':>18}  note")
        for measure, value, note in rows:
            print(f"{measure:<58} {value:>18}  {note}")


if __name__ == "__main__":
    main()

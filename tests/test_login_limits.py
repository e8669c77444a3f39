"""The login limiter: bounded memory, client addresses only from trusted proxies, one counter per directory user,
IPv6 clients per /64; on the limiter itself and on the real server (real slapd, logins from loopback addresses)."""

from __future__ import annotations

import configparser
import gc
import http.client
import ipaddress
import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest

from gitlab_registry_usage_rest.cli import main
from gitlab_registry_usage_rest.config import Config, parse_config
from gitlab_registry_usage_rest.web.client_address import TrustedProxies
from gitlab_registry_usage_rest.web.throttle import LoginThrottle
from tests.support.processes import until
from tests.support.service import JWT_SECRET, ServiceProcess
from tests.support.slapd import Slapd
from tests.support.webapp import AUDIENCE, ISSUER, basic

WINDOW = 600.0
PROXY = "127.0.0.2"  # the only trusted proxy of the service under test


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- memory: expiry and caps -------------------------------------------------------------------

@pytest.fixture
def allocated() -> Iterator[Callable[[], int]]:
    """Bytes allocated by Python now (after a collection), counted from the start of the test."""

    def now() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        yield now
    finally:
        tracemalloc.stop()


def test_expired_failures_free_their_memory_however_long_the_names(allocated: Callable[[], int]) -> None:
    clock = Clock()
    throttle = LoginThrottle(10, WINDOW, clock)
    before = allocated()
    # 2,000 failed logins, each with its own 4 KiB name, from 400 addresses; then the window passes.
    for n in range(2000):
        throttle.failed(f"10.9.{n % 400 // 200}.{n % 200}", f"{n:05d}" + "x" * 4096)
    clock.now += WINDOW + 1
    assert throttle.retry_after("10.9.9.9", "anyone") is None
    # limits' MemoryStorage kept two keys holding each name for good: 16 MB here.
    assert allocated() - before < 16 * 1024
    assert throttle.tracked() == (0, 0)


def test_tracked_names_and_addresses_are_capped_the_least_recent_forgotten_first() -> None:
    throttle = LoginThrottle(1, WINDOW, Clock(), max_names=100, max_clients=100)
    for n in range(250):
        throttle.failed(f"10.8.{n // 200}.{n % 200}", f"user{n}")
    assert throttle.tracked() == (100, 100)
    assert throttle.retry_after("10.8.0.0", "someone") is None, "the first address is forgotten"
    assert throttle.retry_after("10.8.0.149", "someone") is None, "the last one forgotten"
    assert throttle.retry_after("10.8.0.150", "someone") == WINDOW, "the oldest one kept"
    assert throttle.retry_after("10.8.1.49", "someone") == WINDOW, "the newest one"


def test_a_flood_of_long_distinct_names_stays_within_the_caps(allocated: Callable[[], int]) -> None:
    throttle = LoginThrottle(10, WINDOW, Clock(), max_names=500, max_clients=50)

    def flood(start: int) -> int:
        for n in range(start, start + 1000):
            throttle.failed(f"10.7.0.{n % 100}", f"{n:05d}" + "y" * 8192)
        return allocated()

    before = allocated()
    first = flood(0)
    second = flood(1000)
    assert throttle.tracked() == (500, 50)
    # Names are kept as 64-bit hashes: 500 names cost what 500 short ones do (not 4 MB), and more cost nothing.
    assert first - before < 512 * 1024
    assert second - first < 16 * 1024


def test_a_failure_counts_only_within_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(2, WINDOW, clock)
    throttle.failed("10.6.0.1", "a")
    clock.now += 100
    throttle.failed("10.6.0.1", "b")
    assert throttle.retry_after("10.6.0.1", "c") == WINDOW - 100
    clock.now += WINDOW - 100
    assert throttle.retry_after("10.6.0.1", "c") is None, "the first failure has left the window"
    assert throttle.tracked() == (1, 1)


# --- which address is the client's ---------------------------------------------------------------

def parse(general: str) -> Config:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(f"[general]\n{general}\n[jwt]\nsecret_key = {JWT_SECRET}\n")
    return parse_config(parser, source="test.conf")


def test_trusted_proxies_are_addresses_and_networks() -> None:
    networks = parse("trusted_proxies = 127.0.0.1 10.0.0.0/8, fd00::/8").general.trusted_proxies
    assert [str(network) for network in networks] == ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
    assert parse("").general.trusted_proxies == (), "none by default"


@pytest.mark.parametrize("value", ["1", "2", "127.0.0.1 1"], ids=["one", "two", "mixed"])
def test_a_number_of_trusted_proxies_is_refused_at_start_up_saying_what_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = tmp_path / "service.conf"
    path.write_text(f"[general]\ntrusted_proxies = {value}\n[jwt]\nsecret_key = {JWT_SECRET}\n")
    assert main(["-c", str(path)]) == 2
    error = capsys.readouterr().err
    assert "[general] trusted_proxies" in error and "trusted_proxies = 127.0.0.1 10.0.0.0/8" in error


def test_a_proxy_that_is_no_address_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "service.conf"
    path.write_text(f"[general]\ntrusted_proxies = nginx.local\n[jwt]\nsecret_key = {JWT_SECRET}\n")
    assert main(["-c", str(path)]) == 2
    assert "'nginx.local' is not an IP address or network" in capsys.readouterr().err


def test_the_earlier_default_zero_still_means_no_proxy() -> None:
    # Files written by --print-default-config before this change say "trusted_proxies = 0".
    assert parse("trusted_proxies = 0").general.trusted_proxies == ()


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.1", "198.51.100.1", "192.0.2.1"),
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "203.0.113.9, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1, 10.0.0.6", "198.51.100.1"),
        ("10.0.0.5", "10.0.0.7, 10.0.0.6", "10.0.0.7"),
        ("10.0.0.5", "198.51.100.1, unknown, 10.0.0.6", "10.0.0.6"),
        ("10.0.0.5", "198.51.100.1:4711", "198.51.100.1"),
        ("10.0.0.5", "[2001:db8::1]:4711", "2001:db8::1"),
        ("::ffff:10.0.0.5", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.5", "::ffff:198.51.100.1", "198.51.100.1"),
    ],
    ids=["untrusted-peer-header-ignored", "no-header", "one-proxy", "client-written-part-ignored",
         "two-proxies", "all-trusted-leftmost", "garbage-stops-at-last-trusted", "ipv4-port",
         "ipv6-brackets-port", "mapped-peer", "mapped-client"],
)
def test_the_rightmost_untrusted_address_is_the_client(peer: str, forwarded_for: str, client: str) -> None:
    proxies = TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])
    assert proxies.client(peer, forwarded_for)[0] == client


# --- one counter per user, IPv6 per /64 ----------------------------------------------------------

def test_variants_of_a_name_are_one_counter() -> None:
    throttle = LoginThrottle(3, WINDOW, Clock())
    for client, name in (("10.5.0.1", "alice"), ("10.5.0.2", "Alice"), ("10.5.0.3", " alice")):
        throttle.failed(client, name)
    assert throttle.retry_after("10.5.0.1", "ALICE ") is not None
    assert throttle.retry_after("10.5.0.4", "alice") is None, "a client that never failed for alice may try"


def test_ipv6_clients_are_counted_per_64() -> None:
    throttle = LoginThrottle(2, WINDOW, Clock())
    throttle.failed("2001:db8:1:2::1", "a")
    throttle.failed("2001:db8:1:2:ffff:ffff:ffff:fffe", "b")
    assert throttle.retry_after("2001:db8:1:2::abcd", "c") is not None
    assert throttle.retry_after("2001:db8:1:3::1", "c") is None, "the next /64 is another client"
    assert throttle.retry_after("10.1.2.3", "c") is None


# --- on the real server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[ServiceProcess]:
    """The service with the real slapd, 3 failures allowed, and one trusted proxy: 127.0.0.2."""
    workdir = tmp_path_factory.mktemp("login-limits")
    config = workdir / "service.conf"
    config.write_text(
        f"[general]\ndata_file =\nlogin_max_failures = 3\ntrusted_proxies = {PROXY}\n"
        f"[ldap]\nhost = {slapd.ldaps_url}\nbase_dn = {slapd.base_dn}\nvalid_gid = {slapd.valid_gid}\n"
        f"ca_file = {slapd.ca_file}\ntimeout = 5 seconds\n"
        f"[jwt]\nsecret_key = {JWT_SECRET}\n"
        # Nothing listens there: the registry side plays no part in logging in.
        "[registry]\ngitlab_base_url = http://127.0.0.1:9/\nregistry_base_url = http://127.0.0.1:9/\n"
    )
    with ServiceProcess(workdir, ["-c", str(config)]) as process:
        yield process


def login_from(service: ServiceProcess, source: str, user: str, password: str, forwarded_for: str | None = None
               ) -> tuple[int, bytes]:
    """GET /auth_token over a connection from the loopback address ``source`` (any of 127.0.0.0/8)."""
    url = urlsplit(service.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10, source_address=(source, 0))
    headers = basic(user, password)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        connection.request("GET", url.path + "/auth_token", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slapd
def test_forwarded_for_is_ignored_from_a_client_that_is_not_a_trusted_proxy(service: ServiceProcess) -> None:
    # A client on the port itself, naming a new address and a new user per guess.
    statuses = [login_from(service, "127.0.0.3", f"guess{n}", "wrong", f"203.0.113.{n}")[0] for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.slapd
def test_behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client(service: ServiceProcess) -> None:
    assert [login_from(service, PROXY, f"vic{n}", "wrong", "198.51.100.7")[0] for n in range(3)] == [401] * 3
    assert login_from(service, PROXY, "vic9", "wrong", "198.51.100.7")[0] == 429
    # What the client wrote to the left of the proxy's entry does not make it someone else.
    assert login_from(service, PROXY, "vic9", "wrong", "192.0.2.66, 198.51.100.7")[0] == 429
    # A second trusted hop in front: the address it saw is still this client.
    assert login_from(service, PROXY, "vic9", "wrong", f"198.51.100.7, {PROXY}")[0] == 429
    assert login_from(service, PROXY, "vic9", "wrong", "198.51.100.8")[0] == 401, "another client"
    # The proxy itself, without the header, is just another client.
    assert login_from(service, PROXY, "vic9", "wrong")[0] == 401


@pytest.mark.slapd
def test_variants_of_one_name_are_one_counter_on_the_real_server(service: ServiceProcess) -> None:
    for n, variant in enumerate(["mallory", "Mallory", " MALLORY "]):
        assert login_from(service, PROXY, variant, "wrong", f"198.51.100.{20 + n}")[0] == 401
    # mallory has had her failures: each client that failed for her is refused, whichever spelling it uses.
    assert login_from(service, PROXY, "mallory", "wrong", "198.51.100.22")[0] == 429
    assert login_from(service, PROXY, "MALLORY", "wrong", "198.51.100.20")[0] == 429
    assert login_from(service, PROXY, "mallory", "wrong", "198.51.100.23")[0] == 401, "a new client may try"


@pytest.mark.slapd
def test_ipv6_clients_are_counted_per_64_on_the_real_server(service: ServiceProcess) -> None:
    for n in range(3):
        assert login_from(service, PROXY, f"six{n}", "wrong", f"2001:db8:7:7::{n + 1}")[0] == 401
    assert login_from(service, PROXY, "six9", "wrong", "2001:db8:7:7:ffff:1:2:3")[0] == 429
    assert login_from(service, PROXY, "six9", "wrong", "2001:db8:7:8::1")[0] == 401, "the next /64"


@pytest.mark.slapd
def test_the_token_and_the_logs_name_the_user_as_the_directory_does(service: ServiceProcess, slapd: Slapd) -> None:
    status, body = login_from(service, "127.0.0.1", " ALICE ", slapd.users["alice"].password)
    assert status == 200, body
    token = json.loads(body)["auth_token"]
    claims = pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "alice"
    until(lambda: "issued a token to alice" in service.log(), "the token's log line", log=service.log)
    assert "user=alice" in service.log() and "user= ALICE " not in service.log()

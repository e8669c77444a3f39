"""Brute-force protection for ``/auth_token``: failed logins are limited per client and per user name.

- A client address with ``max_failures`` failures in the window is refused (429), whatever the name.
  IPv6 clients are counted per /64: one host usually holds a whole /64 and can pick a new address per guess.
- A user name with ``max_failures`` failures in the window is refused to every client that itself
  failed for that name, so a distributed guesser gets one try per address, while the user, whose
  own address has no failures, still logs in: a successful login is never slowed by others' failures.
- Names are counted as the directory compares them: ``alice``, ``Alice`` and `` alice`` are one counter.

The state is bounded, whatever arrives: failures older than the window are dropped, at most ``max_names``
names and ``max_clients`` addresses are tracked (the least recently failed are forgotten first), and a name
is kept as a 64-bit keyed hash, never as the text sent, which may be as long as the request header limit.
Forgetting can only make the limiter more lenient towards whoever is forgotten, never refuse anybody.

This replaces the ``limits`` package's moving windows, whose ``MemoryStorage`` empties expired windows but
keeps their keys (two of them holding the name as typed) for the life of the process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import threading
import time
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable

MAX_NAMES = 10_000
MAX_CLIENTS = 10_000
# Longer "addresses" (not an IP: a test client, a unix socket) are cut: a key's size must not depend on input.
_MAX_CLIENT_KEY = 64
IPV6_PREFIX = 64


def normalized_name(username: str) -> str:
    """The user name as directories compare it: NFKC, case-folded, outer spaces trimmed, inner ones collapsed.

    LDAP's caseIgnoreMatch (the uid attribute's) does the same (RFC 4518), so every variant that logs in as
    one directory user is one counter here.
    """
    return " ".join(unicodedata.normalize("NFKC", username).casefold().split())


def client_key(address: str) -> str:
    """The per-address counter's key: an IPv4 address as is, an IPv6 address as its /64."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address[:_MAX_CLIENT_KEY]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class LoginThrottle:
    """Counts failed logins and says whether (and how long) a new attempt must wait."""

    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.time,
                 max_names: int = MAX_NAMES, max_clients: int = MAX_CLIENTS) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        # A key of this process's own: nobody outside can choose names that share a counter.
        self._hash_key = secrets.token_bytes(16)
        # A name keeps the times of its last max_failures failures; a client keeps the time and name of each of
        # its last max_failures failures, which also answers "did this client fail for this name?" without a
        # table of pairs.
        self._names = _Table(max_failures, max_names, window_seconds)
        self._clients = _Table(max_failures, max_clients, window_seconds)
        self._lock = threading.Lock()

    def retry_after(self, client: str, username: str) -> int | None:
        """Seconds until this client may try this user name again, or None if it may try now."""
        address, name = client_key(client), self._name_key(username)
        now = self._clock()
        waits: list[float] = []
        with self._lock:
            self._expire(now)
            failures = self._clients.get(address, now)
            if failures is not None:
                if len(failures.times) >= self._max:
                    waits.append(failures.times[0])
                if name in failures.names:
                    times = self._names.get(name, now)
                    if times is not None and len(times.times) >= self._max:
                        waits.append(times.times[0])
        if not waits:
            return None
        # The moment the oldest failure that still counts leaves the window.
        return max(1, math.ceil(max(waits) + self._window - now))

    def failed(self, client: str, username: str) -> None:
        """Count a failed login of this client for this user name."""
        address, name = client_key(client), self._name_key(username)
        now = self._clock()
        with self._lock:
            self._expire(now)
            self._clients.add(address, now, name)
            self._names.add(name, now)

    def tracked(self) -> tuple[int, int]:
        """How many names and client addresses are remembered now: what the memory use is proportional to."""
        with self._lock:
            self._expire(self._clock())
            return len(self._names), len(self._clients)

    def _expire(self, now: float) -> None:
        self._names.expire(now)
        self._clients.expire(now)

    def _name_key(self, username: str) -> int:
        digest = hashlib.blake2b(normalized_name(username).encode("utf-8", "surrogatepass"), digest_size=8,
                                 key=self._hash_key).digest()
        return int.from_bytes(digest, "big")


class _Failures:
    """One key's last failures inside the window, oldest first: their times and (for a client) the names.

    Arrays of machine numbers rather than deques of objects: about 300 bytes for ten failures, not 1,500.
    """

    __slots__ = ("names", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.names = array("Q")


class _Table:
    """Keys with their last ``depth`` failures inside the window, least recently failed first, ``capacity`` at
    most. Not thread-safe: ``LoginThrottle`` holds its lock around every call."""

    def __init__(self, depth: int, capacity: int, window: float) -> None:
        self._depth = depth
        self._capacity = capacity
        self._window = window
        self._entries: OrderedDict[str | int, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str | int, now: float) -> _Failures | None:
        """The key's failures inside the window, or None if it has none."""
        failures = self._entries.get(key)
        if failures is None:
            return None
        # Failures older than the window, in front of a newer one of the same key.
        horizon = now - self._window
        stale = next((index for index, at in enumerate(failures.times) if at > horizon), len(failures.times))
        if stale == len(failures.times):
            # Only if the clock stepped back: the front of the table is not always the oldest then.
            del self._entries[key]
            return None
        if stale:
            del failures.times[:stale]
            del failures.names[:stale]
        return failures

    def add(self, key: str | int, now: float, name: int | None = None) -> None:
        failures = self._entries.get(key)
        if failures is None:
            failures = self._entries[key] = _Failures()
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        failures.times.append(now)
        if name is not None:
            failures.names.append(name)
        if len(failures.times) > self._depth:
            del failures.times[0]
            if name is not None:
                del failures.names[0]

    def expire(self, now: float) -> None:
        """Forget the keys whose newest failure has left the window.

        They are at the front (least recently failed first), so only they are visited: amortised O(1).
        """
        horizon = now - self._window
        while self._entries:
            key, failures = next(iter(self._entries.items()))
            if failures.times and failures.times[-1] > horizon:
                return
            del self._entries[key]
            if not self._entries:
                # A dict keeps the size it once grew to; an emptied table may as well give that memory back.
                self._entries = OrderedDict()

"""Brute-force protection for ``/auth_token``: failed logins are limited per client and per user name.

Built on the ``limits`` package (Flask-Limiter's engine) with in-memory moving windows, used directly
rather than through Flask-Limiter's route decorators, because only *failed* logins may count and the
check must happen before the directory is asked.

- A client address with ``max_failures`` failures in the window is refused (429), whatever the name.
- A user name with ``max_failures`` failures in the window is refused to every client that itself
  failed for that name, so a distributed guesser gets one try per address, while the user, whose
  own address has no failures, still logs in: a successful login is never slowed by others' failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class LoginThrottle:
    """Counts failed logins and says whether (and how long) a new attempt must wait."""

    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._limit = RateLimitItemPerSecond(max_failures, max(1, math.ceil(window_seconds)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._clock = clock

    def retry_after(self, client: str, username: str) -> int | None:
        """Seconds until this client may try this user name again, or None if it may try now."""
        name = username.casefold()  # directories compare user names without case
        blocked = [("client", client)]
        if self._failed_before(client, name):
            blocked.append(("user", name))
        waits = [self._wait(*key) for key in blocked if not self._limiter.test(self._limit, *key)]
        return max(waits) if waits else None

    def failed(self, client: str, username: str) -> None:
        name = username.casefold()
        for key in (("client", client), ("user", name), ("pair", client, name)):
            self._limiter.hit(self._limit, *key)

    def _failed_before(self, client: str, name: str) -> bool:
        return self._limiter.get_window_stats(self._limit, "pair", client, name).remaining < self._limit.amount

    def _wait(self, *key: str) -> int:
        reset = self._limiter.get_window_stats(self._limit, *key).reset_time
        return max(1, math.ceil(reset - self._clock()))

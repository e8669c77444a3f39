"""Tokens this process has already verified, so that a repeated token costs a lookup, not a JWT decode.

PyJWT checks every character of a token in Python: about half the cost of a small request. Dashboards
and scripts send the same token with every poll.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class VerifiedTokens:
    """Tokens this process has fully verified, with their subject and expiry, so a client that sends the
    same token again (every dashboard poll) costs a dictionary lookup instead of a full JWT decode.

    Only tokens that passed verification are kept, keyed by their exact text (which cannot be forged
    without the key), and each still expires at its own ``exp``.
    """

    def __init__(self, size: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def subject(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._tokens[token]
                return None
            self._tokens.move_to_end(token)
            return entry[0]

    def add(self, token: str, subject: str, expires: float) -> None:
        with self._lock:
            self._tokens[token] = (subject, expires)
            while len(self._tokens) > self._size:
                self._tokens.popitem(last=False)

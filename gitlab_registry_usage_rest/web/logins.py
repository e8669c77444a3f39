"""Logging in: one check shared by ``/auth_token`` (HTTP basic auth) and the browser's login form.

Both ask the same directory, under the same failed-login limits (``throttle``), with the same audit
log lines; a login waiting on a hanging directory may hold at most its share of the request threads.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol, runtime_checkable

from flask import request

from .responses import RETRY_AFTER_SECONDS
from .throttle import LoginThrottle

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    """Checks a username and password; raises one of ``create_app``'s ``unavailable`` errors when it cannot ask."""

    def authenticate(self, username: str, password: str) -> bool: ...


@runtime_checkable
class NamingAuthenticator(Authenticator, Protocol):
    """An authenticator that also says who logged in: the directory's own spelling of the name."""

    def login(self, username: str, password: str) -> str | None:
        """The user's name as the directory holds it if the password is right, else None."""
        ...


class LoginImpossible(Exception):
    """A login that cannot be decided now: how to answer it, the same for ``/auth_token`` and the form."""

    status = 503
    message = "The login cannot be checked now"
    retry_after = 1


class AuthenticationUnavailable(LoginImpossible):
    """The directory could not be asked; answered with 503."""

    status = 503
    message = "The login directory cannot be reached; try again later"
    retry_after = RETRY_AFTER_SECONDS


class LoginsBusy(LoginImpossible):
    """Half the request threads already wait on the directory; answered at once with 429, as a limit it is."""

    status = 429
    message = "Too many logins are waiting for the login directory; try again shortly"
    retry_after = 1


class TooManyLogins(LoginImpossible):
    """Too many failed logins from this client (or for this name from this client); answered with 429."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after
        self.message = f"Too many failed logins; try again in {retry_after} seconds"


class LoginCheck:
    """``check(username, password)``: the directory's name for the user, or None; raises when it must wait."""

    def __init__(self, authenticator: Authenticator, unavailable: tuple[type[Exception], ...],
                 throttle: LoginThrottle, logins: threading.BoundedSemaphore) -> None:
        self._unavailable = unavailable
        self._throttle = throttle
        self._logins = logins
        if isinstance(authenticator, NamingAuthenticator):
            self._login = authenticator.login
        else:
            def login(username: str, password: str) -> str | None:
                return username if authenticator.authenticate(username, password) else None

            self._login = login

    def __call__(self, username: str, password: str) -> str | None:
        throttle, logins, login, unavailable = self._throttle, self._logins, self._login, self._unavailable
        client = request.remote_addr or "unknown"
        wait = throttle.retry_after(client, username)
        if wait is not None:
            log.warning("login of %r from %s refused: too many failed logins, retry in %ds", _shown(username),
                        client, wait)
            raise TooManyLogins(wait)
        if not logins.acquire(blocking=False):
            log.warning("login of %r from %s refused: every login thread waits on the directory", _shown(username),
                        client)
            raise LoginsBusy()
        try:
            name = login(username, password)
        except unavailable as error:
            raise AuthenticationUnavailable(str(error)) from error
        finally:
            logins.release()
        if name is None:
            throttle.failed(client, username)
            log.info("login of %r from %s refused", _shown(username), client)
        return name


def _shown(username: str, limit: int = 64) -> str:
    """A name as typed, cut for the log: a header of guesses must not become kilobytes of log per request."""
    return username if len(username) <= limit else f"{username[:limit]}... ({len(username)} characters)"

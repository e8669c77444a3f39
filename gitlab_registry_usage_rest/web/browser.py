"""What a person's browser talks to: ``/`` (the login form or the dashboard), ``POST /login``, ``POST /logout``.

A browser cannot send a bearer header while following links, so after a login it holds the token in
an HttpOnly, SameSite=Strict cookie (Secure over HTTPS), which only HTML requests accept. The login
form goes through the same check as ``/auth_token`` (directory, failed-login limits, audit log).
Login CSRF: a POST is refused unless its ``Origin`` (or, without one, its ``Referer``) is this
service's own origin, so another site cannot log a visitor in under its own account.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request
from flask_jwt_extended import create_access_token, get_jwt_identity, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from ..model import Snapshot
from ..state import RefreshState, SnapshotHolder
from . import hal, pages
from .logins import AuthenticationUnavailable, LoginCheck, LoginImpossible
from .responses import wants_html

if TYPE_CHECKING:
    from .history_api import PageHistory

log = logging.getLogger(__name__)
# Where init_history leaves the pages' view of the history on the app (absent: no history is kept).
_PAGE_HISTORY = "gitlab_registry_usage_rest.page_history"


def provide_page_history(app: Flask, history: PageHistory) -> None:
    """Give ``app``'s pages their sparklines and the week's growth (``history_api.init_history`` does)."""
    app.extensions[_PAGE_HISTORY] = history


def page_history(app: Flask | None = None) -> PageHistory | None:
    """``app``'s (by default the current app's) view of the history for its pages; ``None`` where no history
    is kept."""
    found: PageHistory | None = (app or current_app).extensions.get(_PAGE_HISTORY)
    return found


def html_response(body: str, status: int = 200) -> Response:
    """A page for people: its own CSP (forms post to this origin only), never stored by caches."""
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = pages.CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "private, no-store"
    # The login and logout forms need the browser's Origin on their POST (sent to this origin only).
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _cookie_path() -> str:
    return pages.dashboard_path(request.script_root)


def _see_home() -> Response:
    """303: after a form's POST, the browser GETs the dashboard."""
    return Response(status=303, headers={"Location": _cookie_path(), "Cache-Control": "no-store"})


def set_token_cookie(response: Response, token: str) -> None:
    """Give a browser its token, for the HTML pages only."""
    response.set_cookie(
        current_app.config["JWT_ACCESS_COOKIE_NAME"], token,
        max_age=int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
        path=_cookie_path(), secure=request.is_secure, httponly=True, samesite="Strict",
    )


def cookie_user() -> str | None:
    """Who the browser's cookie says is logged in; None without a cookie or with one that is no longer valid."""
    try:
        verify_jwt_in_request(locations=["cookies"], optional=True)
    except (JWTExtendedException, PyJWTError):
        return None
    identity = get_jwt_identity()
    return identity if isinstance(identity, str) else None


def login_page_response(status: int = 200, message: str | None = None, username: str = "") -> Response:
    response = html_response(pages.login_page(request.script_root, message, username), status)
    if status == 401:
        # A 401 names a way to authenticate (RFC 9110); browsers show no prompt for this one.
        response.headers["WWW-Authenticate"] = 'Bearer realm="registry-usage"'
    return response


def _same_origin() -> bool:
    """The form was posted from one of this service's own pages."""
    own = f"{request.scheme}://{request.host}".lower()
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() == own
    referer = request.headers.get("Referer")
    if not referer:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}".lower() == own


View = TypeVar("View")


class Overviews(Generic[View]):
    """What a page shows of the current snapshot whoever looks (``pages.Overview`` for the dashboard,
    ``pages.GroupsOverview`` for the groups), built on the first request that needs it.

    Only the latest is kept (a new snapshot replaces it), so memory is one overview; its treemaps and orders
    are then the same bytes for every person and every poll until the next refresh.
    """

    def __init__(self, build: Callable[[Snapshot, str], View]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._current: tuple[Snapshot, str, View] | None = None

    def get(self, snapshot: Snapshot, base: str) -> View:
        with self._lock:
            current = self._current
            if current is not None and current[0] is snapshot and current[1] == base:
                return current[2]
            # Built under the lock: concurrent first requests after a refresh wait for one build, not do many.
            built = self._build(snapshot, base)
            self._current = (snapshot, base, built)
            return built


def init_browser(app: Flask, snapshots: SnapshotHolder, refresh: RefreshState, check: LoginCheck,
                 clock: Callable[[], float]) -> None:
    """Register ``/``, ``/login`` and ``/logout``."""
    overviews = Overviews(pages.Overview)

    @app.get("/", endpoint="home", strict_slashes=False)
    def _home() -> Response:
        if not wants_html():
            # Scripts get the way in, as HAL links.
            base = request.script_root
            return jsonify({"_links": {
                "self": {"href": base + "/"},
                "auth_token": {"href": base + "/auth_token"},
                "repositories": {"href": hal.repositories_path(base)},
                "groups": {"href": pages.groups_path(base)},
                "cleanup": {"href": pages.cleanup_path(base)},
                "health": {"href": base + "/health"},
                "metrics": {"href": base + "/metrics"},
            }})
        user = cookie_user()
        if user is None:
            return login_page_response()
        g.user = user
        snapshot = snapshots.current()
        view = pages.Dashboard(snapshot, refresh.current(), clock(), request.script_root,
                               pages.TableQuery.from_args(request.args), user)
        overview = None
        trend, growers = None, None
        if snapshot is not None:
            overview = overviews.get(snapshot, request.script_root)
            history = page_history()
            if history is not None:
                trend, growers = history.dashboard(snapshot)
        return html_response(pages.dashboard_page(view, overview, trend, growers))

    @app.post("/login", endpoint="login")
    def _login() -> Response:
        if not _same_origin():
            log.warning("login form posted from another origin (%s) refused",
                        request.headers.get("Origin") or request.headers.get("Referer") or "no Origin or Referer")
            return login_page_response(403, "This login form was sent from another site; log in here instead.")
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        if not username or not password:
            return login_page_response(401, "Enter your user name and password.", username)
        try:
            name = check(username, password)
        except LoginImpossible as error:
            # Answered as /auth_token answers it (status, Retry-After, message), on the form.
            if isinstance(error, AuthenticationUnavailable):
                log.warning("login impossible, the directory cannot be asked: %s", error)
            response = login_page_response(error.status, error.message + ".", username)
            response.headers["Retry-After"] = str(error.retry_after)
            return response
        if name is None:
            return login_page_response(401, "Invalid user name or password.", username)
        g.user = name
        token = create_access_token(identity=name)
        log.info("issued a token to %s (login form)", name)
        response = _see_home()
        set_token_cookie(response, token)
        return response

    @app.post("/logout", endpoint="logout")
    def _logout() -> Response:
        if not _same_origin():
            return login_page_response(403, "This logout was sent from another site.")
        response = _see_home()
        response.delete_cookie(current_app.config["JWT_ACCESS_COOKIE_NAME"], path=_cookie_path(),
                               secure=request.is_secure, httponly=True, samesite="Strict")
        return response

"""The data endpoints and the login: thin resources that read the query, take one snapshot and answer.

flask-restful-hal 0.2.6 supplies the ``Api`` (HAL+JSON as default media type); its ``Resource`` is not
used because with current Flask it answers every GET with 415 (its parser reads a JSON body) and
builds a tag's ``self`` link wrongly; ``hal`` produces the same documents without those defects.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

from flask import Flask, Response, g, jsonify, request
from flask_httpauth import HTTPBasicAuth
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request
from flask_restful import Resource

from ..cleanup import CleanupResult, PolicyError, Scope
from ..model import GroupUsage, RepositoryUsage, Snapshot, TagUsage
from ..state import SnapshotHolder
from . import export, hal, pages, simulations
from .browser import Overviews, cookie_user, html_response, login_page_response, page_history, set_token_cookie
from .html import CONTENT_SECURITY_POLICY, PAGE_SIZE, render_page
from .responses import RETRY_AFTER_SECONDS, RenderCache, json_error, respond, wants_html
from .tokens import VerifiedTokens

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
# Answers tried per request when refreshes keep replacing the snapshot under it (each a cleanup simulation).
ATTEMPTS = 3
# Group pages' overviews kept: each holds a treemap (a few hundred rectangles) and its group's order.
MAX_GROUP_OVERVIEWS = 64


def _token_required(method: F) -> F:
    """Accept the bearer header; a browser without one may use the cookie ``/auth_token`` set for it."""

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        subject = self.tokens.subject(token) if token else None
        if subject is None:
            # A browser that answered /auth_token's prompt sends its Basic header with every later request
            # unasked: on HTML requests only a bearer header takes the cookie's place.
            use_cookie = wants_html() and not header.startswith("Bearer ")
            if use_cookie:
                subject = cookie_user()
                if subject is None:
                    return login_page_response(401, "Log in to see this page.")
            else:
                verify_jwt_in_request(locations=["headers"])
                subject = get_jwt_identity()
            if token:
                self.tokens.add(token, subject, get_jwt()["exp"])
        g.user = subject
        return method(self, *args, **kwargs)

    return cast(F, wrapper)


def _options(prefix_allowed: bool = False, sort_keys: tuple[str, ...] = hal.SORT_KEYS) -> hal.Options:
    browser = wants_html()
    options = hal.options_from(request.args, base=request.script_root, links_default=browser,
                               prefix_allowed=prefix_allowed, sort_keys=sort_keys)
    # A page for people lists a page of items, however many there are; the JSON API keeps its contract.
    return hal.paged(options, PAGE_SIZE) if browser else options


class AuthToken(Resource):  # type: ignore[misc]
    """``/auth_token``: HTTP basic auth against LDAP in, a JWT out."""

    def __init__(self, basic_auth: HTTPBasicAuth, app: Flask) -> None:
        self._basic_auth = basic_auth
        self._app = app
        self.get = basic_auth.login_required(self._get)

    def _get(self) -> Response:
        username = self._basic_auth.current_user()
        g.user = username
        token = create_access_token(identity=username)
        log.info("issued a token to %s", username)
        if not wants_html():
            response = jsonify({"auth_token": token})
            response.headers["Cache-Control"] = "no-store"
            return response
        # A browser cannot send a bearer header when following links: give it the token as a cookie, but
        # not to a navigation another site started (https://attacker:pw@service/auth_token would log the
        # visitor in as the attacker: login CSRF). Browsers say where a navigation came from.
        if request.headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
            log.warning("token for %s not set as a cookie: the login came from another site", username)
            return login_page_response(403, "This login was started by another site; log in here instead.")
        response = Response(
            render_page({"auth_token": "(set as a cookie for this browser)", "_links": {
                "dashboard": {"href": pages.dashboard_path(request.script_root)},
                "repositories": {"href": hal.repositories_path(request.script_root)}}}, "Logged in"),
            mimetype="text/html",
        )
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-store"
        set_token_cookie(response, token)
        return response


class _DataResource(Resource):  # type: ignore[misc]
    """A resource served from the snapshot, through the render cache, for holders of a token."""

    def __init__(self, snapshots: SnapshotHolder, cache: RenderCache, tokens: VerifiedTokens,
                 clock: Callable[[], float]) -> None:
        self._snapshots = snapshots
        self._cache = cache
        self.tokens = tokens
        self._clock = clock  # the pages' ages


class Repositories(_DataResource):
    """``/repositories``: the timestamp of the data, the repositories as links and embedded items."""

    @_token_required
    def get(self) -> Response:
        snapshot = self._snapshots.current()
        if export.wants_csv():
            # Every matching repository, not a page: an export is for spreadsheets, whoever asks.
            window = hal.parse_window(request.args, prefix_allowed=True)
            prefix = window.prefix
            return export.respond_csv(
                self._cache, snapshot, ("repositories", window), export.REPOSITORY_COLUMNS,
                lambda: [] if snapshot is None else export.repository_rows(hal.select_repositories(snapshot, window)),
                "repositories" if not prefix else f"repositories-{prefix}")
        options = _options(prefix_allowed=True)
        return respond(self._cache, snapshot, "repositories", options,
                        lambda: hal.repositories_document(snapshot, options), "Repositories")


class _SimulatingResource(_DataResource):
    """A data resource that also answers a cleanup simulation (its scope: the registry, a group, a repository)."""

    def __init__(self, snapshots: SnapshotHolder, cache: RenderCache, tokens: VerifiedTokens,
                 clock: Callable[[], float], simulations: simulations.Simulations) -> None:
        super().__init__(snapshots, cache, tokens, clock)
        self._simulations = simulations

    def _answer(self, answer: Callable[[Snapshot | None], Response]) -> Response:
        """``answer`` for the current snapshot, again for the new one where a refresh replaced it meanwhile (the
        simulator builds nothing for a snapshot no longer served)."""
        for _ in range(ATTEMPTS):
            try:
                return answer(self._snapshots.current())
            except simulations.Superseded:
                continue
        return _retry_later(json_error(503, "The data was refreshed while answering; try again"))

    def _cleanup(self, snapshot: Snapshot, scope: Scope, path: str, stem: str, title: str) -> Response:
        """The simulator's answer for ``scope``: JSON, CSV, the page people read, or the API view in a browser.
        The rules are ``simulations``'; the clock only dates the page's ages."""
        csv = export.wants_csv()
        page = not csv and _page_wanted()
        base, args = request.script_root, request.args

        def shown(result: CleanupResult | None = None, error: PolicyError | None = None, status: int = 200
                  ) -> Response:
            return html_response(pages.cleanup_page(snapshot, result, error, args, base, g.get("user"),
                                                    now=self._clock(), scope=scope), status)

        try:
            policy, query = simulations.parse_request(args, form=page)
            simulations.check_simulable(snapshot, scope)
        except PolicyError as error:
            if page:
                return shown(error=error, status=400)
            response = jsonify({"message": str(error), "parameter": error.parameter})
            response.status_code = 400
            return response
        except simulations.Unavailable as unavailable:
            return _retry_later(shown(error=PolicyError("data", unavailable.message), status=503) if page
                                else json_error(503, unavailable.message))

        def simulate() -> CleanupResult:
            return self._simulations.result(snapshot, policy, scope, query)

        if page:
            # Nothing asked yet: the form, filled in with GitLab's usual policy.
            return shown(simulate() if simulations.policy_asked(args) else None)
        key = ("cleanup", scope, query)
        if csv:
            return export.respond_csv(self._cache, snapshot, (key, base), export.CLEANUP_COLUMNS,
                                      lambda: export.cleanup_rows(simulate()), stem)
        limit = PAGE_SIZE if wants_html() else None  # the API view in a browser lists a page, as elsewhere
        options = hal.Options(base=base, page_size=limit)
        return respond(self._cache, snapshot, key, options,
                       lambda: simulations.cleanup_document(snapshot, simulate(), path, query, base, limit), title)

    def _no_snapshot(self, scope: Scope) -> Response:
        """Before the first crawl: 503, as the page people read or as JSON."""
        if not export.wants_csv() and _page_wanted():
            return _retry_later(html_response(pages.cleanup_page(
                None, None, None, request.args, request.script_root, g.get("user"), now=self._clock(), scope=scope),
                503))
        return _no_data()


class Cleanup(_SimulatingResource):
    """``/cleanup``: what a cleanup policy would delete in the whole registry, and free."""

    @_token_required
    def get(self) -> Response:
        return self._answer(self._get)

    def _get(self, snapshot: Snapshot | None) -> Response:
        if snapshot is None:
            return self._no_snapshot(Scope())
        return self._cleanup(snapshot, Scope(), hal.cleanup_path(request.script_root), "cleanup", "Cleanup")


class Groups(_DataResource):
    """``/groups?depth=N``: the groups of one depth (top level by default) with their totals."""

    def __init__(self, overviews: Overviews[pages.GroupsOverview], **data: Any) -> None:
        super().__init__(**data)
        self._overviews = overviews  # the page's treemaps and orders, built once per snapshot

    @_token_required
    def get(self) -> Response:
        snapshot = self._snapshots.current()
        if export.wants_csv():
            depth = hal.parse_depth(request.args)
            window = hal.parse_window(request.args, prefix_allowed=False, sort_keys=hal.GROUP_SORT_KEYS)
            return export.respond_csv(
                self._cache, snapshot, ("groups", depth, window), export.GROUP_COLUMNS,
                lambda: [] if snapshot is None else export.group_rows(hal.select_groups(snapshot, depth, window)),
                "groups" if depth == 1 else f"groups-depth-{depth}")
        if _page_wanted():
            overview = None if snapshot is None else self._overviews.get(snapshot, request.script_root)
            return html_response(pages.groups_page(snapshot, request.script_root, g.get("user"), request.args,
                                                   now=self._clock(), overview=overview))
        depth, options = hal.parse_depth(request.args), _options(sort_keys=hal.GROUP_SORT_KEYS)
        return respond(self._cache, snapshot, ("groups", depth), options,
                       lambda: hal.groups_document(snapshot, options, depth), "Groups")


class GroupOverviews:
    """What the group pages show of the snapshot being served (``pages.GroupOverview``: cards, treemap, order),
    for the ``MAX_GROUP_OVERVIEWS`` (group, prefix) pairs asked for last; a new snapshot starts afresh.

    Built outside the lock (one group's build does not hold up another's page; racing threads may build one
    twice, equally). A request still holding a snapshot no longer served (``current``) gets one not kept, so it
    cannot replace the new snapshot's."""

    def __init__(self, current: Callable[[], Snapshot | None], size: int = MAX_GROUP_OVERVIEWS) -> None:
        self._served = current
        self._size = size
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._entries: OrderedDict[tuple[str, str], pages.GroupOverview] = OrderedDict()

    def get(self, snapshot: Snapshot, group: GroupUsage, base: str) -> pages.GroupOverview:
        key = (group.name, base)
        with self._lock:
            found = self._entries.get(key) if self._snapshot is snapshot else None
            if found is not None:
                self._entries.move_to_end(key)
                return found
        built = pages.GroupOverview(snapshot, group, base)
        with self._lock:
            if self._snapshot is not snapshot:
                if snapshot is not self._served():
                    return built
                self._snapshot = snapshot
                self._entries.clear()
            self._entries[key] = built
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return built


class GroupPath(_SimulatingResource):
    """Everything below ``/groups/``: a group (``a/b`` or ``a%2Fb``), or its cleanup simulator."""

    def __init__(self, overviews: GroupOverviews, **data: Any) -> None:
        super().__init__(**data)
        self._overviews = overviews  # the group pages' treemaps and orders, built once per snapshot and group

    @_token_required
    def get(self, path: str) -> Response:
        return self._answer(lambda snapshot: self._get(snapshot, path))

    def _get(self, snapshot: Snapshot | None, path: str) -> Response:
        if snapshot is None:
            return _no_data()
        try:
            candidates = hal.resolve_group(_raw_subpath(path, "groups"))
        except UnicodeDecodeError:
            candidates = []
        found = hal.find_group(snapshot, candidates)
        if found is None:
            shown = candidates[0].path() if candidates else "/groups/" + quote(path, safe="/%")
            return json_error(404, f'The resource "{shown}" does not exist')
        target, group = found
        base = request.script_root
        if target.cleanup:
            return self._cleanup(snapshot, Scope(group=group.name), hal.group_cleanup_path(base, group.name),
                                 f"cleanup-{group.name}", f"{group.name} : cleanup")
        if export.wants_csv():
            # Every repository the group covers, for chargeback of one group (the window applies, as elsewhere).
            window = hal.parse_window(request.args, prefix_allowed=False)
            return export.respond_csv(
                self._cache, snapshot, ("group-repositories", group.name, window), export.REPOSITORY_COLUMNS,
                lambda: export.repository_rows(hal.select_covered(snapshot, group, window)), f"group-{group.name}")
        if _page_wanted():
            history = page_history()
            return html_response(pages.group_page(snapshot, group, base, g.get("user"), request.args,
                                                  now=self._clock(), overview=self._overviews.get(snapshot, group,
                                                                                                  base),
                                                  trend=None if history is None else history.group(snapshot, group)))
        # The window sorts and cuts the group's direct repositories: repository sort keys.
        options = _options()
        return respond(self._cache, snapshot, ("group", group.name), options,
                       lambda: hal.group_document(snapshot, group, options), group.name)


def _page_wanted() -> bool:
    """A browser asking for the page people read, not the API view (``?view=api``)."""
    return wants_html() and request.args.get("view") != "api"


def _retry_later(response: Response) -> Response:
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _no_data() -> Response:
    return _retry_later(json_error(503, "No registry data has been collected yet; try again shortly"))


class RepositoryPath(_SimulatingResource):
    """Everything below ``/repositories/``: a repository, its tags collection, one tag, or its cleanup simulator."""

    @_token_required
    def get(self, path: str) -> Response:
        return self._answer(lambda snapshot: self._get(snapshot, path))

    def _get(self, snapshot: Snapshot | None, path: str) -> Response:
        if snapshot is None:
            return _no_data()
        try:
            candidates = hal.resolve(_raw_subpath(path))
        except UnicodeDecodeError:
            candidates = []
        found = hal.find(snapshot, candidates)
        if found is None:
            shown = candidates[0].path() if candidates else "/repositories/" + quote(path, safe="/%")
            return json_error(404, f'The resource "{shown}" does not exist')
        if found[0].cleanup:
            name = found[0].repository
            return self._cleanup(snapshot, Scope(repository=name),
                                 hal.repository_cleanup_path(request.script_root, name), f"cleanup-{name}",
                                 f"{name} : cleanup")
        if wants_html() and request.args.get("view") != "api" and not found[0].collection:
            return _page_for(found, self._clock(), snapshot)
        target, options = found[0], _options()
        title = target.repository + (f" : {target.tag}" if target.tag else " : tags" if target.collection else "")
        return respond(self._cache, snapshot, target, options, lambda: hal.render(snapshot, found, options), title)


def _page_for(found: tuple[hal.Target, RepositoryUsage, TagUsage | None], now: float,
              snapshot: Snapshot) -> Response:
    """The page people read for a repository or a tag (``?view=api`` keeps the API's own view)."""
    _, repository, tag = found
    base, user = request.script_root, g.get("user")
    if tag is not None:
        return html_response(pages.tag_page(repository, tag, base, user, now=now))
    page = pages.page_number(request.args)
    history = page_history()
    trend = None if history is None else history.repository(snapshot, repository)
    return html_response(pages.repository_page(repository, base, user, page, now=now, trend=trend))


def _raw_subpath(path: str, collection: str = "repositories") -> str:
    """The request path below ``/repositories/`` (or ``/<collection>/``) as sent, so encoded slashes stay apart
    from separators.

    WSGI servers decode PATH_INFO (Werkzeug turns ``%2F`` into ``/``, cheroot does not); the raw
    request URI keeps what the client sent. Without one, the decoded path is the best we have.
    """
    raw = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI") or ""
    raw_path = urlsplit(raw).path if "://" in raw.split("?", 1)[0] else raw.split("?", 1)[0]
    # Servers put the mount prefix in the request URI; Werkzeug's test client leaves it out.
    for prefix in (quote(request.script_root) + f"/{collection}/", f"/{collection}/"):
        if raw_path.startswith(prefix):
            return raw_path[len(prefix):]
    return quote(path, safe="/%")

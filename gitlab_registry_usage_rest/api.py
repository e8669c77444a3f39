"""The web layer: ``create_app`` wires the resources to an injected snapshot holder and authenticator.

Resources are thin: read the query, take one snapshot, call the pure HAL code in ``hal``, return.
flask-restful-hal 0.2.6 supplies the ``Api`` (HAL+JSON as default media type); its ``Resource`` is not
used because with current Flask it answers every GET with 415 (its parser reads a JSON body) and
builds a tag's ``self`` link wrongly; ``hal`` produces the same documents without those defects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import wraps
from typing import Any, Callable, Hashable, Protocol, TypeVar, cast
from urllib.parse import quote, urlsplit

from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from flask_httpauth import HTTPBasicAuth
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request
from flask_restful import Resource
from flask_restful_hal import Api
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.middleware.proxy_fix import ProxyFix

from . import hal
from .config import Config
from .health import health
from .html import CONTENT_SECURITY_POLICY, render_page
from .metrics import Metrics
from .model import Snapshot
from .rendering import COMPRESS_MIN_BYTES, RenderCache, Rendered, make_etag
from .replay import ENVIRON_KEY, Replayable, ResponseReplay, VerifiedTokens
from .state import RefreshState, SnapshotHolder
from .throttle import LoginThrottle

log = logging.getLogger(__name__)
access_log = logging.getLogger("gitlab_registry_usage_rest.access")

HAL_JSON = "application/hal+json"
RETRY_AFTER_SECONDS = 30
# The API takes no request bodies; anything larger than this is refused before it is read.
MAX_BODY = 64 * 1024
F = TypeVar("F", bound=Callable[..., Any])


class Authenticator(Protocol):
    """Checks a username and password; raises one of ``create_app``'s ``unavailable`` errors when it cannot ask."""

    def authenticate(self, username: str, password: str) -> bool: ...


class AuthenticationUnavailable(Exception):
    """The directory could not be asked; answered with 503."""


class LoginsBusy(Exception):
    """Half the request threads already wait on the directory; answered at once with 429, as a limit it is."""


class TooManyLogins(Exception):
    """Too many failed logins from this client (or for this name from this client); answered with 429."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def create_app(
    config: Config,
    snapshots: SnapshotHolder,
    authenticator: Authenticator,
    unavailable: tuple[type[Exception], ...] = (),
    refresh: RefreshState | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The Flask application; ``unavailable`` lists the authenticator's "cannot ask now" exceptions."""
    refresh = refresh if refresh is not None else RefreshState()
    metrics = metrics if metrics is not None else Metrics(snapshots, refresh)
    general, jwt_config = config.general, config.jwt
    throttle = LoginThrottle(general.login_max_failures, general.login_failure_window.total_seconds(), clock)
    app = Flask(__name__)
    # Werkzeug would answer "//" in a path with an HTML redirect; to us it is an empty name: a JSON 404.
    app.url_map.merge_slashes = False
    app.config.update(
        DEBUG=general.debug,
        # Without this, Flask-RESTful turns JWT errors into 500s outside debug mode (flask-jwt-extended#86).
        PROPAGATE_EXCEPTIONS=True,
        MAX_CONTENT_LENGTH=MAX_BODY,
        JWT_ACCESS_TOKEN_EXPIRES=jwt_config.auth_token_expires,
        # One algorithm, pinned both ways: a token naming another (or "none") is refused.
        JWT_ALGORITHM=jwt_config.algorithm,
        JWT_DECODE_ALGORITHMS=[jwt_config.algorithm],
        JWT_ENCODE_ISSUER=jwt_config.issuer,
        JWT_DECODE_ISSUER=jwt_config.issuer,
        JWT_ENCODE_AUDIENCE=jwt_config.audience,
        JWT_DECODE_AUDIENCE=jwt_config.audience,
        JWT_TOKEN_LOCATION=["headers", "cookies"],
    )
    if jwt_config.algorithm == "HS256":
        app.config["JWT_SECRET_KEY"] = jwt_config.secret_key
    else:
        app.config["JWT_PRIVATE_KEY"] = _read(jwt_config.private_key)
        app.config["JWT_PUBLIC_KEY"] = _read(jwt_config.public_key)
    CORS(app, origins=list(general.cors_origins))
    _init_jwt(app)
    # A directory that accepts connections and never answers holds a thread per login until the LDAP
    # timeout; logins may hold at most half the threads, so data requests always have some.
    logins = threading.BoundedSemaphore(max(1, general.threads // 2))
    basic_auth = _init_basic_auth(authenticator, unavailable, throttle, logins)
    _init_error_handlers(app)

    api = Api(app)
    api.add_resource(
        AuthToken, "/auth_token", resource_class_kwargs={"basic_auth": basic_auth, "app": app}
    )
    tokens = VerifiedTokens()
    data = {"snapshots": snapshots, "cache": RenderCache(), "tokens": tokens}
    api.add_resource(Repositories, "/repositories", resource_class_kwargs=data)
    api.add_resource(RepositoryPath, "/repositories/<path:path>", resource_class_kwargs=data)
    observe = _request_observer(metrics)
    _init_operations(app, config, snapshots, refresh, metrics, clock, observe)
    app.wsgi_app = ResponseReplay(app.wsgi_app, snapshots.current, tokens, observe)  # type: ignore[method-assign]
    if general.trusted_proxies:
        # Behind GitLab's nginx every client would share the proxy's address (and its login limit).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=general.trusted_proxies, x_proto=general.trusted_proxies)
    return app


def _request_observer(metrics: Metrics) -> Callable[[str, str, str, int, float, str], None]:
    """Counts a request and writes its access log line (for Flask's answers and replayed ones alike)."""

    def observe(method: str, path: str, endpoint: str, status: int, seconds: float, user: str) -> None:
        metrics.observe_request(endpoint, status)
        # The path only: query strings and headers may carry what must not be logged.
        access_log.info(
            "%s %s %d %.1fms user=%s", method, path, status, seconds * 1000, user,
            extra={"fields": {"method": method, "path": path, "status": status,
                              "duration_ms": round(seconds * 1000, 2), "user": user, "endpoint": endpoint}},
        )

    return observe


def _init_operations(app: Flask, config: Config, snapshots: SnapshotHolder, refresh: RefreshState,
                     metrics: Metrics, clock: Callable[[], float],
                     observe: Callable[[str, str, str, int, float, str], None]) -> None:
    """/health, /metrics, and one log line and one counted request per request."""
    max_age = config.general.effective_max_data_age.total_seconds()

    @app.get("/health", endpoint="health")
    def _health() -> Response:
        status, document = health(snapshots.current(), refresh.current(), clock(), max_age)
        response = jsonify(document)
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/metrics", endpoint="metrics")
    def _metrics() -> Response:
        if config.general.metrics_require_token:
            verify_jwt_in_request(locations=["headers"])
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        if request.is_secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    @app.after_request
    def _log_request(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        observe(request.method, request.path, request.endpoint or "unmatched", response.status_code, seconds,
                g.get("user") or "-")
        return response


def _json_error(status: int, message: str, key: str = "message") -> Response:
    response = jsonify({key: message})
    response.status_code = status
    return response


def _init_jwt(app: Flask) -> None:
    jwt = JWTManager(app)

    # Every token problem is a 401 with Flask-JWT-Extended's {"msg": ...} body (it answers 422 for
    # malformed or wrongly signed tokens by default, which tells a client nothing useful).
    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return _json_error(401, reason, "msg")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _json_error(401, reason, "msg")

    @jwt.expired_token_loader
    def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _json_error(401, "Token has expired", "msg")


def _read(path: str | None) -> str:
    assert path is not None  # the config requires the key files with RS256 and ES256
    with open(path, encoding="utf-8") as file:
        return file.read()


def _init_basic_auth(authenticator: Authenticator, unavailable: tuple[type[Exception], ...],
                     throttle: LoginThrottle, logins: threading.BoundedSemaphore) -> HTTPBasicAuth:
    basic_auth = HTTPBasicAuth()

    @basic_auth.verify_password  # type: ignore[untyped-decorator]
    def _verify(username: str, password: str) -> str | None:
        if not username and not password:
            return None  # no credentials yet (a browser asks for them after this 401): not a failure
        client = request.remote_addr or "unknown"
        wait = throttle.retry_after(client, username)
        if wait is not None:
            log.warning("login of %r from %s refused: too many failed logins, retry in %ds", username, client, wait)
            raise TooManyLogins(wait)
        if not logins.acquire(blocking=False):
            log.warning("login of %r from %s refused: every login thread waits on the directory", username, client)
            raise LoginsBusy()
        try:
            accepted = authenticator.authenticate(username, password)
        except unavailable as error:
            raise AuthenticationUnavailable(str(error)) from error
        finally:
            logins.release()
        if not accepted:
            throttle.failed(client, username)
            log.info("login of %r from %s refused", username, client)
        return username if accepted else None

    @basic_auth.error_handler  # type: ignore[untyped-decorator]
    def _refused(status: int) -> Response:
        return _json_error(status, "Invalid credentials" if status == 401 else "Access denied")

    return basic_auth


def _init_error_handlers(app: Flask) -> None:
    @app.errorhandler(AuthenticationUnavailable)
    def _directory_down(error: AuthenticationUnavailable) -> Response:
        log.warning("login impossible, the directory cannot be asked: %s", error)
        response = _json_error(503, "The login directory cannot be reached; try again later")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(LoginsBusy)
    def _logins_busy(_error: LoginsBusy) -> Response:
        response = _json_error(429, "Too many logins are waiting for the login directory; try again shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(TooManyLogins)
    def _too_many(error: TooManyLogins) -> Response:
        response = _json_error(429, f"Too many failed logins; try again in {error.retry_after} seconds")
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(hal.QueryError)
    def _bad_query(error: hal.QueryError) -> Response:
        return _json_error(400, str(error))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _json_error(error.code or 500, error.description or "")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _json_error(500, "Internal server error")


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match([HAL_JSON, "text/html"]) == "text/html"


def _token_required(method: F) -> F:
    """Accept the bearer header; a browser without one may use the cookie ``/auth_token`` set for it."""

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        subject = self.tokens.subject(token) if token else None
        if subject is None:
            use_cookie = not header and _wants_html()
            verify_jwt_in_request(locations=["cookies"] if use_cookie else ["headers"])
            subject = get_jwt_identity()
            if token:
                self.tokens.add(token, subject, get_jwt()["exp"])
        g.user = subject
        return method(self, *args, **kwargs)

    return cast(F, wrapper)


def _render(document: dict[str, Any], title: str, html: bool) -> Rendered:
    if html:
        body = render_page(document, title).encode()
        return Rendered(body, "text/html", make_etag(body))
    # As flask-restful's output_json: json.dumps with default separators and a newline.
    body = (json.dumps(document) + "\n").encode()
    return Rendered(body, HAL_JSON, make_etag(body))


def _respond(cache: RenderCache, snapshot: Snapshot | None, target: Hashable, options: hal.Options,
             build: Callable[[], dict[str, Any]], title: str) -> Response:
    """A data response: rendered once per snapshot, validated by ETag and Last-Modified, compressed.

    It depends only on the snapshot and the request's URL and ``Vary`` headers, so it is marked for
    ``ResponseReplay`` to send again to the same request.
    """
    html = _wants_html()
    if snapshot is None:  # nothing collected yet: nothing worth caching or validating
        rendered = _render(build(), title, html)
        return Response(rendered.body, mimetype=rendered.mimetype)
    rendered = cache.get(snapshot, (target, options, html), lambda: _render(build(), title, html))
    encoding = _encoding(rendered)
    headers = {
        "ETag": f'"{rendered.etag}{"-" + encoding if encoding else ""}"',
        "Last-Modified": http_date(snapshot.timestamp),
        # The data is per-user authorised: browsers may keep it but must revalidate; proxies must not share it.
        "Cache-Control": "private, no-cache",
        "Vary": "Accept, Accept-Encoding, Authorization",
    }
    if html:
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    request.environ[ENVIRON_KEY] = Replayable(snapshot, request.endpoint or "", rendered, encoding)
    if _not_modified(rendered.etag, snapshot.timestamp):
        return Response(status=304, headers=headers)
    if encoding is None:
        return Response(rendered.body, mimetype=rendered.mimetype, headers=headers)
    response = Response(rendered.encoded(encoding), mimetype=rendered.mimetype, headers=headers)
    response.headers["Content-Encoding"] = encoding
    return response


def _encoding(rendered: Rendered) -> str | None:
    """brotli or gzip, as the client prefers (brotli on a tie), for bodies worth compressing."""
    if len(rendered.body) < COMPRESS_MIN_BYTES:
        return None
    accepted = request.accept_encodings
    best = max(("br", "gzip"), key=lambda encoding: accepted[encoding])
    return best if accepted[best] > 0 else None


def _not_modified(etag: str, timestamp: float) -> bool:
    """If-None-Match against any encoding of these bytes; otherwise If-Modified-Since."""
    if request.if_none_match:
        return any(request.if_none_match.contains_weak(etag + suffix) for suffix in ("", "-gzip", "-br"))
    since = request.if_modified_since
    return since is not None and int(timestamp) <= since.timestamp()


def _options(prefix_allowed: bool = False) -> hal.Options:
    return hal.options_from(request.args, base=request.script_root, links_default=_wants_html(),
                            prefix_allowed=prefix_allowed)


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
        if not _wants_html():
            response = jsonify({"auth_token": token})
            response.headers["Cache-Control"] = "no-store"
            return response
        # A browser cannot send a bearer header when following links: give it the token as a cookie.
        response = Response(
            render_page({"auth_token": "(set as a cookie for this browser)", "_links": {
                "repositories": {"href": hal.repositories_path(request.script_root)}}}, "Logged in"),
            mimetype="text/html",
        )
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.set_cookie(
            self._app.config["JWT_ACCESS_COOKIE_NAME"],
            token,
            max_age=int(self._app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
            path=(request.script_root or "") + "/",
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )
        return response


class _DataResource(Resource):  # type: ignore[misc]
    """A resource served from the snapshot, through the render cache, for holders of a token."""

    def __init__(self, snapshots: SnapshotHolder, cache: RenderCache, tokens: VerifiedTokens) -> None:
        self._snapshots = snapshots
        self._cache = cache
        self.tokens = tokens


class Repositories(_DataResource):
    """``/repositories``: the timestamp of the data, the repositories as links and embedded items."""

    @_token_required
    def get(self) -> Response:
        snapshot, options = self._snapshots.current(), _options(prefix_allowed=True)
        return _respond(self._cache, snapshot, "repositories", options,
                        lambda: hal.repositories_document(snapshot, options), "Repositories")


class RepositoryPath(_DataResource):
    """Everything below ``/repositories/``: a repository, its tags collection, or one tag."""

    @_token_required
    def get(self, path: str) -> Response:
        snapshot = self._snapshots.current()
        if snapshot is None:
            response = _json_error(503, "No registry data has been collected yet; try again shortly")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        try:
            candidates = hal.resolve(_raw_subpath(path))
        except UnicodeDecodeError:
            candidates = []
        found = hal.find(snapshot, candidates)
        if found is None:
            shown = candidates[0].path() if candidates else "/repositories/" + quote(path, safe="/%")
            return _json_error(404, f'The resource "{shown}" does not exist')
        target, options = found[0], _options()
        title = target.repository + (f" : {target.tag}" if target.tag else " : tags" if target.collection else "")
        return _respond(self._cache, snapshot, target, options, lambda: hal.render(snapshot, found, options), title)


def _raw_subpath(path: str) -> str:
    """The request path below ``/repositories/`` as sent, so encoded slashes stay apart from separators.

    WSGI servers decode PATH_INFO (Werkzeug turns ``%2F`` into ``/``, cheroot does not); the raw
    request URI keeps what the client sent. Without one, the decoded path is the best we have.
    """
    raw = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI") or ""
    raw_path = urlsplit(raw).path if "://" in raw.split("?", 1)[0] else raw.split("?", 1)[0]
    # Servers put the mount prefix in the request URI; Werkzeug's test client leaves it out.
    for prefix in (quote(request.script_root) + "/repositories/", "/repositories/"):
        if raw_path.startswith(prefix):
            return raw_path[len(prefix):]
    return quote(path, safe="/%")

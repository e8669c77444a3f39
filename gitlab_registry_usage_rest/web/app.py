"""The web layer: ``create_app`` wires the resources to an injected snapshot holder and authenticator."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask_cors import CORS
from flask_httpauth import HTTPBasicAuth
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_identity, verify_jwt_in_request
from flask_restful_hal import Api
from werkzeug.exceptions import HTTPException

from ..config import Config
from ..history import History
from ..state import RefreshState, SnapshotHolder
from . import hal, pages
from .browser import Overviews, init_browser
from .client_address import ClientAddress
from .health import health
from .history_api import init_history
from .logins import (
    AuthenticationUnavailable,
    Authenticator,
    LoginCheck,
    LoginImpossible,
)
from .metrics import Metrics
from .replay import ResponseReplay
from .resources import AuthToken, Cleanup, GroupOverviews, GroupPath, Groups, Repositories, RepositoryPath
from .responses import RenderCache, json_error
from .simulations import Simulations
from .throttle import LoginThrottle
from .tokens import VerifiedTokens

log = logging.getLogger(__name__)
access_log = logging.getLogger("gitlab_registry_usage_rest.access")

# The API takes no request bodies; anything larger than this is refused before it is read.
MAX_BODY = 64 * 1024


def create_app(
    config: Config,
    snapshots: SnapshotHolder,
    authenticator: Authenticator,
    unavailable: tuple[type[Exception], ...] = (),
    refresh: RefreshState | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
    history: History | None = None,
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
    check = LoginCheck(authenticator, unavailable, throttle, logins)
    basic_auth = _init_basic_auth(check)
    _init_error_handlers(app)

    api = Api(app)
    api.add_resource(
        AuthToken, "/auth_token", resource_class_kwargs={"basic_auth": basic_auth, "app": app}
    )
    tokens = VerifiedTokens()
    data = {"snapshots": snapshots, "cache": RenderCache(), "tokens": tokens, "clock": clock}
    api.add_resource(Repositories, "/repositories", resource_class_kwargs=data)
    simulating = {**data, "simulations": Simulations(snapshots.current)}
    api.add_resource(RepositoryPath, "/repositories/<path:path>", resource_class_kwargs=simulating)
    api.add_resource(Groups, "/groups", resource_class_kwargs={**data, "overviews": Overviews(pages.GroupsOverview)})
    api.add_resource(GroupPath, "/groups/<path:path>",
                     resource_class_kwargs={**simulating, "overviews": GroupOverviews(snapshots.current)})
    api.add_resource(Cleanup, "/cleanup", resource_class_kwargs=simulating)
    observe = _request_observer(metrics)
    _init_operations(app, config, snapshots, refresh, metrics, tokens, clock, observe)
    init_history(app, snapshots, history, tokens, clock, general.storage_capacity)
    init_browser(app, snapshots, refresh, check, clock)
    app.wsgi_app = ResponseReplay(app.wsgi_app, snapshots.current, tokens, observe)  # type: ignore[method-assign]
    if general.trusted_proxies:
        # Behind GitLab's nginx every client would share the proxy's address (and its login limit); the header
        # is believed only on the proxies' own connections, or a direct client could choose its address.
        app.wsgi_app = ClientAddress(app.wsgi_app, general.trusted_proxies)  # type: ignore[method-assign]
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
                     metrics: Metrics, tokens: VerifiedTokens, clock: Callable[[], float],
                     observe: Callable[[str, str, str, int, float, str], None]) -> None:
    """/health, /metrics, and one log line and one counted request per request."""
    general = config.general
    max_age = general.effective_max_data_age.total_seconds()
    metrics_token = None if general.metrics_token is None else general.metrics_token.encode()

    def per_repository_allowed() -> bool:
        """Whether this scrape may see the per-repository series, which name every repository.

        A bearer credential must be valid: the static ``metrics_token`` or a token from /auth_token;
        any other is a 401, never the public body in silence. No bearer credential (nothing, or the
        Basic header a browser sends unasked after a login) gets the public body, unless
        ``metrics_require_token`` closes the endpoint.
        """
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            if general.metrics_require_token:
                verify_jwt_in_request(locations=["headers"])  # raises: the JWT loaders answer 401
            return False
        credential = credential.strip()
        if metrics_token is not None and hmac.compare_digest(credential.encode(), metrics_token):
            g.user = "(metrics_token)"
            return True
        subject = tokens.subject(credential)
        if subject is None:
            verify_jwt_in_request(locations=["headers"])  # raises on anything but a valid token: 401
            subject = get_jwt_identity()
            tokens.add(credential, subject, get_jwt()["exp"])
        g.user = subject
        return True

    @app.get("/health", endpoint="health")
    def _health() -> Response:
        status, document = health(snapshots.current(), refresh.current(), clock(), max_age)
        response = jsonify(document)
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/metrics", endpoint="metrics")
    def _metrics() -> Response:
        body, content_type = metrics.render(per_repository=per_repository_allowed())
        response = Response(body, content_type=content_type)
        # An authorized scrape names every repository: no cache may keep it or hand it to another client.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Authorization"
        return response

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        # Pages with forms say "same-origin" instead: with "no-referrer" a browser's form POST carries
        # "Origin: null", and the login's CSRF check could not tell our own form from another site's.
        headers.setdefault("Referrer-Policy", "no-referrer")
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


def _init_jwt(app: Flask) -> None:
    jwt = JWTManager(app)

    # Every token problem is a 401 with Flask-JWT-Extended's {"msg": ...} body (it answers 422 for
    # malformed or wrongly signed tokens by default, which tells a client nothing useful).
    @jwt.unauthorized_loader
    def _missing(reason: str) -> Response:
        return json_error(401, reason, "msg")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return json_error(401, reason, "msg")

    @jwt.expired_token_loader
    def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return json_error(401, "Token has expired", "msg")


def _read(path: str | None) -> str:
    assert path is not None  # the config requires the key files with RS256 and ES256
    with open(path, encoding="utf-8") as file:
        return file.read()


def _init_basic_auth(check: LoginCheck) -> HTTPBasicAuth:
    basic_auth = HTTPBasicAuth()

    @basic_auth.verify_password  # type: ignore[untyped-decorator]
    def _verify(username: str, password: str) -> str | None:
        """The directory's name for the user (the token's subject), or None."""
        if not username and not password:
            return None  # no credentials yet (a browser asks for them after this 401): not a failure
        return check(username, password)

    @basic_auth.error_handler  # type: ignore[untyped-decorator]
    def _refused(status: int) -> Response:
        return json_error(status, "Invalid credentials" if status == 401 else "Access denied")

    return basic_auth


def _init_error_handlers(app: Flask) -> None:
    @app.errorhandler(LoginImpossible)
    def _login_impossible(error: LoginImpossible) -> Response:
        if isinstance(error, AuthenticationUnavailable):
            log.warning("login impossible, the directory cannot be asked: %s", error)
        response = json_error(error.status, error.message)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(hal.QueryError)
    def _bad_query(error: hal.QueryError) -> Response:
        return json_error(400, str(error))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return json_error(error.code or 500, error.description or "")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_error(500, "Internal server error")


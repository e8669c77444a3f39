"""GitLab's registry with its metadata database, as a crawler sees it: ``/gitlab/v1/`` in front of a real registry.

:class:`GitLabV1Registry` is a :class:`~tests.support.proxy.FaultyProxy` in front of the Distribution registry that
answers GitLab's own registry API itself, following ``docs/spec/gitlab/api.md`` of gitlab-org/container-registry:

- ``GET /gitlab/v1/`` answers 200 with a valid token, 401 with a ``WWW-Authenticate`` challenge without one, and 404
  when ``metadata_database`` is off (as every ``/gitlab/v1/`` path then does);
- ``GET /gitlab/v1/repositories/<path>/tags/list/?n=&last=`` lists the tags sorted by name, each with ``name``,
  ``digest``, ``config_digest`` (if the image has a config), ``media_type``, ``size_bytes``, ``created_at``,
  ``updated_at`` (once the tag moved) and ``published_at``; ``n`` is 1 to 1000 (default 100, else 400),
  ``last`` a tag name (else 400); a ``Link: <...>; rel="next"`` names the next page, and none the last; an unknown
  repository is 404 ``NAME_UNKNOWN``; listing needs a token with ``pull`` on the repository (else 401);
- every path ends with ``/``, and one without is answered ``301`` to the one with.

The answers come from the registry's real content: its tag list and, per tag on the page, its manifest, both asked
for with the client's own token, which the stand-in first verifies with the token signer's public key. The dates are
the stand-in's: ``created_at`` when it first saw the tag, ``updated_at`` when it first saw it at another digest
(``set_times`` sets them). ``/v2/`` tag lists are sorted by name too, as GitLab's registry serves them from its
database (Distribution answers in storage order); every other ``/v2/`` request is forwarded unchanged, and the
proxy's fault rules apply to both APIs. ``counts()`` tells requests apart by kind, for tests that count them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt
import requests

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import local_session
from tests.support.proxy import Drop, FaultyProxy, Respond, _ProxyHandler, _ProxyServer
from tests.support.pusher import ACCEPT_ANY_MANIFEST

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# The distribution spec's grammar, which GitLab's API applies to paths and tag names alike.
_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_TAGS_PATH = re.compile(r"/gitlab/v1/repositories/(.+)/tags/list/")
_V2_TAGS_PATH = re.compile(r"/v2/(.+)/tags/list")
_DIGEST_REFERENCE = re.compile(r"/v2/.+/manifests/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-f0-9]+")
# Query parameters of the spec that this stand-in does not implement: refused rather than answered wrongly.
_UNSUPPORTED = ("before", "sort", "name", "referrers", "referrer_type")

Answer = tuple[int, list[tuple[str, str]], bytes]


@dataclass(slots=True)
class _TagTimes:
    digest: str | None  # None: set by a test before the tag was seen; taken as the digest seen next
    created_at: float
    updated_at: float | None = None

    @property
    def published_at(self) -> float:
        return self.updated_at if self.updated_at is not None else self.created_at


def iso_millis(timestamp: float) -> str:
    """A UNIX time as GitLab's API writes it: ISO 8601 in UTC with milliseconds."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_kind(method: str, path: str) -> str:
    """What a request asks for, as ``counts()`` groups them."""
    path = urlsplit(path).path
    if path.startswith("/gitlab/v1"):
        return "probe" if path.rstrip("/") == "/gitlab/v1" else "v1-tags" if "/tags/list" in path else "v1-other"
    if path == "/v2/_catalog":
        return "catalog"
    if _V2_TAGS_PATH.fullmatch(path):
        return "v2-tags"
    if "/manifests/" in path:
        return "manifest-by-digest" if _DIGEST_REFERENCE.fullmatch(path) else "manifest-by-tag"
    if "/blobs/" in path:
        return "blob-head" if method == "HEAD" else "blob"
    return "other"


class GitLabV1Registry(FaultyProxy):
    """The registry at ``registry.url`` behind GitLab's ``/gitlab/v1/`` API, trusting the tokens ``tokens`` issues.

    ``page_size_cap`` makes tag list pages shorter than the ``n`` asked for (as the registry may), so that paging
    shows with a few tags; ``metadata_database = False`` makes every ``/gitlab/v1/`` path answer 404.
    """

    def __init__(self, registry: DistributionRegistry, tokens: GitLabTokenEndpoint, *,
                 page_size_cap: int | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(registry.url)
        self.metadata_database = True
        self.page_size_cap = page_size_cap
        self._registry_url = registry.url
        self._realm = tokens.realm
        self._public_key = tokens.signer.public_key()
        self._issuer, self._audience = tokens.signer.issuer, tokens.signer.audience
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._times: dict[tuple[str, str], _TagTimes] = {}
        self._sessions: list[requests.Session] = []
        self._local = threading.local()

    # -- what tests read and set ---------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests answered so far, by ``request_kind``."""
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def set_times(self, repository: str, tag: str, created_at: float, updated_at: float | None = None) -> None:
        """Date a tag at the digest it has now (or is first seen at); its ``published_at`` is the later time."""
        with self._lock:
            known = self._times.get((repository, tag))
            self._times[(repository, tag)] = _TagTimes(known.digest if known else None, created_at, updated_at)

    def published_at(self, repository: str, tag: str) -> float | None:
        """The ``published_at`` the stand-in serves for a tag (as a UNIX time), ``None`` for one it has not seen."""
        with self._lock:
            known = self._times.get((repository, tag))
            return None if known is None else known.published_at

    # -- serving -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """FaultyProxy.start with this stand-in's request handler."""
        if self._server is not None:
            raise RuntimeError(f"stand-in {self.url} is already running")
        self._stopping.clear()
        self._server = _ProxyServer(("127.0.0.1", self._port), partial(_GitLabV1Handler, self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"gitlab-v1-{self._port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        super().stop()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def _session(self) -> requests.Session:
        """One session per serving thread: requests' sessions are not meant to be shared between threads."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = local_session()
            with self._lock:
                self._sessions.append(session)
        return session

    def _upstream_get(self, path: str, authorization: str | None, accept: str | None = None) -> requests.Response:
        headers = {"Authorization": authorization} if authorization else {}
        if accept:
            headers["Accept"] = accept
        return self._session().get(self._registry_url + path.lstrip("/"), headers=headers, timeout=30)

    def answer_v1(self, method: str, target: str, authorization: str | None, host: str) -> Answer:
        """Status, headers and body for one request to ``/gitlab/v1/...``, as GitLab's registry answers it."""
        if not self.metadata_database:
            return _text(HTTPStatus.NOT_FOUND, "404 page not found\n")
        parts = urlsplit(target)
        if not parts.path.endswith("/"):
            location = parts.path + "/" + (f"?{parts.query}" if parts.query else "")
            return HTTPStatus.MOVED_PERMANENTLY, [("Location", location), ("Content-Length", "0")], b""
        if parts.path == "/gitlab/v1/":
            if method not in ("GET", "HEAD"):
                return _text(HTTPStatus.METHOD_NOT_ALLOWED, "405 method not allowed\n")
            if self._claims(authorization) is None:
                return self._challenge(None)
            return HTTPStatus.OK, [("Content-Length", "0")], b""
        match = _TAGS_PATH.fullmatch(parts.path)
        if match is None:
            return _text(HTTPStatus.NOT_FOUND, "404 page not found\n")
        if method not in ("GET", "HEAD"):
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "405 method not allowed\n")
        repository = unquote(match.group(1))
        if not _NAME.fullmatch(repository):
            return _error(HTTPStatus.BAD_REQUEST, "NAME_INVALID", "invalid repository name", {"name": repository})
        claims = self._claims(authorization)
        if claims is None or not _grants_pull(claims, repository):
            return self._challenge(repository)
        query = parse_qs(parts.query, keep_blank_values=True)
        refused = [name for name in _UNSUPPORTED if name in query]
        if refused:
            return _error(HTTPStatus.BAD_REQUEST, "UNSUPPORTED", f"the stand-in does not implement {refused[0]}")
        size_text = query.get("n", [str(DEFAULT_PAGE_SIZE)])[-1]
        if not re.fullmatch(r"[+-]?\d+", size_text):
            return _error(HTTPStatus.BAD_REQUEST, "INVALID_QUERY_PARAMETER_TYPE", "n is not an integer",
                          {"n": size_text})
        size = int(size_text)
        if not 1 <= size <= MAX_PAGE_SIZE:
            return _error(HTTPStatus.BAD_REQUEST, "INVALID_QUERY_PARAMETER_VALUE",
                          f"n must be between 1 and {MAX_PAGE_SIZE}", {"n": size})
        last = query.get("last", [None])[-1]
        if last is not None and not _TAG.fullmatch(last):
            return _error(HTTPStatus.BAD_REQUEST, "INVALID_QUERY_PARAMETER_VALUE", "last is not a tag name",
                          {"last": last})
        assert authorization is not None
        return self._tags_page(repository, size, last, authorization, host)

    def _tags_page(self, repository: str, size: int, last: str | None, authorization: str, host: str) -> Answer:
        listed = self._upstream_get(f"v2/{repository}/tags/list", authorization)
        if listed.status_code == HTTPStatus.NOT_FOUND:
            return _error(HTTPStatus.NOT_FOUND, "NAME_UNKNOWN", "repository name not known to registry",
                          {"name": repository})
        if listed.status_code != HTTPStatus.OK:
            return _text(HTTPStatus.BAD_GATEWAY, f"the registry answered {listed.status_code}\n")
        names = sorted(set(listed.json().get("tags") or []))
        remaining = [name for name in names if last is None or name > last]
        page_size = min(size, self.page_size_cap or size)
        page, more = remaining[:page_size], len(remaining) > page_size
        entries = [entry for entry in (self._tag_entry(repository, tag, authorization) for tag in page) if entry]
        headers = [("Content-Type", "application/json")]
        if more:
            following = urlencode({"last": page[-1], "n": size})
            headers.append(("Link", f'<http://{host}/gitlab/v1/repositories/{quote(repository, safe="/")}'
                                    f'/tags/list/?{following}>; rel="next"'))
        return HTTPStatus.OK, headers, json.dumps(entries).encode()

    def _tag_entry(self, repository: str, tag: str, authorization: str) -> dict[str, Any] | None:
        response = self._upstream_get(f"v2/{repository}/manifests/{tag}", authorization, ACCEPT_ANY_MANIFEST)
        if response.status_code != HTTPStatus.OK:
            return None  # deleted since the tag list was read
        digest = response.headers["Docker-Content-Digest"]
        manifest = response.json()
        config = manifest.get("config") or {}
        parts = [config] if config else []
        parts += manifest.get("layers") or manifest.get("manifests") or []
        with self._lock:
            known = self._times.get((repository, tag))
            if known is None:
                known = self._times[(repository, tag)] = _TagTimes(digest, self._clock())
            elif known.digest is None:
                known.digest = digest
            elif known.digest != digest:
                known.digest, known.updated_at = digest, self._clock()
            times = _TagTimes(known.digest, known.created_at, known.updated_at)
        entry: dict[str, Any] = {"name": tag, "digest": digest}
        if config.get("digest"):
            entry["config_digest"] = config["digest"]
        entry.update(media_type=manifest.get("mediaType") or response.headers.get("Content-Type"),
                     size_bytes=sum(int(part.get("size", 0)) for part in parts),
                     created_at=iso_millis(times.created_at))
        if times.updated_at is not None:
            entry["updated_at"] = iso_millis(times.updated_at)
        entry["published_at"] = iso_millis(times.published_at)
        return entry

    def answer_v2_tags(self, target: str, authorization: str | None) -> Answer:
        """A ``/v2/`` tag list from the registry, sorted by name as GitLab's registry lists it from its database."""
        response = self._upstream_get(target, authorization)
        headers = [(name, value) for name, value in response.headers.items()
                   if name.lower() in ("content-type", "www-authenticate", "docker-distribution-api-version")]
        if response.status_code != HTTPStatus.OK:
            return response.status_code, headers, response.content
        document = response.json()
        document["tags"] = sorted(document.get("tags") or [])
        return HTTPStatus.OK, headers, json.dumps(document).encode()

    def _claims(self, authorization: str | None) -> dict[str, Any] | None:
        """The claims of a bearer token the registry would accept (signature, issuer, audience, times); or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(token, self._public_key, algorithms=["RS256"],
                                                audience=self._audience, issuer=self._issuer)
        except jwt.PyJWTError:
            return None
        return claims

    def _challenge(self, repository: str | None) -> Answer:
        challenge = f'Bearer realm="{self._realm}",service="{self._audience}"'
        if repository is not None:
            challenge += f',scope="repository:{repository}:pull"'
        status, headers, body = _error(HTTPStatus.UNAUTHORIZED, "UNAUTHORIZED", "authentication required")
        return status, [*headers, ("WWW-Authenticate", challenge)], body


def _grants_pull(claims: dict[str, Any], repository: str) -> bool:
    access = claims.get("access")
    return isinstance(access, list) and any(
        isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == repository
        and isinstance(entry.get("actions"), list) and "pull" in entry["actions"]
        for entry in access)


def _text(status: int, text: str) -> Answer:
    return status, [("Content-Type", "text/plain; charset=utf-8")], text.encode()


def _error(status: int, code: str, message: str, detail: object = None) -> Answer:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return status, [("Content-Type", "application/json")], json.dumps({"errors": [error]}).encode()


class _GitLabV1Handler(_ProxyHandler):
    """Answers ``/gitlab/v1/`` and ``/v2/`` tag lists itself; forwards the rest as the proxy does."""

    def _serve(self) -> None:
        stand_in = cast(GitLabV1Registry, self._proxy)
        path = urlsplit(self.path).path
        stand_in._count(request_kind(self.command, self.path))
        own_v1 = path == "/gitlab/v1" or path.startswith("/gitlab/v1/")
        own_v2 = self.command == "GET" and _V2_TAGS_PATH.fullmatch(path) is not None
        if not (own_v1 or own_v2):
            super()._serve()
            return
        self._read_body()
        action = stand_in._take_action(f"{self.command} {self.path}")
        if isinstance(action, Drop):
            stand_in._record(self.command, self.path, "drop")
            self.close_connection = True
            return
        if isinstance(action, Respond):  # a test's canned answer: a malformed page, say
            status, headers, body = action.status, list(action.headers), action.body
        elif action is not None:
            raise NotImplementedError(f"the stand-in answers {self.path} itself: only respond() and drop() apply")
        elif own_v1:
            status, headers, body = stand_in.answer_v1(self.command, self.path, self.headers.get("Authorization"),
                                                       self.headers.get("Host") or stand_in.url.split("/")[2])
        else:
            status, headers, body = stand_in.answer_v2_tags(self.path, self.headers.get("Authorization"))
        stand_in._record(self.command, self.path, status)
        self._answer(status, headers, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

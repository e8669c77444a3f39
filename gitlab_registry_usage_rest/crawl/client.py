"""HTTP adapter for a GitLab container registry: GitLab's token endpoint, the registry API v2 and, where the
registry has its metadata database, GitLab's own registry API (``/gitlab/v1/``) for listing tags with digests.

Keep-alive connections per origin (``transport.Transport``, the crawl's lean HTTP/1.1 client); timeouts on every
request; retries with backoff on connection errors, 429 and 5xx (honouring a capped ``Retry-After``); tokens cached
per scope until shortly before they expire and renewed on 401. Callers get lists, manifests, sizes and (small,
verified, read no further than their bound) config blobs, or a ``RegistryError``; never a ``Response``.

What the registry answers is not trusted with where the next request goes, since every request
carries the registry token: ``Link: rel="next"`` is followed only on the registry's own origin, and
repository names, tags and digests go into a URL only when they match the registry API's grammar
(no ``..`` segment, ``?``, ``#`` or other character that would point the request elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urljoin, urlsplit

from .manifests import ACCEPT, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, ConfigError, is_digest, parse_created
from .transport import BodyTooLarge, Response, Transport, TransportError

log = logging.getLogger(__name__)

# GitLab's registry refuses larger pages; the Distribution registry refuses any n above its own limit,
# in which case we let it choose the page size.
PAGE_SIZE = 1000
DEFAULT_TOKEN_LIFETIME = 60.0
# Image configs are a few KiB (a large one, with a long history, some 100 KiB); anything bigger is not read.
MAX_CONFIG_SIZE = 1024 * 1024
# Digest algorithms whose blobs can be verified; a blob that cannot be verified is not read.
_VERIFIABLE = frozenset({"sha256", "sha384", "sha512"})

# The distribution spec's grammar ("Pulling manifests"): a repository name is path components of lowercase
# letters and digits joined by separators; a tag starts with a word character and has at most 128.
_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# RFC 6838's type "/" subtype, each at most 127 characters: what a manifest's media type can be.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# GitLab's tag list pages hold at most PAGE_SIZE tags; this many pages (10 million tags) end a listing that a
# registry keeps linking onwards.
MAX_TAG_PAGES = 10_000
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A token goes into a header: visible ASCII only (a JWT's base64url and dots), so that no answer of GitLab's can
# add a header line to our requests.
_TOKEN = re.compile(r"[!-~]{1,16384}")


class RegistryError(Exception):
    """A request to the registry or the token endpoint failed; the message says which and why."""


def make_session(pool_size: int, retries: int = 3, backoff: float = 0.5) -> Transport:
    """Keep-alive connections, up to ``pool_size`` kept per origin, with retries (see ``transport``)."""
    return Transport(pool_size, retries, backoff)


class RequestStats:
    """Requests made, by outcome (HTTP status or ``error``): for logs now, metrics later."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class TokenProvider:
    """Registry tokens from GitLab's ``/jwt/auth``, cached per scope until shortly before they expire.

    GitLab's tokens live 5 minutes by default, so a long crawl renews them on its way.
    """

    def __init__(
        self,
        session: Transport,
        gitlab_base_url: str,
        username: str,
        access_token: str,
        timeout: float,
        stats: RequestStats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = urljoin(gitlab_base_url, "jwt/auth")
        basic = base64.b64encode(f"{username}:{access_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {basic}"}
        self._timeout = timeout
        self._stats = stats
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._fetching: dict[str, threading.Event] = {}

    def token(self, scope: str) -> str:
        """A valid token for ``scope``: cached, being fetched by another thread, or fetched now."""
        cached = self._tokens.get(scope)  # without the lock: one dict lookup is atomic, and this is every request
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        while True:
            with self._lock:
                cached = self._tokens.get(scope)
                if cached is not None and cached[1] > self._clock():
                    return cached[0]
                fetching = self._fetching.get(scope)
                if fetching is None:
                    self._fetching[scope] = fetching = threading.Event()
                    break
            # Another thread is fetching a token that covers this scope: use it rather than ask again.
            fetching.wait(self._timeout)
        try:
            self._fetch([scope])
        finally:
            self._release([scope], fetching)
        with self._lock:
            return self._tokens[scope][0]

    def prefetch(self, scopes: list[str]) -> None:
        """One token for many scopes (GitLab accepts repeated ``scope`` parameters): fewer round trips."""
        with self._lock:
            now = self._clock()
            wanted = [scope for scope in scopes if scope not in self._fetching
                      and not (scope in self._tokens and self._tokens[scope][1] > now)]
            fetching = threading.Event()
            for scope in wanted:
                self._fetching[scope] = fetching
        if not wanted:
            return
        try:
            self._fetch(wanted)
        except RegistryError as error:
            log.debug("token prefetch failed, each scope will be asked for alone: %s", error)
        finally:
            self._release(wanted, fetching)

    def invalidate(self, scope: str, token: str) -> None:
        with self._lock:
            if self._tokens.get(scope, ("",))[0] == token:
                del self._tokens[scope]

    def _release(self, scopes: list[str], fetching: threading.Event) -> None:
        with self._lock:
            for scope in scopes:
                if self._fetching.get(scope) is fetching:
                    del self._fetching[scope]
        fetching.set()

    def _fetch(self, scopes: list[str]) -> None:
        shown = scopes[0] if len(scopes) == 1 else f"{len(scopes)} scopes"
        params = [("client_id", "docker"), ("offline_token", "true"), ("service", "container_registry")]
        params += [("scope", scope) for scope in scopes]
        now = self._clock()
        try:
            response = self._session.request("GET", f"{self._url}?{urlencode(params)}", self._headers, self._timeout)
        except TransportError as error:
            self._stats.count("error")
            raise RegistryError(f"token for {shown}: {_describe(error)}") from None
        self._stats.count(str(response.status))
        if response.status != 200:
            raise RegistryError(f"token for {shown}: GitLab answered {response.status}")
        try:
            document = json.loads(response.body)
            token = document["token"]
            lifetime = max(float(document.get("expires_in") or DEFAULT_TOKEN_LIFETIME), 1.0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RegistryError(f"token for {shown}: GitLab's answer is not a token") from None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise RegistryError(f"token for {shown}: GitLab's answer is not a token")
        # Renew a little before the end: a token must not expire between our check and the registry's.
        valid_until = now + lifetime - min(30.0, lifetime / 5)
        with self._lock:
            for scope in scopes:
                self._tokens[scope] = (token, valid_until)


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest as served: its digest (verified), content type and bytes."""

    digest: str
    content_type: str | None
    body: bytes


NOT_MODIFIED = None


@dataclass(frozen=True, slots=True)
class TagDetail:
    """One tag as GitLab's metadata database lists it: enough to skip the manifest of a digest already seen.

    ``published`` is when the tag got its present digest (``published_at``; from registries older than that
    field, the later of ``created_at`` and ``updated_at``), as a UNIX time; ``None`` if the registry gives none.
    """

    name: str
    digest: str
    config_digest: str | None
    media_type: str
    published: float | None


class RegistryClient:
    """The registry API v2 calls a crawl needs."""

    def __init__(self, registry_base_url: str, tokens: TokenProvider, session: Transport,
                 timeout: float, stats: RequestStats) -> None:
        self._base = registry_base_url if registry_base_url.endswith("/") else registry_base_url + "/"
        self._origin = _origin(self._base)
        # A URL that starts so is on the registry's origin without parsing it (what nearly every request is).
        parts = urlsplit(self._base)
        self._origin_prefix = f"{parts.scheme}://{parts.netloc}/"
        self._tokens = tokens
        self._session = session
        self._timeout = timeout
        self.stats = stats
        self._lock = threading.Lock()
        self._config_requests = 0

    @property
    def config_requests(self) -> int:
        """Config blob GETs made so far (each also counted by its outcome in ``stats``)."""
        with self._lock:
            return self._config_requests

    def close(self) -> None:
        self._session.close()

    def prefetch_tokens(self, repositories: list[str]) -> None:
        """Fetch the tokens of these repositories in one request, ahead of their first use."""
        self._tokens.prefetch([_scope(repository) for repository in repositories])

    def catalog(self) -> Iterator[list[str]]:
        """The repository names, page by page, following ``Link: <...>; rel="next"`` to the end."""
        yield from self._pages("registry:catalog:*", "v2/_catalog", "repositories")

    def gitlab_v1_available(self) -> tuple[bool, str]:
        """Whether GitLab's registry API answers here (``GET /gitlab/v1/`` is 200), and why or why not.

        A registry with its metadata database off answers 404, a plain Distribution registry 404 or something
        else; a 401 that a fresh token does not cure means the API is not ours to use. None of these is an error:
        the crawl then lists tags through the registry API v2.
        """
        try:
            response = self._request("registry:catalog:*", "GET", "gitlab/v1/", {})
        except RegistryError as error:
            return False, f"GET /gitlab/v1/ failed: {error}"
        status = response.status
        if status == 200:
            return True, "GET /gitlab/v1/ answered 200"
        if status == 404:
            return False, "GET /gitlab/v1/ answered 404 (no metadata database, or not GitLab's registry)"
        if status == 401:
            return False, "GET /gitlab/v1/ answered 401 even with a fresh token"
        return False, f"GET /gitlab/v1/ answered {status} (not GitLab's registry API)"

    def tag_details(self, repository: str) -> list[TagDetail]:
        """All tags of a repository with their digests, from GitLab's registry API (sorted by name, as it lists
        them); none if the repository is unknown. Anything malformed in the answer raises ``RegistryError``."""
        path = f"gitlab/v1/repositories/{_path(repository)}/tags/list/"
        what = f"GitLab tag list of {repository}"
        url: str | None = f"{path}?n={PAGE_SIZE}"
        details: list[TagDetail] = []
        names: set[str] = set()
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_TAG_PAGES:
                raise RegistryError(f"{what}: more than {MAX_TAG_PAGES} pages; not read further")
            response = self._request(_scope(repository), "GET", url, {})
            if response.status == 404 and b"NAME_UNKNOWN" in response.body:
                return []  # listed in the catalog, but every tag was deleted
            self._expect_ok(response, what)
            try:
                entries = json.loads(response.body)
            except ValueError:
                raise RegistryError(f"{what}: the answer is not JSON") from None
            if not isinstance(entries, list):
                raise RegistryError(f"{what}: the answer is not a list of tags")
            if len(entries) > PAGE_SIZE:
                raise RegistryError(f"{what}: {len(entries)} tags on a page of at most {PAGE_SIZE}")
            for entry in entries:
                detail = _tag_detail(entry, what)
                if detail.name in names:
                    raise RegistryError(f"{what}: tag {detail.name!r} is listed twice")
                names.add(detail.name)
                details.append(detail)
            url = self._next_page(response, what)
            if url is not None and not entries:
                raise RegistryError(f"{what}: an empty page links to another")
        return details

    def tags(self, repository: str) -> list[str]:
        """All tags of a repository in the order the registry lists them; none if it has no tags."""
        path = f"v2/{_path(repository)}/tags/list"
        tags: list[str] = []
        try:
            for page in self._pages(_scope(repository), path, "tags"):
                tags.extend(page)
        except _NameUnknown:
            return []  # listed in the catalog, but every tag was deleted
        return tags

    def manifest(self, repository: str, reference: str, known_digest: str | None = None) -> FetchedManifest | None:
        """A manifest by tag or digest; ``None`` (not modified) if it still has ``known_digest``."""
        if not (is_digest(reference) or _TAG.fullmatch(reference)):
            raise RegistryError(f"manifest {repository}:{reference!r:.100}: not a tag or digest the registry API "
                                "allows, not requested")
        headers = {"Accept": ACCEPT}
        if known_digest:
            headers["If-None-Match"] = f'"{known_digest}"'
        url = f"v2/{_path(repository)}/manifests/{quote(reference, safe=':')}"
        response = self._request(_scope(repository), "GET", url, headers)
        if response.status == 304 and known_digest:
            return NOT_MODIFIED
        self._expect_ok(response, f"manifest {repository}:{reference}")
        body = response.body
        content_type = response.headers.get("content-type")
        digest = response.headers.get("docker-content-digest") or ""
        if content_type not in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
            # Signed schema 1 digests cover the payload without signatures; all others the bytes served.
            actual = "sha256:" + hashlib.sha256(body).hexdigest()
            expected = reference if reference.startswith("sha256:") else digest or actual
            if expected.startswith("sha256:") and expected != actual:
                raise RegistryError(f"manifest {repository}:{reference}: digest mismatch (got {actual})")
            digest = actual
        if not digest:
            raise RegistryError(f"manifest {repository}:{reference}: the registry sent no digest")
        if not is_digest(digest):
            # It is served as the tag's digest and sent back in If-None-Match.
            raise RegistryError(f"manifest {repository}:{reference}: the registry sent the invalid digest "
                                f"{digest!r:.100}")
        return FetchedManifest(digest, content_type, body)

    def blob_size(self, repository: str, digest: str) -> int:
        """A blob's size from a HEAD request, following redirects to object storage."""
        if not is_digest(digest):
            raise RegistryError(f"blob {repository}@{digest!r:.100}: not a digest, not requested")
        url = f"v2/{_path(repository)}/blobs/{digest}"
        response = self._request(_scope(repository), "HEAD", url, {}, follow_redirects=True)
        self._expect_ok(response, f"blob {repository}@{digest}")
        length = response.headers.get("content-length", "")
        # Digits only (int() would take "-5" or " 5"), and no more than any blob has.
        if not (length.isascii() and length.isdigit() and len(length) <= 18):
            raise RegistryError(f"blob {repository}@{digest}: no valid Content-Length ({length[:40]!r})")
        return int(length)

    def config_blob(self, repository: str, digest: str, max_size: int = MAX_CONFIG_SIZE) -> bytes:
        """An image config's bytes, at most ``max_size`` of them, verified against ``digest``."""
        if not is_digest(digest):
            raise RegistryError(f"config {repository}@{digest!r:.100}: not a digest, not requested")
        what = f"config {repository}@{digest}"
        algorithm = digest.partition(":")[0]
        if algorithm not in _VERIFIABLE:
            raise RegistryError(f"{what}: {algorithm} digests cannot be verified, not requested")
        url = f"v2/{_path(repository)}/blobs/{digest}"
        with self._lock:
            self._config_requests += 1
        # Read no further than max_size, so that a registry announcing or sending more costs no more than that.
        try:
            response = self._request(_scope(repository), "GET", url, {}, follow_redirects=True, max_body=max_size)
        except _TooLarge as error:
            if error.announced is not None:
                raise RegistryError(f"{what}: {error.announced} bytes, more than the {max_size} a config may have; "
                                    "not read") from None
            raise RegistryError(f"{what}: more than the {max_size} bytes a config may have; not read") from None
        self._expect_ok(response, what)
        body = response.body
        actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if actual != digest:
            raise RegistryError(f"{what}: digest mismatch (got {actual})")
        return body

    def _pages(self, scope: str, path: str, key: str) -> Iterator[list[str]]:
        url: str | None = f"{path}?n={PAGE_SIZE}"
        first = True
        while url is not None:
            response = self._request(scope, "GET", url, {})
            if first and response.status == 400 and b"PAGINATION_NUMBER_INVALID" in response.body:
                # This registry's page limit is below ours: let it choose the page size.
                url, first = path, False
                continue
            if response.status == 404 and b"NAME_UNKNOWN" in response.body:
                raise _NameUnknown(path)
            self._expect_ok(response, path)
            first = False
            try:
                items = json.loads(response.body).get(key) or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{path}: the answer is not the expected JSON") from None
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise RegistryError(f"{path}: '{key}' is not a list of names")
            yield items
            url = self._next_page(response, path)

    def _next_page(self, response: Response, what: str) -> str | None:
        """The ``Link: <...>; rel="next"`` of a page, if it stays on the registry's origin; ``None`` at the end."""
        following = _next_link(response.headers.get("link", ""))
        if not following:
            return None
        # Relative to the page that carries it (RFC 8288), as the registries send it: "</v2/...>".
        url = urljoin(response.url or self._base, following)
        if _origin(url) != self._origin:
            # The token for this scope would go with the request: to whoever runs that host.
            raise RegistryError(f"{what}: the next page is on another origin, {_origin(url)!r:.100}, not followed")
        return url

    def _request(self, scope: str, method: str, url: str, headers: dict[str, str],
                 follow_redirects: bool = False, max_body: int | None = None) -> Response:
        """``url`` is a path below the registry's base URL, or an absolute URL (a next page's)."""
        absolute = url if "://" in url else self._base + url
        if not absolute.startswith(self._origin_prefix) and _origin(absolute) != self._origin:
            # What _pages checks, here too: no token leaves the registry.
            raise RegistryError(f"{method} {_shown(absolute)!r:.100}: not the registry's origin, not requested")
        for attempt in (1, 2):
            token = self._tokens.token(scope)
            headers["Authorization"] = f"Bearer {token}"
            try:
                if max_body is None:
                    response = self._session.request(method, absolute, headers, self._timeout,
                                                     follow_redirects=follow_redirects)
                else:
                    response = self._session.request(method, absolute, headers, self._timeout,
                                                     follow_redirects=follow_redirects, max_body=max_body)
            except BodyTooLarge as error:
                self.stats.count("error")
                raise _TooLarge(error.announced) from None
            except TransportError as error:
                self.stats.count("error")
                raise RegistryError(f"{method} {_shown(absolute)}: {_describe(error)}") from None
            self.stats.count(str(response.status))
            if response.status == 401 and attempt == 1:
                # Expired or revoked early: fetch a new token once.
                self._tokens.invalidate(scope, token)
                continue
            return response
        return response

    @staticmethod
    def _expect_ok(response: Response, what: str) -> None:
        if response.status != 200:
            raise RegistryError(f"{what}: the registry answered {response.status}")


class _TooLarge(RegistryError):
    def __init__(self, announced: int | None) -> None:
        super().__init__("too large")
        self.announced = announced


class _NameUnknown(RegistryError):
    pass


def _tag_detail(entry: object, what: str) -> TagDetail:
    """One entry of GitLab's tag list, every field checked: its digests name requests, its name is served."""
    if not isinstance(entry, dict):
        raise RegistryError(f"{what}: an entry is not an object")
    name = entry.get("name")
    if not isinstance(name, str) or not _TAG.fullmatch(name):
        raise RegistryError(f"{what}: {name!r:.100} is not a tag name")
    digest, config_digest = entry.get("digest"), entry.get("config_digest")
    if not is_digest(digest):
        raise RegistryError(f"{what}: tag {name}: {digest!r:.100} is not a digest")
    if config_digest is not None and not is_digest(config_digest):
        raise RegistryError(f"{what}: tag {name}: config {config_digest!r:.100} is not a digest")
    media_type = entry.get("media_type")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise RegistryError(f"{what}: tag {name}: {media_type!r:.100} is not a media type")
    size = entry.get("size_bytes")
    if size is not None and (type(size) is not int or size < 0):
        raise RegistryError(f"{what}: tag {name}: size {size!r:.100} is not a number of bytes")
    times: dict[str, float | None] = {}
    parsed: dict[object, float | None] = {None: None}  # GitLab mostly writes one time twice (created, published)
    for key in ("created_at", "updated_at", "published_at"):
        value = entry.get(key)
        try:
            times[key] = parsed[value] if value in parsed else parsed.setdefault(value, parse_created(value))
        except ConfigError:
            raise RegistryError(f"{what}: tag {name}: {key} {value!r:.100} is not a time") from None
        except TypeError:  # not hashable: a list or an object
            raise RegistryError(f"{what}: tag {name}: {key} {value!r:.100} is not a time") from None
    published = times["published_at"]
    if published is None:
        # Registries before published_at: it is the later of the two.
        published = max((when for when in (times["created_at"], times["updated_at"]) if when is not None),
                        default=None)
    return TagDetail(name, digest, config_digest, media_type, published)


def _scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _path(repository: str) -> str:
    if not _NAME.fullmatch(repository):
        raise RegistryError(f"{repository!r:.100}: not a repository name the registry API allows, not requested")
    return quote(repository, safe="/")


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the port written out, for comparing where requests go."""
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        port = None
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def _shown(url: str) -> str:
    return url.split("?", 1)[0]


def _describe(error: TransportError) -> str:
    """A transport error in one bounded line (no secrets: tokens travel in headers, never in URLs)."""
    text = str(error)
    return text if len(text) <= 300 else text[:297] + "..."


def _next_link(value: str) -> str | None:
    """The target of the first ``rel="next"`` in a ``Link`` header (RFC 8288), parsed as ``requests`` did."""
    if not value:
        return None
    for link in re.split(", *<", value):
        target, _, params = link.partition(";")
        for param in params.split(";"):
            key, _, rel = param.partition("=")
            if key.strip(" '\"").lower() == "rel" and rel.strip(" '\"") == "next":
                return target.strip("<> '\"")
    return None

"""INI file -> frozen ``Config``: the original's sections, keys and defaults, validated up front.

``parse_config`` is pure (it takes a ``ConfigParser``); ``load_config`` only reads the file. Every
problem becomes one ``ConfigError`` naming the file, section and key, which the CLI prints as one line.
"""

from __future__ import annotations

import configparser
import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILENAME = "/etc/gitlab_registry_usage_rest.conf"
DEFAULT_DATA_FILE = "/var/lib/gitlab-registry-usage-rest/snapshot.json"
ENVIRONMENT_PREFIX = "GITLAB_REGISTRY_USAGE_REST_"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The original shipped this as its default secret: every installation that kept it signs tokens
# with a key known to the whole world.
ORIGINAL_DEFAULT_SECRET = "0" * 32
MIN_SECRET_LENGTH = 32
SECRET_HINT = (
    "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
)

COLLECTORS = ("builtin", "gitlab-registry-usage")

T = TypeVar("T")


class ConfigError(Exception):
    """A config problem, worded for the administrator: where it is and what is wrong."""


_UNITS = {
    "s": "seconds", "sec": "seconds", "second": "seconds", "seconds": "seconds",
    "m": "minutes", "min": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "week": "weeks", "weeks": "weeks",
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


def parse_timedelta(text: str) -> datetime.timedelta:
    """Parse the original's durations: ``2 weeks``, ``2w``, ``30 minutes``, ``1h``."""
    match = _DURATION.match(text.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a duration (examples: '2 weeks', '30 minutes', '1h')")
    return datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_timedelta(delta: datetime.timedelta) -> str:
    """The inverse of ``parse_timedelta`` for whole units, used by ``--print-default-config``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("weeks", 604800), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class GeneralConfig:
    socket_host: str = "127.0.0.1"
    socket_port: int = 5000
    server_prefix: str = "/"
    debug: bool = False
    refresh_interval: datetime.timedelta = datetime.timedelta(minutes=60)
    data_file: str | None = DEFAULT_DATA_FILE
    # None: three refresh intervals.
    max_data_age: datetime.timedelta | None = None
    metrics_require_token: bool = False
    log_format: str = "text"
    log_level: str = "INFO"
    tls_cert: str | None = None
    tls_key: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    login_max_failures: int = 10
    login_failure_window: datetime.timedelta = datetime.timedelta(minutes=10)
    max_request_header_size: int = 16384
    trusted_proxies: int = 0
    threads: int = 4

    @property
    def effective_max_data_age(self) -> datetime.timedelta:
        """Data older than this makes /health answer 503."""
        return self.max_data_age if self.max_data_age is not None else 3 * self.refresh_interval


@dataclass(frozen=True)
class LdapConfig:
    host: str = "myldap.com"
    base_dn: str = "dc=example,dc=com"
    valid_gid: str = "00000"
    username_attribute: str = "uid"
    gid_attribute: str = "gidNumber"
    ca_file: str | None = None
    verify_certificates: bool = True
    timeout: float = 10.0
    bind_dn: str | None = None
    bind_password: str = field(default="", repr=False)
    user_filter: str | None = None
    group_dn: str | None = None
    group_membership: str = "member"
    start_tls: bool = True

    @property
    def urls(self) -> tuple[str, ...]:
        """The servers, in fail-over order; a bare host means ``ldaps://`` as in the original."""
        return tuple(host if "://" in host else f"ldaps://{host}" for host in _split_list(self.host))

    @property
    def url(self) -> str:
        """The first server."""
        return self.urls[0]


@dataclass(frozen=True)
class JwtConfig:
    secret_key: str = field(repr=False)
    auth_token_expires: datetime.timedelta = datetime.timedelta(weeks=2)
    algorithm: str = "HS256"
    # PEM files for RS256/ES256; the private key signs, the public key verifies.
    private_key: str | None = field(default=None, repr=False)
    public_key: str | None = None
    issuer: str = "gitlab-registry-usage-rest"
    audience: str = "gitlab-registry-usage-rest"


@dataclass(frozen=True)
class RegistryConfig:
    gitlab_base_url: str = "https://mygitlab.com/"
    registry_base_url: str = "https://registry.mygitlab.com/"
    username: str = "root"
    access_token: str = field(default="", repr=False)
    collector: str = "builtin"
    concurrency: int = 8
    timeout: float = 30.0


@dataclass(frozen=True)
class Config:
    general: GeneralConfig
    ldap: LdapConfig
    jwt: JwtConfig
    registry: RegistryConfig


# (section, key, default as written in the file, comment). The order is the order printed.
_KEYS: tuple[tuple[str, str, str, str], ...] = (
    ("general", "socket_host", "127.0.0.1", "address to listen on"),
    ("general", "socket_port", "5000", "TCP port to listen on"),
    ("general", "server_prefix", "/", "URL path the service is mounted at, e.g. /registry-usage"),
    ("general", "debug", "False", "run Werkzeug's development server instead of cheroot"),
    ("general", "refresh_interval", "60 minutes", "time between two crawls of the registry"),
    ("general", "data_file", DEFAULT_DATA_FILE,
     "where the last good data is kept across restarts; empty: not kept"),
    ("general", "max_data_age", "", "/health answers 503 when the data is older; empty: three refresh intervals"),
    ("general", "metrics_require_token", "False", "require a bearer token for /metrics (open by default)"),
    ("general", "log_format", "text", "text or json (one object per line)"),
    ("general", "log_level", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ("general", "tls_cert", "", "PEM certificate (chain) to serve HTTPS; with tls_key; empty: plain HTTP"),
    ("general", "tls_key", "", "PEM private key of tls_cert"),
    ("general", "cors_origins", "*", "origins allowed to call the API from a browser, separated by spaces"),
    ("general", "login_max_failures", "10",
     "failed logins allowed per client address and per user name within login_failure_window"),
    ("general", "login_failure_window", "10 minutes", "window in which failed logins are counted"),
    ("general", "max_request_header_size", "16384", "largest request header block accepted, in bytes"),
    ("general", "threads", "4",
     "HTTP request threads; logins waiting on LDAP may hold half of them, more wait for the GIL in vain"),
    ("general", "trusted_proxies", "0",
     "reverse proxies in front that set X-Forwarded-For (client addresses for the login limit)"),
    ("ldap", "host", "myldap.com",
     "ldaps://host[:port], or ldap://host[:port] for StartTLS; a bare host means ldaps://"),
    ("ldap", "base_dn", "dc=example,dc=com", "subtree searched for the user"),
    ("ldap", "valid_gid", "00000", "only users whose gid_attribute has this value may log in"),
    ("ldap", "username_attribute", "uid", "attribute matched against the login name"),
    ("ldap", "gid_attribute", "gidNumber", "attribute compared with valid_gid; empty: no group check"),
    ("ldap", "ca_file", "", "PEM file of CA certificates for the LDAP server; empty: system CAs"),
    ("ldap", "verify_certificates", "True", "verify the LDAP server's certificate (keep it on)"),
    ("ldap", "timeout", "10 seconds", "connect and response timeout of LDAP requests"),
    ("ldap", "bind_dn", "", "service account for the user search; empty: anonymous search"),
    ("ldap", "bind_password", "", "password of bind_dn"),
    ("ldap", "user_filter", "", "extra condition for users who may log in, e.g. (objectClass=inetOrgPerson)"),
    ("ldap", "group_dn", "", "users must be members of this group; empty: no group membership check"),
    ("ldap", "group_membership", "member", "how membership of group_dn is stored: member, uniqueMember, "
     "memberUid (the group lists user names) or memberOf (the user lists groups)"),
    ("ldap", "start_tls", "True", "with ldap:// URLs, StartTLS before anything is sent; False: plain LDAP"),
    ("jwt", "auth_token_expires", "2 weeks", "lifetime of the tokens /auth_token hands out"),
    ("jwt", "secret_key", "", f"required for HS256, at least {MIN_SECRET_LENGTH} characters; {SECRET_HINT}"),
    ("jwt", "algorithm", "HS256", "HS256 (secret_key), or RS256 / ES256 (private_key and public_key files)"),
    ("jwt", "private_key", "", "PEM private key file that signs tokens (RS256, ES256)"),
    ("jwt", "public_key", "", "PEM public key file that verifies tokens (RS256, ES256)"),
    ("jwt", "issuer", "gitlab-registry-usage-rest", "iss claim set and required in tokens"),
    ("jwt", "audience", "gitlab-registry-usage-rest", "aud claim set and required in tokens"),
    ("registry", "gitlab_base_url", "https://mygitlab.com/", "GitLab, which issues registry tokens at /jwt/auth"),
    ("registry", "registry_base_url", "https://registry.mygitlab.com/", "the container registry"),
    ("registry", "username", "root", "a GitLab administrator"),
    ("registry", "access_token", "", "a personal access token of that user (scopes read_registry, api)"),
    ("registry", "collector", "builtin",
     "builtin (complete, concurrent, multi-architecture) or gitlab-registry-usage (the original's library)"),
    ("registry", "concurrency", "8", "builtin collector: requests in flight at once"),
    ("registry", "timeout", "30 seconds", "builtin collector: timeout of each request"),
)

_SECRET_KEYS = frozenset({("jwt", "secret_key"), ("registry", "access_token"), ("ldap", "bind_password")})
GROUP_MEMBERSHIPS = ("member", "uniqueMember", "memberUid", "memberOf")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")


def _ini_text(value: Callable[[str, str, str], str], comments: bool) -> str:
    """Every known key in INI form, sections in order, with ``value(section, key, default)``."""
    lines: list[str] = []
    section = ""
    for sec, key, default, comment in _KEYS:
        if sec != section:
            lines.extend(([""] if lines else []) + [f"[{sec}]"])
            section = sec
        if comments:
            lines.append(f"# {comment}")
        lines.append(f"{key} = {value(sec, key, default)}")
    return "\n".join(lines) + "\n"


def default_config_text() -> str:
    """Every key with its default and a comment, as ``--print-default-config`` prints it."""
    return _ini_text(lambda _section, _key, default: default, comments=True)


class _Section:
    """Reads typed values out of one INI section, turning every failure into a ``ConfigError``."""

    def __init__(self, parser: configparser.ConfigParser, name: str, source: str,
                 from_environment: frozenset[tuple[str, str]] = frozenset()) -> None:
        self._values = parser[name] if parser.has_section(name) else {}
        self._name = name
        self._source = source
        self._from_environment = from_environment

    def error(self, key: str, message: str) -> ConfigError:
        if (self._name, key) in self._from_environment:
            return ConfigError(f"{environment_variable(self._name, key)} ([{self._name}] {key}): {message}")
        return ConfigError(f"{self._source}: [{self._name}] {key}: {message}")

    def raw(self, key: str) -> str | None:
        value = self._values.get(key)
        return None if value is None else value.strip()

    def get(self, key: str, convert: Callable[[str], T], default: T) -> T:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as error:
            shown = "(hidden)" if (self._name, key) in _SECRET_KEYS else repr(value)
            raise self.error(key, f"invalid value {shown}: {error}") from None

    def required(self, key: str) -> str:
        value = self.raw(key)
        if not value:
            raise self.error(key, "is required")
        return value


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "t", "y", "1", "on"):
        return True
    if lowered in ("false", "no", "f", "n", "0", "off"):
        return False
    raise ValueError("expected true or false")


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError("expected a port number from 1 to 65535")
    return port


def _prefix(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must start with '/'")
    return text.rstrip("/") or "/"


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    # The gitlab-registry-usage library appends paths without a separator.
    return text if text.endswith("/") else text + "/"


def _ldap_host(text: str) -> str:
    hosts = _split_list(text)
    if not hosts:
        raise ValueError("expected at least one host")
    for host in hosts:
        if "://" in host:
            scheme, _, rest = host.partition("://")
            if scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
                raise ValueError("expected hosts as host, ldaps://host[:port] or ldap://host[:port]")
    return text


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_timedelta(text).total_seconds()


def _positive_duration(text: str) -> datetime.timedelta:
    delta = parse_timedelta(text)
    if delta.total_seconds() <= 0:
        raise ValueError("must be longer than zero")
    return delta


def _bounded_int(text: str, low: int, high: int) -> int:
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"expected a number from {low} to {high}")
    return value


def _concurrency(text: str) -> int:
    return _bounded_int(text, 1, 256)


def _exact_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        for choice in choices:
            if text.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of: {', '.join(choices)}")

    return convert


def _split_list(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", text) if item]


def _ldap_filter(text: str) -> str:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if not (text.startswith("(") and text.endswith(")")) or depth != 0:
        raise ValueError("expected an LDAP filter in parentheses, e.g. (objectClass=inetOrgPerson)")
    return text


def _readable_file(text: str) -> str | None:
    """A file that must be readable; empty means none."""
    if not text:
        return None
    if not os.access(text, os.R_OK) or os.path.isdir(text):
        raise ValueError(f"cannot read {text!r}")
    return text


def _choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.upper() if upper else text.lower()
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value

    return convert


def _collector(text: str) -> str:
    if text not in COLLECTORS:
        raise ValueError(f"expected one of: {', '.join(COLLECTORS)}")
    return text


def _secret(section: _Section, algorithm: str) -> str:
    secret = section.raw("secret_key") or ""
    if algorithm != "HS256":
        return secret
    if not secret:
        raise section.error("secret_key", f"is required; {SECRET_HINT}")
    if secret == ORIGINAL_DEFAULT_SECRET or len(set(secret)) == 1:
        raise section.error(
            "secret_key", f"is the well-known default, with which anyone can forge tokens; {SECRET_HINT}"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise section.error(
            "secret_key", f"is shorter than {MIN_SECRET_LENGTH} characters; {SECRET_HINT}"
        )
    return secret


def parse_config(parser: configparser.ConfigParser, source: str = "<config>",
                 from_environment: frozenset[tuple[str, str]] = frozenset()) -> Config:
    """Validate every key of an already read INI file and freeze the result; errors in keys set by the
    environment (``from_environment``) name the variable."""
    general = _Section(parser, "general", source, from_environment)
    ldap = _Section(parser, "ldap", source, from_environment)
    jwt = _Section(parser, "jwt", source, from_environment)
    registry = _Section(parser, "registry", source, from_environment)
    defaults_g, defaults_l, defaults_r = GeneralConfig(), LdapConfig(), RegistryConfig()

    ca_file = ldap.raw("ca_file") or None
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        raise ldap.error("ca_file", f"cannot read {ca_file!r}")
    timeout = ldap.get("timeout", _seconds, defaults_l.timeout)
    if timeout <= 0:
        raise ldap.error("timeout", "must be longer than zero")
    registry_timeout = registry.get("timeout", _seconds, defaults_r.timeout)
    if registry_timeout <= 0:
        raise registry.error("timeout", "must be longer than zero")
    bind_dn = ldap.raw("bind_dn") or None
    if bind_dn and not ldap.raw("bind_password"):
        raise ldap.error("bind_password", "is required with bind_dn (an empty password would bind anonymously)")
    tls_cert = general.get("tls_cert", _readable_file, None)
    tls_key = general.get("tls_key", _readable_file, None)
    if (tls_cert is None) != (tls_key is None):
        raise general.error("tls_cert" if tls_cert is None else "tls_key", "tls_cert and tls_key go together")
    algorithm = jwt.get("algorithm", _choice(JWT_ALGORITHMS, upper=True), "HS256")
    private_key = jwt.get("private_key", _readable_file, None)
    public_key = jwt.get("public_key", _readable_file, None)
    if algorithm != "HS256" and (private_key is None or public_key is None):
        raise jwt.error("private_key" if private_key is None else "public_key", f"is required with {algorithm}")

    return Config(
        general=GeneralConfig(
            socket_host=general.get("socket_host", str, defaults_g.socket_host),
            socket_port=general.get("socket_port", _port, defaults_g.socket_port),
            server_prefix=general.get("server_prefix", _prefix, defaults_g.server_prefix),
            debug=general.get("debug", _bool, defaults_g.debug),
            refresh_interval=general.get("refresh_interval", _positive_duration, defaults_g.refresh_interval),
            data_file=general.get("data_file", str, DEFAULT_DATA_FILE) or None,
            max_data_age=general.get("max_data_age", lambda text: _positive_duration(text) if text else None, None),
            metrics_require_token=general.get("metrics_require_token", _bool, False),
            log_format=general.get("log_format", _choice(LOG_FORMATS), "text"),
            log_level=general.get("log_level", _choice(LOG_LEVELS, upper=True), "INFO"),
            tls_cert=tls_cert,
            tls_key=tls_key,
            cors_origins=tuple(general.get("cors_origins", _split_list, ["*"])) or ("*",),
            login_max_failures=general.get("login_max_failures", lambda text: _bounded_int(text, 1, 10**6), 10),
            login_failure_window=general.get("login_failure_window", _positive_duration,
                                             datetime.timedelta(minutes=10)),
            max_request_header_size=general.get("max_request_header_size",
                                                lambda text: _bounded_int(text, 1024, 1 << 20), 16384),
            trusted_proxies=general.get("trusted_proxies", lambda text: _bounded_int(text, 0, 10), 0),
            threads=general.get("threads", lambda text: _bounded_int(text, 1, 1000), 4),
        ),
        ldap=LdapConfig(
            host=ldap.get("host", _ldap_host, defaults_l.host),
            base_dn=ldap.get("base_dn", str, defaults_l.base_dn),
            valid_gid=ldap.get("valid_gid", str, defaults_l.valid_gid),
            username_attribute=ldap.get("username_attribute", str, defaults_l.username_attribute),
            gid_attribute=ldap.get("gid_attribute", str, defaults_l.gid_attribute),
            ca_file=ca_file,
            verify_certificates=ldap.get("verify_certificates", _bool, True),
            timeout=timeout,
            bind_dn=bind_dn,
            bind_password=ldap.raw("bind_password") or "",
            user_filter=ldap.get("user_filter", lambda text: _ldap_filter(text) if text else "", "") or None,
            group_dn=ldap.raw("group_dn") or None,
            group_membership=ldap.get("group_membership", _exact_choice(GROUP_MEMBERSHIPS), "member"),
            start_tls=ldap.get("start_tls", _bool, True),
        ),
        jwt=JwtConfig(
            secret_key=_secret(jwt, algorithm),
            auth_token_expires=jwt.get("auth_token_expires", _positive_duration, datetime.timedelta(weeks=2)),
            algorithm=algorithm,
            private_key=private_key,
            public_key=public_key,
            issuer=jwt.get("issuer", str, "gitlab-registry-usage-rest"),
            audience=jwt.get("audience", str, "gitlab-registry-usage-rest"),
        ),
        registry=RegistryConfig(
            gitlab_base_url=registry.get("gitlab_base_url", _http_url, defaults_r.gitlab_base_url),
            registry_base_url=registry.get("registry_base_url", _http_url, defaults_r.registry_base_url),
            username=registry.get("username", str, defaults_r.username),
            access_token=registry.raw("access_token") or "",
            collector=registry.get("collector", _collector, defaults_r.collector),
            concurrency=registry.get("concurrency", _concurrency, defaults_r.concurrency),
            timeout=registry_timeout,
        ),
    )


def unknown_keys(parser: configparser.ConfigParser) -> list[str]:
    """Keys and sections we do not know: most likely typos, worth a warning."""
    known = {(section, key) for section, key, _, _ in _KEYS}
    sections = {section for section, _ in known}
    found = []
    for section in parser.sections():
        if section not in sections:
            found.append(f"[{section}]")
            continue
        found.extend(f"[{section}] {key}" for key in parser[section] if (section, key) not in known)
    return found


def environment_variable(section: str, key: str) -> str:
    """The variable that overrides a key, e.g. GITLAB_REGISTRY_USAGE_REST_REGISTRY_ACCESS_TOKEN."""
    return f"{ENVIRONMENT_PREFIX}{section.upper()}_{key.upper()}"


def apply_environment(parser: configparser.ConfigParser, environ: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    """Override keys from the environment (secrets stay out of files and images); returns the keys set."""
    used = set()
    for section, key, _, _ in _KEYS:
        name = environment_variable(section, key)
        if name in environ:
            if not parser.has_section(section):
                parser.add_section(section)
            parser.set(section, key, environ[name])
            used.add((section, key))
    return frozenset(used)


def environment_overrides(environ: Mapping[str, str] | None = None) -> frozenset[tuple[str, str]]:
    """The keys the environment sets."""
    environ = os.environ if environ is None else environ
    return frozenset((section, key) for section, key, _, _ in _KEYS if environment_variable(section, key) in environ)


def effective_config_text(parser: configparser.ConfigParser) -> str:
    """Every key with the value in force (file, environment or default), secrets masked."""

    def value(section: str, key: str, default: str) -> str:
        found = parser.get(section, key, fallback=default) if parser.has_section(section) else default
        return "********" if (section, key) in _SECRET_KEYS and found else found

    return _ini_text(value, comments=False)


def load_config(path: str, environ: Mapping[str, str] | None = None) -> configparser.ConfigParser:
    """Read the file; a missing, unreadable or malformed file is a ``ConfigError``."""
    """Read the file, then the environment's overrides; a missing file is fine only if the environment
    configures the service (as in a container)."""
    environ = os.environ if environ is None else environ
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file, source=path)
    except FileNotFoundError:
        if apply_environment(parser, environ):
            return parser
        raise ConfigError(f"{path}: the config file does not exist (--print-default-config prints one)") from None
    except PermissionError:
        raise ConfigError(f"{path}: the config file is not readable") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {error.message.splitlines()[0]}") from None
    apply_environment(parser, environ)
    return parser

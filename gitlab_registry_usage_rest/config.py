"""INI file -> frozen ``Config``: the original's sections, keys and defaults, validated up front.

``parse_config`` is pure (it takes a ``ConfigParser``); ``load_config`` only reads the file. Every
problem becomes one ``ConfigError`` naming the file, section and key, which the CLI prints as one line.
"""

from __future__ import annotations

import configparser
import datetime
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILENAME = "/etc/gitlab_registry_usage_rest.conf"
DEFAULT_DATA_FILE = "/var/lib/gitlab-registry-usage-rest/snapshot.json"
HISTORY_AUTO = "auto"
HISTORY_FILENAME = "history.sqlite3"
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
GROUP_MEMBERSHIPS = ("member", "uniqueMember", "memberUid", "memberOf")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")

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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5,
}
MAX_SIZE = 2**63 - 1


def parse_size(text: str) -> int:
    """Bytes from ``2 TiB``, ``500 GB``, ``1.5 TB`` or plain ``1000000``: SI units are powers of 1000, IEC units
    (``KiB`` .. ``PiB``) of 1024."""
    match = _SIZE.match(text.lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (examples: '2 TiB', '500 GB', '1000000')")
    number, unit = match.group(1), match.group(2)
    # Decimal arithmetic on the digits, so '1.1 TB' is exactly 1100000000000 bytes.
    whole, _, fraction = number.partition(".")
    scale, divisor = _SIZE_UNITS[unit], int("1" + "0" * len(fraction))
    value = int(whole) * scale + int(fraction or "0") * scale // divisor
    if not 0 < value <= MAX_SIZE:
        raise ValueError(f"expected a size from 1 byte to {MAX_SIZE} bytes")
    return value


def _optional_size(text: str) -> int | None:
    return parse_size(text) if text else None


def _history_file(text: str) -> str | None:
    """``auto`` (beside the data file), a path, or empty for none; resolved by ``GeneralConfig.history_path``."""
    return text or None


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


def _int_between(low: int, high: int) -> Callable[[str], int]:
    return lambda text: _bounded_int(text, low, high)


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    """One of ``choices`` in any case, answered as the choice is spelt (``memberuid`` -> ``memberUid``)."""

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


def _optional(text: str) -> str | None:
    """A string where empty means none."""
    return text or None


def _optional_duration(text: str) -> datetime.timedelta | None:
    return _positive_duration(text) if text else None


def _positive_seconds(text: str) -> float:
    seconds = _seconds(text)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def _metrics_token(text: str) -> str | None:
    """A static scrape token for /metrics; empty means none."""
    if not text:
        return None
    if len(text) < MIN_SECRET_LENGTH:
        raise ValueError(f"is shorter than {MIN_SECRET_LENGTH} characters; {SECRET_HINT}")
    return text


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _proxies(text: str) -> tuple[Network, ...]:
    """Proxy addresses and networks; ``0``, the earlier default (no proxy), still means none."""
    items = _split_list(text)
    if items == ["0"]:
        return ()
    if any(item.isdigit() for item in items):
        raise ValueError("a number of proxies is no longer accepted: list the proxies' addresses or networks "
                         "instead, e.g. trusted_proxies = 127.0.0.1 10.0.0.0/8 (empty: no proxy)")
    networks: list[Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8, "
                             "fd00::/8)") from None
    return tuple(networks)


def _origins(text: str) -> tuple[str, ...]:
    return tuple(_split_list(text)) or ("*",)


def _optional_ldap_filter(text: str) -> str | None:
    return _ldap_filter(text) if text else None


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: where it lives, its default as written in the file, how it is read, what it means."""

    section: str
    name: str
    default: str
    convert: Callable[[str], Any]
    comment: str
    secret: bool = False


# Every key, once. The dataclass defaults, --print-default-config, --print-config, the environment
# overrides and the unknown-key warnings all come from here; the order is the order printed.
KEYS: tuple[Key, ...] = (
    Key("general", "socket_host", "127.0.0.1", str, "address to listen on"),
    Key("general", "socket_port", "5000", _port, "TCP port to listen on"),
    Key("general", "server_prefix", "/", _prefix, "URL path the service is mounted at, e.g. /registry-usage"),
    Key("general", "debug", "False", _bool, "run Werkzeug's development server instead of cheroot"),
    Key("general", "refresh_interval", "60 minutes", _positive_duration, "time between two crawls of the registry"),
    Key("general", "data_file", DEFAULT_DATA_FILE, _optional,
        "where the last good data is kept across restarts; empty: not kept"),
    Key("general", "history_file", HISTORY_AUTO, _history_file,
        f"SQLite file of the figures over time; {HISTORY_AUTO}: {HISTORY_FILENAME} in data_file's folder "
        "(none without a data_file); empty: no history"),
    Key("general", "history_full_days", "7", _int_between(0, 100_000),
        "days for which the history keeps every refresh's changes"),
    Key("general", "history_days", "400", _int_between(1, 100_000),
        "days of history kept in all; before history_full_days, the last figures of each UTC day"),
    Key("general", "storage_capacity", "", _optional_size,
        "size of the registry's storage, e.g. 2 TiB, 500 GB or bytes: /history says when it is full; empty: unknown"),
    Key("general", "max_data_age", "", _optional_duration,
        "/health answers 503 when the data is older; empty: three refresh intervals"),
    Key("general", "metrics_require_token", "False", _bool,
        "require a bearer token for all of /metrics; without one it serves only the registry-wide series"),
    Key("general", "metrics_token", "", _metrics_token,
        f"static bearer token that opens the per-repository series of /metrics (Prometheus: authorization: "
        f"credentials_file), at least {MIN_SECRET_LENGTH} characters; empty: only tokens from /auth_token",
        secret=True),
    Key("general", "log_format", "text", _choice(LOG_FORMATS), "text or json (one object per line)"),
    Key("general", "log_level", "INFO", _choice(LOG_LEVELS), "DEBUG, INFO, WARNING or ERROR"),
    Key("general", "tls_cert", "", _readable_file,
        "PEM certificate (chain) to serve HTTPS; with tls_key; empty: plain HTTP"),
    Key("general", "tls_key", "", _readable_file, "PEM private key of tls_cert"),
    Key("general", "cors_origins", "*", _origins,
        "origins allowed to call the API from a browser, separated by spaces"),
    Key("general", "login_max_failures", "10", _int_between(1, 10**6),
        "failed logins allowed per client address and per user name within login_failure_window"),
    Key("general", "login_failure_window", "10 minutes", _positive_duration,
        "window in which failed logins are counted"),
    Key("general", "max_request_header_size", "16384", _int_between(1024, 1 << 20),
        "largest request header block accepted, in bytes"),
    Key("general", "threads", "4", _int_between(1, 1000),
        "HTTP request threads; logins waiting on LDAP may hold half of them, more wait for the GIL in vain"),
    Key("general", "trusted_proxies", "", _proxies,
        "addresses or networks of the reverse proxies in front, e.g. 127.0.0.1 10.0.0.0/8: X-Forwarded-For is "
        "believed only on their connections (client addresses for the login limit); empty: none"),
    Key("ldap", "host", "myldap.com", _ldap_host,
        "ldaps://host[:port], or ldap://host[:port] for StartTLS; a bare host means ldaps://"),
    Key("ldap", "base_dn", "dc=example,dc=com", str, "subtree searched for the user"),
    Key("ldap", "valid_gid", "00000", str, "only users whose gid_attribute has this value may log in"),
    Key("ldap", "username_attribute", "uid", str, "attribute matched against the login name"),
    Key("ldap", "gid_attribute", "gidNumber", str, "attribute compared with valid_gid; empty: no group check"),
    Key("ldap", "ca_file", "", _readable_file, "PEM file of CA certificates for the LDAP server; empty: system CAs"),
    Key("ldap", "verify_certificates", "True", _bool, "verify the LDAP server's certificate (keep it on)"),
    Key("ldap", "timeout", "10 seconds", _positive_seconds, "connect and response timeout of LDAP requests"),
    Key("ldap", "bind_dn", "", _optional, "service account for the user search; empty: anonymous search"),
    Key("ldap", "bind_password", "", str, "password of bind_dn", secret=True),
    Key("ldap", "user_filter", "", _optional_ldap_filter,
        "extra condition for users who may log in, e.g. (objectClass=inetOrgPerson)"),
    Key("ldap", "group_dn", "", _optional, "users must be members of this group; empty: no group membership check"),
    Key("ldap", "group_membership", "member", _choice(GROUP_MEMBERSHIPS),
        "how membership of group_dn is stored: member, uniqueMember, "
        "memberUid (the group lists user names) or memberOf (the user lists groups)"),
    Key("ldap", "start_tls", "True", _bool, "with ldap:// URLs, StartTLS before anything is sent; False: plain LDAP"),
    Key("jwt", "auth_token_expires", "2 weeks", _positive_duration, "lifetime of the tokens /auth_token hands out"),
    Key("jwt", "secret_key", "", str,
        f"required for HS256, at least {MIN_SECRET_LENGTH} characters; {SECRET_HINT}", secret=True),
    Key("jwt", "algorithm", "HS256", _choice(JWT_ALGORITHMS),
        "HS256 (secret_key), or RS256 / ES256 (private_key and public_key files)"),
    Key("jwt", "private_key", "", _readable_file, "PEM private key file that signs tokens (RS256, ES256)"),
    Key("jwt", "public_key", "", _readable_file, "PEM public key file that verifies tokens (RS256, ES256)"),
    Key("jwt", "issuer", "gitlab-registry-usage-rest", str, "iss claim set and required in tokens"),
    Key("jwt", "audience", "gitlab-registry-usage-rest", str, "aud claim set and required in tokens"),
    Key("registry", "gitlab_base_url", "https://mygitlab.com/", _http_url,
        "GitLab, which issues registry tokens at /jwt/auth"),
    Key("registry", "registry_base_url", "https://registry.mygitlab.com/", _http_url, "the container registry"),
    Key("registry", "username", "root", str, "a GitLab administrator"),
    Key("registry", "access_token", "", str, "a personal access token of that user (scopes read_registry, api)",
        secret=True),
    Key("registry", "collector", "builtin", _choice(COLLECTORS),
        "builtin (complete, concurrent, multi-architecture) or gitlab-registry-usage (the original's library)"),
    Key("registry", "concurrency", "8", _int_between(1, 256), "builtin collector: requests in flight at once"),
    Key("registry", "timeout", "30 seconds", _positive_seconds,
        "timeout of each registry request (both collectors); a crawler process silent for four of them is restarted"),
)
_BY_NAME = {(key.section, key.name): key for key in KEYS}
SECTIONS = tuple(dict.fromkeys(key.section for key in KEYS))


def _default(section: str, name: str) -> Any:
    """The typed default of a key: its default text, read as the file's value would be."""
    key = _BY_NAME[(section, name)]
    return key.convert(key.default)


@dataclass(frozen=True)
class GeneralConfig:
    socket_host: str = _default("general", "socket_host")
    socket_port: int = _default("general", "socket_port")
    server_prefix: str = _default("general", "server_prefix")
    debug: bool = _default("general", "debug")
    refresh_interval: datetime.timedelta = _default("general", "refresh_interval")
    data_file: str | None = _default("general", "data_file")
    # "auto": beside data_file (see history_path); None: no history.
    history_file: str | None = _default("general", "history_file")
    history_full_days: int = _default("general", "history_full_days")
    history_days: int = _default("general", "history_days")
    storage_capacity: int | None = _default("general", "storage_capacity")
    # None: three refresh intervals.
    max_data_age: datetime.timedelta | None = _default("general", "max_data_age")
    metrics_require_token: bool = _default("general", "metrics_require_token")
    # None: no static scrape token; tokens from /auth_token still open the per-repository series.
    metrics_token: str | None = field(default=_default("general", "metrics_token"), repr=False)
    log_format: str = _default("general", "log_format")
    log_level: str = _default("general", "log_level")
    tls_cert: str | None = _default("general", "tls_cert")
    tls_key: str | None = _default("general", "tls_key")
    cors_origins: tuple[str, ...] = _default("general", "cors_origins")
    login_max_failures: int = _default("general", "login_max_failures")
    login_failure_window: datetime.timedelta = _default("general", "login_failure_window")
    max_request_header_size: int = _default("general", "max_request_header_size")
    # Empty: X-Forwarded-For is never believed.
    trusted_proxies: tuple[Network, ...] = _default("general", "trusted_proxies")
    threads: int = _default("general", "threads")

    @property
    def history_path(self) -> str | None:
        """The history file in force: ``history_file``, or for ``auto`` the file beside ``data_file``; None: none."""
        if self.history_file != HISTORY_AUTO:
            return self.history_file
        if self.data_file is None:
            return None
        return os.path.join(os.path.dirname(self.data_file), HISTORY_FILENAME)

    @property
    def effective_max_data_age(self) -> datetime.timedelta:
        """Data older than this makes /health answer 503."""
        return self.max_data_age if self.max_data_age is not None else 3 * self.refresh_interval


@dataclass(frozen=True)
class LdapConfig:
    host: str = _default("ldap", "host")
    base_dn: str = _default("ldap", "base_dn")
    valid_gid: str = _default("ldap", "valid_gid")
    username_attribute: str = _default("ldap", "username_attribute")
    gid_attribute: str = _default("ldap", "gid_attribute")
    ca_file: str | None = _default("ldap", "ca_file")
    verify_certificates: bool = _default("ldap", "verify_certificates")
    timeout: float = _default("ldap", "timeout")
    bind_dn: str | None = _default("ldap", "bind_dn")
    bind_password: str = field(default=_default("ldap", "bind_password"), repr=False)
    user_filter: str | None = _default("ldap", "user_filter")
    group_dn: str | None = _default("ldap", "group_dn")
    group_membership: str = _default("ldap", "group_membership")
    start_tls: bool = _default("ldap", "start_tls")

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
    secret_key: str = field(repr=False)  # required with HS256: no default that could work
    auth_token_expires: datetime.timedelta = _default("jwt", "auth_token_expires")
    algorithm: str = _default("jwt", "algorithm")
    # PEM files for RS256/ES256; the private key signs, the public key verifies.
    private_key: str | None = field(default=_default("jwt", "private_key"), repr=False)
    public_key: str | None = _default("jwt", "public_key")
    issuer: str = _default("jwt", "issuer")
    audience: str = _default("jwt", "audience")


@dataclass(frozen=True)
class RegistryConfig:
    gitlab_base_url: str = _default("registry", "gitlab_base_url")
    registry_base_url: str = _default("registry", "registry_base_url")
    username: str = _default("registry", "username")
    access_token: str = field(default=_default("registry", "access_token"), repr=False)
    collector: str = _default("registry", "collector")
    concurrency: int = _default("registry", "concurrency")
    timeout: float = _default("registry", "timeout")


@dataclass(frozen=True)
class Config:
    general: GeneralConfig
    ldap: LdapConfig
    jwt: JwtConfig
    registry: RegistryConfig


def _ini_text(value: Callable[[Key], str], comments: bool) -> str:
    """Every known key in INI form, sections in order, with ``value(key)``."""
    lines: list[str] = []
    section = ""
    for key in KEYS:
        if key.section != section:
            lines.extend(([""] if lines else []) + [f"[{key.section}]"])
            section = key.section
        if comments:
            lines.append(f"# {key.comment}")
        lines.append(f"{key.name} = {value(key)}")
    return "\n".join(lines) + "\n"


def default_config_text() -> str:
    """Every key with its default and a comment, as ``--print-default-config`` prints it."""
    return _ini_text(lambda key: key.default, comments=True)


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
            shown = "(hidden)" if _BY_NAME[(self._name, key)].secret else repr(value)
            raise self.error(key, f"invalid value {shown}: {error}") from None

    def required(self, key: str) -> str:
        value = self.raw(key)
        if not value:
            raise self.error(key, "is required")
        return value


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
    sections = {name: _Section(parser, name, source, from_environment) for name in SECTIONS}
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key in KEYS:
        values[key.section][key.name] = sections[key.section].get(key.name, key.convert, _default(key.section,
                                                                                                     key.name))
    general, ldap, jwt = values["general"], values["ldap"], values["jwt"]
    # What one key cannot say alone.
    if ldap["bind_dn"] and not ldap["bind_password"]:
        raise sections["ldap"].error(
            "bind_password", "is required with bind_dn (an empty password would bind anonymously)")
    if (general["tls_cert"] is None) != (general["tls_key"] is None):
        raise sections["general"].error("tls_cert" if general["tls_cert"] is None else "tls_key",
                                        "tls_cert and tls_key go together")
    if jwt["algorithm"] != "HS256" and (jwt["private_key"] is None or jwt["public_key"] is None):
        raise sections["jwt"].error("private_key" if jwt["private_key"] is None else "public_key",
                                    f"is required with {jwt['algorithm']}")
    if general["history_full_days"] > general["history_days"]:
        raise sections["general"].error("history_full_days", "must not be more than history_days")
    jwt["secret_key"] = _secret(sections["jwt"], jwt["algorithm"])
    return Config(
        general=GeneralConfig(**general),
        ldap=LdapConfig(**ldap),
        jwt=JwtConfig(**jwt),
        registry=RegistryConfig(**values["registry"]),
    )


def unknown_keys(parser: configparser.ConfigParser) -> list[str]:
    """Keys and sections we do not know: most likely typos, worth a warning."""
    known = set(_BY_NAME)
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
    for key in KEYS:
        name = environment_variable(key.section, key.name)
        if name in environ:
            if not parser.has_section(key.section):
                parser.add_section(key.section)
            parser.set(key.section, key.name, environ[name])
            used.add((key.section, key.name))
    return frozenset(used)


def environment_overrides(environ: Mapping[str, str] | None = None) -> frozenset[tuple[str, str]]:
    """The keys the environment sets."""
    environ = os.environ if environ is None else environ
    return frozenset((key.section, key.name) for key in KEYS if environment_variable(key.section, key.name) in environ)


def effective_config_text(parser: configparser.ConfigParser) -> str:
    """Every key with the value in force (file, environment or default), secrets masked."""

    def value(key: Key) -> str:
        found = key.default
        if parser.has_section(key.section):
            found = parser.get(key.section, key.name, fallback=key.default)
        return "********" if key.secret and found else found

    return _ini_text(value, comments=False)


def load_config(path: str, environ: Mapping[str, str] | None = None) -> configparser.ConfigParser:
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

"""LDAP login as gitlab-registry-usage-rest 0.3.3 does it, and as directories are run today.

The original finds the user anonymously with ``(&(username_attribute=USER)(gid_attribute=valid_gid))`` under
``base_dn``; exactly one entry must match, and the password must bind as its DN. On top of that: the search can
run as a service account (``bind_dn``), ``user_filter`` adds a condition, and ``group_dn`` requires membership of
a group, stored as ``member``, ``uniqueMember`` or ``memberUid`` on the group or as ``memberOf`` on the user.
Several servers are tried in order until one answers. TLS is on unless turned off explicitly: ``ldaps://`` from
the first byte, ``ldap://`` after StartTLS, or, with ``start_tls = False``, plain ``ldap://``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from ldap3 import BASE, NO_ATTRIBUTES, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPCommunicationError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from .config import LdapConfig

log = logging.getLogger(__name__)

# What ldap3 raises when the directory cannot be reached or trusted: refused, reset or timed-out sockets
# (LDAPCommunicationError, or OSError), and TLS handshake or certificate failures, which ldap3 wraps in
# LDAPSocketOpenError for ldaps:// and in LDAPStartTLSError for StartTLS.
_UNAVAILABLE = (LDAPCommunicationError, LDAPStartTLSError, OSError)

# RFC 2307: a posixGroup's memberUid values are the members' uid, whatever attribute users log in with.
_POSIX_UID = "uid"


class LdapUnavailable(Exception):
    """The directory could not be asked, so nobody can log in right now (the web layer answers 503).

    Also raised when the directory answers in a way only a setup error explains (the service account cannot
    bind, the search or the group is refused or missing): such a login must not pass for a wrong password.
    """


class _Unreachable(Exception):
    """One server could not be reached or trusted: the next one in ``urls`` may be."""


@dataclass(frozen=True)
class _User:
    """The entry the search found: its DN, its name as the directory spells it and, for memberUid groups, its
    uid values."""

    dn: str
    name: str
    uids: tuple[str, ...]


class _VerifyingTls(Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """ldap3's ``Tls`` with certificate and host name checked by OpenSSL during the handshake.

    ldap3 2.9.1 switches the SSL context's host name check off and compares names after the handshake with
    ``ssl.match_hostname``, which Python 3.11 deprecates (3.12 removes it) and which, when the names differ,
    raises with the wrapped socket still open.
    """

    def __init__(self, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        """Wrap the connection's socket; called by ldap3 for ldaps:// on connect and for StartTLS."""
        # create_default_context: CERT_REQUIRED, check_hostname, the system CAs when ca_file is None.
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = context.wrap_socket(
            connection.socket, server_hostname=connection.server.host, do_handshake_on_connect=do_handshake
        )


class LdapAuthenticator:
    """Checks a username and password against the directory described by an ``LdapConfig``."""

    def __init__(self, config: LdapConfig) -> None:
        if config.bind_dn and not config.bind_password:
            # parse_config refuses this too: a simple bind with an empty password is an anonymous bind.
            raise ValueError("bind_dn needs a bind_password (an empty one would bind anonymously)")
        self._config = config
        self._tls = _VerifyingTls(config.ca_file) if config.verify_certificates else Tls(validate=ssl.CERT_NONE)
        # ldap3 2.9.1 cannot parse a URL with a trailing slash ("ldaps://host/" looks up the host "host/").
        self._urls = tuple(url.rstrip("/") for url in config.urls)
        # ldap3 2.9.1 packs the receive timeout into SO_RCVTIMEO as whole seconds and fails on a float.
        self._receive_timeout = math.ceil(config.timeout)
        self._bind_password = config.bind_password.encode("utf-8") if config.bind_dn else None
        if not config.verify_certificates:
            log.warning("LDAP server certificates are not verified (verify_certificates = False): whoever can "
                        "reach the network path can pose as the directory and read every password sent to it")
        if not config.start_tls:
            for url in self._urls:
                if url.lower().startswith("ldap://"):
                    log.warning("LDAP server %s is used without TLS (start_tls = False): passwords and "
                                "directory data cross the network in clear text", url)

    def authenticate(self, username: str, password: str) -> bool:
        """True if exactly one entry that may log in has this username and the password binds as it.

        Raises ``LdapUnavailable`` when no server can be reached or trusted, or when the directory refuses
        what only a setup error explains (service account bind, user search, group lookup).
        """
        return self.login(username, password) is not None

    def login(self, username: str, password: str) -> str | None:
        """Like ``authenticate``, but answers who logged in: the entry's own ``username_attribute`` value.

        The directory compares names without case and outer spaces (``Alice`` and `` alice`` find ``alice``):
        the token and the logs must name one user one way, as the directory does.
        """
        refusal = _refusal(username, password)
        if refusal is not None:
            log.info("LDAP login of %r refused without asking the server: %s", username, refusal)
            return None
        failures: list[str] = []
        try:
            # Fail-over by hand rather than with ldap3's ServerPool: in 2.9.1 a pool probes servers with a bare
            # TCP connect (a hung server or a bad certificate wins the pool and fails the login) and, when all
            # are down, sleeps POOLING_LOOP_TIMEOUT (10 s) before giving up.
            for url in self._urls:
                try:
                    return self._login(url, username, password)
                except _Unreachable as error:
                    failures.append(str(error))
                    if url != self._urls[-1]:
                        log.warning("%s; trying the next one", error)
            raise LdapUnavailable("; ".join(failures))
        except LdapUnavailable as error:
            log.warning("LDAP login of %r failed: %s", username, error)
            raise

    def _login(self, url: str, username: str, password: str) -> str | None:
        """The whole login on one server: search, group check, then the user's own bind; the user's name."""
        with self._search_connection(url) as connection:
            user = self._find_user(connection, url, username)
            if user is None or not self._in_group(connection, url, username, user):
                return None
        return user.name if self._bind(url, username, user.dn, password) else None

    def _find_user(self, connection: Connection, url: str, username: str) -> _User | None:
        """The only entry the search finds for this username, or None if there are none or several."""
        search_filter = self._filter(username)
        wants_uid = self._group_check() == "memberUid"
        name_attribute = self._config.username_attribute
        attributes = list(dict.fromkeys([name_attribute, _POSIX_UID] if wants_uid else [name_attribute]))
        # Two entries are enough to tell "exactly one" from "several".
        connection.search(
            self._config.base_dn, search_filter, search_scope=SUBTREE, attributes=attributes, size_limit=2,
        )
        entries = [entry for entry in connection.response if entry["type"] == "searchResEntry"]
        outcome = connection.result["description"]
        if len(entries) == 1:
            found = entries[0]["attributes"]
            uids = _values(found.get(_POSIX_UID)) if wants_uid else ()
            return _User(entries[0]["dn"], _own_name(username, _values(found.get(name_attribute))), uids)
        if entries:
            log.warning("LDAP login of %r refused: several entries match %s, e.g. %s", username, search_filter,
                        " and ".join(entry["dn"] for entry in entries))
            return None
        if outcome != "success":
            # noSuchObject (wrong base_dn), insufficientAccessRights (anonymous search refused), ...: nobody can
            # log in until the setup changes, which is not the same as a wrong password.
            hint = "check bind_dn and base_dn" if self._config.bind_dn else (
                "the search was anonymous: most directories need bind_dn and bind_password; check base_dn too")
            raise LdapUnavailable(
                f"LDAP server {url} refused the user search under {self._config.base_dn} ({outcome}): {hint}")
        log.info("LDAP login of %r refused: nothing under %s matches %s", username, self._config.base_dn,
                 search_filter)
        return None

    def _in_group(self, connection: Connection, url: str, username: str, user: _User) -> bool:
        """Whether the group lists the user; memberOf needs no look-up, it is part of the user filter."""
        membership = self._group_check()
        group_dn = self._config.group_dn
        if membership is None or membership == "memberOf" or group_dn is None:
            return True
        if membership == "memberUid":
            if not user.uids:
                log.info("LDAP login of %r refused: %s has no %s for %s to list", username, user.dn, _POSIX_UID,
                         group_dn)
                return False
            assertion = _any_of("memberUid", user.uids)
        else:
            # The DN as the search returned it; slapd and AD compare DN values after normalizing them.
            assertion = _any_of(membership, (user.dn,))
        connection.search(group_dn, assertion, search_scope=BASE, attributes=NO_ATTRIBUTES)
        listed = any(entry["type"] == "searchResEntry" for entry in connection.response)
        outcome = connection.result["description"]
        if listed:
            return True
        if outcome != "success":
            raise LdapUnavailable(f"LDAP server {url} refused the look-up of group {group_dn} ({outcome}): "
                                  "check group_dn (and that the search account may read the group)")
        log.info("LDAP login of %r refused: %s is not a member of %s (%s)", username, user.dn, group_dn,
                 membership)
        return False

    def _bind(self, url: str, username: str, dn: str, password: str) -> bool:
        """Whether the password binds as ``dn``, on a connection of its own."""
        # As bytes, the password reaches the server exactly as typed: for str, ldap3 applies SASLprep, which
        # rewrites some passwords (NFKC) and raises on others (e.g. mixed right-to-left and left-to-right text),
        # while slapd compares the stored hash with the bytes it receives.
        with self._connection(url, user=dn, password=password.encode("utf-8")) as connection:
            bound: bool = connection.bind()
            outcome = connection.result["description"]
        if bound:
            log.debug("LDAP login of %r accepted as %s", username, dn)
        else:
            log.info("LDAP login of %r refused: bind as %s failed (%s)", username, dn, outcome)
        return bound

    @contextlib.contextmanager
    def _search_connection(self, url: str) -> Iterator[Connection]:
        """A connection for the searches: bound as the service account if there is one, else anonymous."""
        bind_dn = self._config.bind_dn
        with self._connection(url, user=bind_dn, password=self._bind_password) as connection:
            if bind_dn and not connection.bind():
                # The same on every server, and fixed only by the administrator: not a reason to fail over.
                raise LdapUnavailable(f"LDAP server {url} refused the bind as the service account {bind_dn} "
                                      f"({connection.result['description']}): check bind_dn and bind_password")
            yield connection

    @contextlib.contextmanager
    def _connection(self, url: str, user: str | None = None, password: bytes | None = None) -> Iterator[Connection]:
        """An open connection on which TLS is up (unless start_tls is off) before anything else is sent."""
        # Not "with Connection(...)": ldap3's own context manager binds right after connecting, before StartTLS.
        # A Server per connection: an ldap3 Server remembers addresses that failed and skips them for about
        # five seconds, so a shared one would keep refusing logins after the directory is back.
        server = Server(url, tls=self._tls, connect_timeout=self._config.timeout, get_info=NONE)
        connection = Connection(
            server, user=user, password=password, receive_timeout=self._receive_timeout, auto_referrals=False
        )
        try:
            connection.open()
            # Without it, the request that follows the TLS handshake waits for the server's delayed ACK (Nagle):
            # 40 ms on Linux for every bind.
            connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not server.ssl and self._config.start_tls:
                connection.start_tls(read_server_info=False)
            yield connection
        except _UNAVAILABLE as error:
            # last_error is ldap3's plain account; str(error) can be a nested tuple repr for TLS failures.
            reason = connection.last_error or str(error)
            raise _Unreachable(f"LDAP server {url} is unavailable: {reason}") from error
        finally:
            _close(connection)

    def _group_check(self) -> str | None:
        """How group membership is checked, or None without a group_dn."""
        return self._config.group_membership if self._config.group_dn else None

    def _filter(self, username: str) -> str:
        """The user search filter; the username, gid and group DN are escaped to match only literally."""
        conditions = [f"({self._config.username_attribute}={escape_filter_chars(username)})"]
        if self._config.gid_attribute:
            conditions.append(f"({self._config.gid_attribute}={escape_filter_chars(self._config.valid_gid)})")
        if self._config.user_filter:
            # The administrator's own filter, checked for balanced parentheses by the config.
            conditions.append(self._config.user_filter)
        if self._group_check() == "memberOf":
            conditions.append(f"(memberOf={escape_filter_chars(self._config.group_dn)})")
        return conditions[0] if len(conditions) == 1 else f"(&{''.join(conditions)})"


def _values(found: object) -> tuple[str, ...]:
    """An attribute's values: without the schema (get_info=NONE) ldap3 returns a list, or a str for one value."""
    if found is None:
        return ()
    if isinstance(found, str | bytes):
        found = [found]
    assert isinstance(found, list | tuple)
    return tuple(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in found)


def _own_name(typed: str, values: tuple[str, ...]) -> str:
    """The entry's value of username_attribute that the typed name matched (the first if the match is not
    plain case and space folding); the name as typed only if the directory does not let us read any."""
    folded = " ".join(typed.casefold().split())
    for value in values:
        if " ".join(value.casefold().split()) == folded:
            return value
    return values[0] if values else typed


def _any_of(attribute: str, values: tuple[str, ...]) -> str:
    """A filter true when ``attribute`` has one of ``values``, which are escaped."""
    conditions = [f"({attribute}={escape_filter_chars(value)})" for value in values]
    return conditions[0] if len(conditions) == 1 else f"(|{''.join(conditions)})"


def _close(connection: Connection) -> None:
    """End the session and free its socket, also after a failure to connect, to shake hands or to StartTLS."""
    # After a failure the session may be beyond saying goodbye to; that failure is the one worth reporting.
    with contextlib.suppress(*_UNAVAILABLE):
        connection.unbind()
    # ldap3 2.9.1 leaves the socket open when it cannot connect.
    if connection.socket is not None:
        connection.socket.close()


def _refusal(username: str, password: str) -> str | None:
    """Why these credentials must not be sent at all, or None if they may be."""
    if not username or not password:
        # A simple bind with an empty password is an unauthenticated bind, which servers report as success.
        return "empty username or password"
    for value in (username, password):
        if "\0" in value:
            return "NUL character in username or password"
        if not _encodable(value):
            return "username or password is not valid Unicode (lone surrogate)"
    return None


def _encodable(text: str) -> bool:
    # JSON can carry lone surrogates ("\ud800"), which have no UTF-8 form and so no LDAP form either.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

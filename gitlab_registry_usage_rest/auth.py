"""LDAP login as gitlab-registry-usage-rest 0.3.3 does it: find the user anonymously, then bind as that entry.

The search asks for ``(&(username_attribute=USER)(gid_attribute=valid_gid))`` under ``base_dn``; exactly one
entry must match, and the password must bind as its DN. TLS is always on: ``ldaps://`` from the first byte,
``ldap://`` only after StartTLS.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Iterator

from ldap3 import NO_ATTRIBUTES, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPCommunicationError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from gitlab_registry_usage_rest.config import LdapConfig

log = logging.getLogger(__name__)

# What ldap3 raises when the directory cannot be reached or trusted: refused, reset or timed-out sockets
# (LDAPCommunicationError, or OSError), and TLS handshake or certificate failures, which ldap3 wraps in
# LDAPSocketOpenError for ldaps:// and in LDAPStartTLSError for StartTLS.
_UNAVAILABLE = (LDAPCommunicationError, LDAPStartTLSError, OSError)


class LdapUnavailable(Exception):
    """The directory could not be asked, so nobody can log in right now (the web layer answers 503)."""


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
        self._config = config
        self._tls = _VerifyingTls(config.ca_file) if config.verify_certificates else Tls(validate=ssl.CERT_NONE)
        # ldap3 2.9.1 cannot parse a URL with a trailing slash ("ldaps://host/" looks up the host "host/").
        self._url = config.url.rstrip("/")
        # ldap3 2.9.1 packs the receive timeout into SO_RCVTIMEO as whole seconds and fails on a float.
        self._receive_timeout = math.ceil(config.timeout)

    def authenticate(self, username: str, password: str) -> bool:
        """True if exactly one entry in the valid group has this username and the password binds as it.

        Raises ``LdapUnavailable`` when the directory cannot be reached or its certificate is not trusted.
        """
        refusal = _refusal(username, password)
        if refusal is not None:
            log.info("LDAP login of %r refused without asking the server: %s", username, refusal)
            return False
        try:
            dn = self._find_user(username)
            return dn is not None and self._bind(username, dn, password)
        except LdapUnavailable as error:
            log.warning("LDAP login of %r failed: %s", username, error)
            raise

    def _find_user(self, username: str) -> str | None:
        """The DN of the only entry the search finds for this username, or None if there are none or several."""
        search_filter = self._filter(username)
        with self._connection() as connection:
            # Two entries are enough to tell "exactly one" from "several".
            connection.search(
                self._config.base_dn, search_filter, search_scope=SUBTREE, attributes=NO_ATTRIBUTES, size_limit=2
            )
            dns: list[str] = [entry["dn"] for entry in connection.response if entry["type"] == "searchResEntry"]
            outcome = connection.result["description"]
        if len(dns) == 1:
            return dns[0]
        if dns:
            log.warning("LDAP login of %r refused: several entries match %s, e.g. %s", username, search_filter,
                        " and ".join(dns))
        else:
            # A search that did not succeed (say noSuchObject for a wrong base_dn) is a setup problem.
            level = logging.INFO if outcome == "success" else logging.WARNING
            log.log(level, "LDAP login of %r refused: nothing under %s matches %s (%s)", username,
                    self._config.base_dn, search_filter, outcome)
        return None

    def _bind(self, username: str, dn: str, password: str) -> bool:
        """Whether the password binds as ``dn``, on a connection of its own."""
        # As bytes, the password reaches the server exactly as typed: for str, ldap3 applies SASLprep, which
        # rewrites some passwords (NFKC) and raises on others (e.g. mixed right-to-left and left-to-right text),
        # while slapd compares the stored hash with the bytes it receives.
        with self._connection(user=dn, password=password.encode("utf-8")) as connection:
            bound: bool = connection.bind()
            outcome = connection.result["description"]
        if bound:
            log.debug("LDAP login of %r accepted as %s", username, dn)
        else:
            log.info("LDAP login of %r refused: bind as %s failed (%s)", username, dn, outcome)
        return bound

    @contextlib.contextmanager
    def _connection(self, user: str | None = None, password: bytes | None = None) -> Iterator[Connection]:
        """An open connection on which TLS is up before a filter, DN or password is sent."""
        # Not "with Connection(...)": ldap3's own context manager binds right after connecting, before StartTLS.
        # A Server per connection: an ldap3 Server remembers addresses that failed and skips them for about
        # five seconds, so a shared one would keep refusing logins after the directory is back.
        server = Server(self._url, tls=self._tls, connect_timeout=self._config.timeout, get_info=NONE)
        connection = Connection(
            server, user=user, password=password, receive_timeout=self._receive_timeout, auto_referrals=False
        )
        try:
            connection.open()
            if not server.ssl:
                connection.start_tls(read_server_info=False)
            yield connection
        except _UNAVAILABLE as error:
            # last_error is ldap3's plain account; str(error) can be a nested tuple repr for TLS failures.
            reason = connection.last_error or str(error)
            raise LdapUnavailable(f"LDAP server {self._url} is unavailable: {reason}") from error
        finally:
            _close(connection)

    def _filter(self, username: str) -> str:
        """The search filter, with the username and gid escaped so they only ever match literally."""
        user = f"({self._config.username_attribute}={escape_filter_chars(username)})"
        if not self._config.gid_attribute:
            return user
        return f"(&{user}({self._config.gid_attribute}={escape_filter_chars(self._config.valid_gid)}))"


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

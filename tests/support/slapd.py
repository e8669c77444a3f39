"""A private OpenLDAP server for tests: its own CA, config and data in a temp folder, listening on 127.0.0.1.

It never touches the system's slapd service or /etc/ldap/slapd.d: everything slapd reads or writes is under
the work folder it is given, and it runs as the current user.

Two access policies: the default lets anonymous clients search (as the original expects), the strict one
(``anonymous_search=False``) lets them only authenticate, so the search needs the ``reader`` service account.
Groups come in the three shapes directories use (groupOfNames, groupOfUniqueNames, posixGroup), and users carry
``memberOf`` for their groupOfNames groups.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from tests.support.processes import ManagedProcess, ProcessStartError, free_ports

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
OTHERS_DN = f"ou=others,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
VALID_GID = "1000"
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for slapd's TLS, plus a CA that did not sign anything slapd presents."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path


@dataclass(frozen=True)
class LdapUser:
    """A posixAccount in the test directory, with the password that binds as it."""

    uid: str
    password: str
    gid: str
    dn: str


@dataclass(frozen=True)
class LdapAccount:
    """An entry that can bind but is not a user: the root DN or a service account."""

    dn: str
    password: str


def _person(uid: str, password: str, gid: str, parent: str = PEOPLE_DN) -> LdapUser:
    return LdapUser(uid, password, gid, f"uid={escape_rdn(uid)},{parent}")


# Users whose uid names exactly one entry. Their names and passwords cover what the login has to get
# right: a gid outside valid_gid, non-ASCII text, and characters that are special in LDAP filters.
USERS = (
    _person("alice", "alice-secret-1", VALID_GID),
    _person("bob", "bob-secret-2", "2000"),
    _person("émile", "pässwörd-✓-密码", VALID_GID),
    _person("paren(x)", "paren-pw", VALID_GID),
    _person("star*", "star-pw", VALID_GID),
)
# Two entries share this uid, so a login as "twin" must be refused whatever the password.
TWINS = (
    _person("twin", "twin-pw", VALID_GID),
    _person("twin", "twin-pw", VALID_GID, parent=OTHERS_DN),
)
ADMIN = LdapAccount(f"cn=admin,{BASE_DN}", "admin-secret")
READER = LdapAccount(f"cn=reader,{BASE_DN}", "reader-secret")
ADMIN_GROUP_DN = f"cn=registry-admins,{GROUPS_DN}"
UNIQUE_GROUP_DN = f"cn=registry-unique,{GROUPS_DN}"
POSIX_GROUP_DN = f"cn=registry-posix,{GROUPS_DN}"
# A name with characters that are special in filters, for a group DN that goes into a (memberOf=...) filter.
PUNCTUATED_GROUP_DN = f"cn=registry (ops*),{GROUPS_DN}"


@dataclass(frozen=True)
class LdapGroup:
    """A group in the test directory: its DN, its object class and the uids of its members."""

    dn: str
    object_class: str
    members: tuple[str, ...]


# How each group object class lists its members: by DN, or (posixGroup) by uid.
MEMBER_ATTRIBUTE = {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember", "posixGroup": "memberUid"}
# alice is in every group and bob in none; émile is only in the groupOfNames (memberUid is an IA5String, so a
# posixGroup cannot even name him). The users whose names are special in filters are in all of them, so a DN or
# uid that reaches a filter unescaped shows up as a refused member (or an invalid filter).
GROUPS = (
    LdapGroup(ADMIN_GROUP_DN, "groupOfNames", ("alice", "émile", "paren(x)", "star*")),
    LdapGroup(UNIQUE_GROUP_DN, "groupOfUniqueNames", ("alice", "paren(x)", "star*")),
    LdapGroup(POSIX_GROUP_DN, "posixGroup", ("alice", "paren(x)", "star*")),
    LdapGroup(PUNCTUATED_GROUP_DN, "groupOfNames", ("alice",)),
)


class SlapdError(ProcessStartError):
    """slapd could not be set up or did not become ready; the message carries the end of its log."""


def make_ca(workdir: Path, server_names: Sequence[str] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Write a CA, a server certificate it signed for ``server_names`` and an unrelated second CA."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _self_signed_ca("Test LDAP CA")
    _, other_ca_cert = _self_signed_ca("Unrelated Test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in server_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_cert=workdir / "ca.pem",
        server_cert=workdir / "server.pem",
        server_key=workdir / "server-key.pem",
        other_ca_cert=workdir / "other-ca.pem",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.other_ca_cert.write_bytes(other_ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.touch(mode=0o600)
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def _self_signed_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def ssha(password: str) -> str:
    """The ``{SSHA}`` form ``slappasswd -h {SSHA}`` writes: SHA-1 of password + salt, then the salt."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _ldif_record(dn: str, attributes: Iterable[tuple[str, str]]) -> str:
    lines = [_ldif_line("dn", dn)] + [_ldif_line(name, value) for name, value in attributes]
    return "\n".join(lines) + "\n\n"


def _ldif_line(name: str, value: str) -> str:
    # RFC 2849 allows only a subset of ASCII as plain values; anything else goes base64-encoded.
    safe = value.isascii() and value.isprintable() and value[:1] not in (" ", ":", "<") and value[-1:] != " "
    if safe:
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def _directory_ldif() -> str:
    records = [
        _ldif_record(BASE_DN, [("objectClass", "dcObject"), ("objectClass", "organization"),
                               ("dc", "example"), ("o", "Example")]),
        *(
            _ldif_record(f"ou={ou},{BASE_DN}", [("objectClass", "organizationalUnit"), ("ou", ou)])
            for ou in ("people", "others", "groups")
        ),
        _ldif_record(READER.dn, [("objectClass", "organizationalRole"), ("objectClass", "simpleSecurityObject"),
                                 ("cn", "reader"), ("userPassword", ssha(READER.password))]),
    ]
    for number, user in enumerate(USERS + TWINS, start=10001):
        # slapadd does not run overlays, so the memberof overlay would leave these out: they are written here, as
        # the overlay writes them when a group changes over LDAP (it only covers groupOfNames with member).
        member_of = [("memberOf", group.dn) for group in GROUPS
                     if group.object_class == "groupOfNames" and user.uid in group.members]
        records.append(_ldif_record(user.dn, [
            ("objectClass", "inetOrgPerson"), ("objectClass", "posixAccount"),
            ("uid", user.uid), ("cn", user.uid), ("sn", user.uid),
            ("uidNumber", str(number)), ("gidNumber", user.gid), ("homeDirectory", f"/home/{number}"),
            ("userPassword", ssha(user.password)), *member_of,
        ]))
    users = {user.uid: user for user in USERS}
    for number, group in enumerate(GROUPS, start=3001):
        attribute = MEMBER_ATTRIBUTE[group.object_class]
        members = [(attribute, uid if attribute == "memberUid" else users[uid].dn) for uid in group.members]
        extra = [("gidNumber", str(number))] if group.object_class == "posixGroup" else []
        cn = group.dn.split(",")[0].removeprefix("cn=")
        records.append(_ldif_record(group.dn, [("objectClass", group.object_class), ("cn", cn), *extra, *members]))
    return "".join(records)


class Slapd(ManagedProcess):
    """A real slapd with the directory above; ``stop()`` and ``start()`` repeat on the same ports and data."""

    def __init__(self, workdir: Path, tls: TlsFiles | None = None, *, anonymous_search: bool = True) -> None:
        for binary in (SLAPD, SLAPADD):
            if not binary.exists():
                raise SlapdError(f"{binary} is missing: install the Debian packages slapd and ldap-utils")
        super().__init__(workdir / "slapd.log", start_timeout=READY_TIMEOUT)
        self._workdir = workdir
        self._anonymous_search = anonymous_search
        self._tls = tls if tls is not None else make_ca(workdir / "tls")
        self._ldap_port, self._ldaps_port = free_ports(2)
        self._data_dir = workdir / "data"
        self._data_dir.mkdir()
        self._config_file = workdir / "slapd.conf"
        self._config_file.write_text(self._config_text(), encoding="utf-8")
        self._load_directory()

    @property
    def ldap_url(self) -> str:
        """Plain LDAP, on which clients must do StartTLS."""
        return f"ldap://127.0.0.1:{self._ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self._ldaps_port}"

    @property
    def ca_file(self) -> Path:
        return self._tls.ca_cert

    @property
    def tls(self) -> TlsFiles:
        return self._tls

    @property
    def base_dn(self) -> str:
        return BASE_DN

    @property
    def valid_gid(self) -> str:
        return VALID_GID

    @property
    def users(self) -> dict[str, LdapUser]:
        """The users whose uid is unique, by uid (the two ``twin`` entries are in ``twins``)."""
        return {user.uid: user for user in USERS}

    @property
    def twins(self) -> tuple[LdapUser, ...]:
        return TWINS

    @property
    def admin(self) -> LdapAccount:
        """The root DN, which slapd lets do anything."""
        return ADMIN

    @property
    def reader(self) -> LdapAccount:
        """A service account that may search the directory."""
        return READER

    @property
    def admin_group_dn(self) -> str:
        """A groupOfNames with alice and émile (not bob) as members."""
        return ADMIN_GROUP_DN

    @property
    def anonymous_search(self) -> bool:
        """Whether anonymous clients may search; if not, they may only bind (and ``reader`` must search)."""
        return self._anonymous_search

    @property
    def group_dns(self) -> dict[str, str]:
        """For each way of storing membership (the config's ``group_membership``), a group that stores it so."""
        return {
            "member": ADMIN_GROUP_DN,
            "uniqueMember": UNIQUE_GROUP_DN,
            "memberUid": POSIX_GROUP_DN,
            "memberOf": ADMIN_GROUP_DN,
        }

    @property
    def punctuated_group_dn(self) -> str:
        """A groupOfNames named with parentheses and an asterisk; alice is its only member."""
        return PUNCTUATED_GROUP_DN

    @property
    def group_members(self) -> dict[str, frozenset[str]]:
        """The uids of each group's members, by group DN."""
        return {group.dn: frozenset(group.members) for group in GROUPS}

    def _config_text(self) -> str:
        lines = [f'include "{SCHEMA_DIR / name}.schema"' for name in ("core", "cosine", "nis", "inetorgperson")]
        lines += [
            # Without these two, slapd would write to /run/slapd, which belongs to the system service.
            f'pidfile "{self._workdir / "slapd.pid"}"',
            f'argsfile "{self._workdir / "slapd.args"}"',
            f'modulepath "{MODULE_DIR}"',
            "moduleload back_mdb",
            "moduleload memberof",
            f'TLSCACertificateFile "{self._tls.ca_cert}"',
            f'TLSCertificateFile "{self._tls.server_cert}"',
            f'TLSCertificateKeyFile "{self._tls.server_key}"',
            "database mdb",
            f'directory "{self._data_dir}"',
            "maxsize 16777216",
            f'suffix "{BASE_DN}"',
            f'rootdn "{ADMIN.dn}"',
            f"rootpw {ssha(ADMIN.password)}",
            # Defines memberOf (which the LDIF then sets itself, as slapadd bypasses overlays) and keeps it in step
            # with groupOfNames changed over LDAP.
            "overlay memberof",
            "access to attrs=userPassword by self write by anonymous auth by * none",
        ]
        if self._anonymous_search:
            lines.append("access to * by * read")
        else:
            # Anonymous clients may bind and nothing else: slapd answers their searches insufficientAccessRights
            # ("auth" implies "disclose", so the base is not hidden behind noSuchObject).
            lines.append(f'access to * by dn.exact="{READER.dn}" read by self read by anonymous auth by * none')
        return "\n".join(lines) + "\n"

    def _load_directory(self) -> None:
        ldif = self._workdir / "data.ldif"
        ldif.write_text(_directory_ldif(), encoding="utf-8")
        loaded = subprocess.run(
            [str(SLAPADD), "-f", str(self._config_file), "-l", str(ldif)],
            capture_output=True, text=True, check=False,
        )
        if loaded.returncode != 0:
            raise SlapdError(f"slapadd failed with status {loaded.returncode}:\n{loaded.stderr}")

    name = "slapd"
    start_error = SlapdError

    def command(self) -> list[str]:
        return [str(SLAPD), "-d", "0", "-f", str(self._config_file), "-h", f"{self.ldap_url}/ {self.ldaps_url}/"]

    def ready(self) -> bool:
        """Both ports accept connections and a search as ``reader`` over StartTLS works."""
        try:
            self._probe()
        except (OSError, LDAPException):
            return False
        return True

    def _probe(self) -> None:
        """Raise unless both ports accept connections and a search as ``reader`` over StartTLS works."""
        socket.create_connection(("127.0.0.1", self._ldaps_port), timeout=1).close()
        # Readiness only: certificate checks are what the tests themselves are about.
        server = ldap3.Server(self.ldap_url, tls=ldap3.Tls(validate=ssl.CERT_NONE), connect_timeout=1,
                              get_info=ldap3.NONE)
        # As reader, which both access policies let search.
        connection = ldap3.Connection(server, user=READER.dn, password=READER.password, receive_timeout=1)
        try:
            connection.open()
            connection.start_tls(read_server_info=False)
            if not connection.bind():
                raise SlapdError(f"bind as {READER.dn} failed: {connection.result['description']}")
            if not connection.search(BASE_DN, "(objectClass=*)", search_scope=ldap3.BASE):
                raise SlapdError(f"search of {BASE_DN} failed: {connection.result['description']}")
        finally:
            connection.unbind()

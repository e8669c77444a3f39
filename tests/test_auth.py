"""LdapAuthenticator against a real slapd: who gets in, who does not, and when the directory is unavailable."""

from __future__ import annotations

import dataclasses
import logging
import time
import unicodedata
from collections.abc import Iterator

import pytest

from gitlab_registry_usage_rest.config import LdapConfig
from gitlab_registry_usage_rest.ldap_auth import LdapAuthenticator, LdapUnavailable
from tests.support.ldap_fixtures import ldap_config
from tests.support.slapd import Slapd, make_ca

pytestmark = pytest.mark.slapd

ALICE_PASSWORD = "alice-secret-1"
BOB_PASSWORD = "bob-secret-2"
EMILE_PASSWORD = "pässwörd-✓-密码"


def url_for(server: Slapd, transport: str) -> str:
    """The ways a config can point at the test server."""
    return {
        "ldaps": server.ldaps_url,
        "starttls": server.ldap_url,
        "bare-host": server.ldaps_url.removeprefix("ldaps://"),
        "hostname": server.ldaps_url.replace("127.0.0.1", "localhost"),
        "trailing-slash": server.ldaps_url + "/",
    }[transport]


@pytest.fixture
def config(slapd: Slapd) -> LdapConfig:
    return ldap_config(slapd)


@pytest.fixture
def authenticator(config: LdapConfig) -> LdapAuthenticator:
    return LdapAuthenticator(config)




@pytest.fixture(scope="module")
def misnamed_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd whose certificate, from the trusted CA, names a host other than 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("misnamed-slapd")
    with Slapd(workdir, tls=make_ca(workdir / "tls", server_names=("ldap.example.org",))) as server:
        yield server


def assert_unavailable(authenticator: LdapAuthenticator, username: str, password: str) -> str:
    """Assert the login raises LdapUnavailable without revealing the password; return the message."""
    with pytest.raises(LdapUnavailable) as caught:
        authenticator.authenticate(username, password)
    message = str(caught.value)
    assert password not in message
    return message


@pytest.mark.parametrize("transport", ["ldaps", "starttls", "bare-host", "hostname", "trailing-slash"])
def test_valid_user_logs_in_over_each_transport(slapd: Slapd, config: LdapConfig, transport: str) -> None:
    authenticator = LdapAuthenticator(dataclasses.replace(config, host=url_for(slapd, transport)))

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True


@pytest.mark.parametrize(
    "uid", ["alice", "émile", "paren(x)", "star*"], ids=["plain", "unicode", "parentheses", "asterisk"]
)
def test_user_of_valid_group_logs_in_whatever_characters_name_and_password_hold(
    slapd: Slapd, authenticator: LdapAuthenticator, uid: str
) -> None:
    assert authenticator.authenticate(uid, slapd.users[uid].password) is True


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("alice", "wrong-password", id="wrong-password"),
        pytest.param("alice", ALICE_PASSWORD.upper(), id="password-in-other-case"),
        pytest.param("alice", " ", id="whitespace-password"),
        pytest.param("alice", BOB_PASSWORD, id="another-users-password"),
        pytest.param("bob", BOB_PASSWORD, id="gid-not-valid"),
        pytest.param("nobody", "whatever", id="unknown-user"),
        pytest.param("twin", "twin-pw", id="uid-on-two-entries"),
        # The password travels as typed: no Unicode normalization makes a different password match...
        pytest.param("émile", unicodedata.normalize("NFD", EMILE_PASSWORD), id="decomposed-unicode-password"),
        pytest.param("alice", "ａlice-secret-1", id="password-equal-only-after-nfkc"),
        # ...and text that SASLprep rejects is just a wrong password, not an error.
        pytest.param("alice", "שלום-abc", id="mixed-direction-password"),
    ],
)
def test_login_is_refused(authenticator: LdapAuthenticator, username: str, password: str) -> None:
    assert authenticator.authenticate(username, password) is False


@pytest.mark.parametrize(
    ("typed", "uid", "membership"),
    [
        *(pytest.param(typed, "alice", membership, id=f"{label}-{membership or 'no-group'}")
          for typed, label in (("alice", "as-stored"), ("Alice", "capitalised"), (" ALICE ", "upper-with-spaces"),
                               ("alice  ", "trailing-spaces"))
          for membership in (None, "memberUid", "memberOf")),
        # émile is in no posixGroup: memberUid is IA5, it cannot name him.
        pytest.param("ÉMILE", "émile", "memberOf", id="unicode-upper-case"),
    ],
)
def test_login_answers_the_name_the_directory_holds_however_it_was_typed(
    slapd: Slapd, config: LdapConfig, typed: str, uid: str, membership: str | None
) -> None:
    if membership is not None:
        config = dataclasses.replace(config, group_dn=slapd.group_dns[membership], group_membership=membership)
    authenticator = LdapAuthenticator(config)

    assert authenticator.login(typed, slapd.users[uid].password) == uid
    assert authenticator.authenticate(typed, slapd.users[uid].password) is True


def test_login_answers_the_value_of_the_configured_username_attribute(slapd: Slapd, config: LdapConfig) -> None:
    authenticator = LdapAuthenticator(dataclasses.replace(config, username_attribute="cn"))

    assert authenticator.login("PAREN(X)", slapd.users["paren(x)"].password) == "paren(x)"


def test_a_refused_login_answers_no_name(authenticator: LdapAuthenticator) -> None:
    assert authenticator.login("Alice", "wrong-password") is None
    assert authenticator.login("", ALICE_PASSWORD) is None


def test_empty_gid_attribute_disables_group_check(config: LdapConfig) -> None:
    authenticator = LdapAuthenticator(dataclasses.replace(config, gid_attribute=""))

    assert authenticator.authenticate("bob", BOB_PASSWORD) is True


# Unescaped, the first five of these would let alice (or bob, past the group check) in with their password.
@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("al*", ALICE_PASSWORD, id="prefix-wildcard"),
        pytest.param("alice)(uid=*", ALICE_PASSWORD, id="extra-condition"),
        pytest.param("bob)(|(gidNumber=*", BOB_PASSWORD, id="group-check-bypass"),
        pytest.param("*)(|(uid=*", ALICE_PASSWORD, id="or-injection"),
        pytest.param("*", ALICE_PASSWORD, id="wildcard"),
        pytest.param("alice\\00", ALICE_PASSWORD, id="escaped-nul-as-text"),
        pytest.param("alice\\", ALICE_PASSWORD, id="trailing-backslash"),
    ],
)
def test_filter_metacharacters_in_username_match_only_literally(
    authenticator: LdapAuthenticator, username: str, password: str
) -> None:
    assert authenticator.authenticate(username, password) is False


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("alice", "", id="empty-password"),
        pytest.param("", ALICE_PASSWORD, id="empty-username"),
        pytest.param("ali\0ce", ALICE_PASSWORD, id="nul-in-username"),
        pytest.param("alice", ALICE_PASSWORD + "\0", id="nul-in-password"),
        pytest.param("\ud800", ALICE_PASSWORD, id="lone-surrogate-in-username"),
        pytest.param("alice", "\ud800", id="lone-surrogate-in-password"),
    ],
)
def test_unsendable_credentials_are_refused_without_contacting_the_server(
    unused_port: int, username: str, password: str
) -> None:
    # Any request to this server would raise LdapUnavailable (see the next test), so False proves none was sent.
    authenticator = LdapAuthenticator(LdapConfig(host=f"ldaps://127.0.0.1:{unused_port}"))

    assert authenticator.authenticate(username, password) is False


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])
def test_server_not_listening_is_unavailable_at_once(unused_port: int, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{unused_port}"
    authenticator = LdapAuthenticator(LdapConfig(host=url, timeout=5.0))
    started = time.monotonic()

    message = assert_unavailable(authenticator, "alice", ALICE_PASSWORD)

    assert time.monotonic() - started < 1.0
    assert url in message


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])
def test_server_that_never_answers_is_unavailable_after_timeout(silent_port: int, scheme: str) -> None:
    authenticator = LdapAuthenticator(LdapConfig(host=f"{scheme}://127.0.0.1:{silent_port}", timeout=1.0))
    started = time.monotonic()

    assert_unavailable(authenticator, "alice", ALICE_PASSWORD)

    assert 1.0 <= time.monotonic() - started < 3.0


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_certificate_from_untrusted_ca_is_unavailable(slapd: Slapd, config: LdapConfig, transport: str) -> None:
    url = url_for(slapd, transport)
    authenticator = LdapAuthenticator(dataclasses.replace(config, host=url, ca_file=str(slapd.tls.other_ca_cert)))

    message = assert_unavailable(authenticator, "alice", ALICE_PASSWORD)

    assert url in message
    assert "certificate verify failed" in message


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_certificate_for_another_host_is_unavailable(
    misnamed_slapd: Slapd, config: LdapConfig, transport: str
) -> None:
    authenticator = LdapAuthenticator(
        dataclasses.replace(config, host=url_for(misnamed_slapd, transport), ca_file=str(misnamed_slapd.ca_file))
    )

    message = assert_unavailable(authenticator, "alice", ALICE_PASSWORD)

    assert "certificate is not valid for '127.0.0.1'" in message


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_disabled_verification_accepts_untrusted_certificate_and_is_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture, slapd: Slapd, config: LdapConfig, transport: str
) -> None:
    authenticator = LdapAuthenticator(
        dataclasses.replace(
            config,
            host=url_for(slapd, transport),
            ca_file=str(slapd.tls.other_ca_cert),
            verify_certificates=False,
        )
    )

    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.name == "gitlab_registry_usage_rest.ldap_auth"
    assert "certificates are not verified (verify_certificates = False)" in warning.getMessage()
    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True


def test_verified_certificates_log_no_warning_at_start_up(caplog: pytest.LogCaptureFixture, config: LdapConfig) -> None:
    LdapAuthenticator(config)

    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_login_works_again_once_stopped_slapd_is_back(slapd: Slapd, authenticator: LdapAuthenticator) -> None:
    slapd.stop()
    try:
        assert_unavailable(authenticator, "alice", ALICE_PASSWORD)
    finally:
        slapd.start()

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True


def test_password_never_reaches_the_log(
    caplog: pytest.LogCaptureFixture, authenticator: LdapAuthenticator, unused_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    unreachable = LdapAuthenticator(LdapConfig(host=f"ldaps://127.0.0.1:{unused_port}"))

    authenticator.authenticate("émile", EMILE_PASSWORD)
    authenticator.authenticate("alice", EMILE_PASSWORD)
    authenticator.authenticate("twin", EMILE_PASSWORD)
    authenticator.authenticate("émile", "")
    with pytest.raises(LdapUnavailable):
        unreachable.authenticate("émile", EMILE_PASSWORD)

    assert caplog.records
    assert EMILE_PASSWORD not in caplog.text

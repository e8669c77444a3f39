"""LdapAuthenticator against directories as they are run: anonymous search refused, a service account,
group membership in its four shapes, extra filters, several servers, and plain LDAP only when asked for."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import unicodedata

import ldap3
import pytest

from gitlab_registry_usage_rest.config import LdapConfig
from gitlab_registry_usage_rest.ldap_auth import LdapAuthenticator, LdapUnavailable
from tests.support.ldap_fixtures import ldap_config
from tests.support.slapd import Slapd

pytestmark = pytest.mark.slapd

ALICE_PASSWORD = "alice-secret-1"
BOB_PASSWORD = "bob-secret-2"
EMILE_PASSWORD = "pässwörd-✓-密码"
WRONG_BIND_PASSWORD = "not-the-reader-secret"
MEMBERSHIPS = ["member", "uniqueMember", "memberUid", "memberOf"]


@pytest.fixture
def anonymous_config(strict_slapd: Slapd) -> LdapConfig:
    """The original's setup: anonymous search, membership by gidNumber."""
    return ldap_config(strict_slapd)


@pytest.fixture
def config(strict_slapd: Slapd, anonymous_config: LdapConfig) -> LdapConfig:
    """The search as the reader service account."""
    return dataclasses.replace(
        anonymous_config, bind_dn=strict_slapd.reader.dn, bind_password=strict_slapd.reader.password
    )


def group_config(slapd: Slapd, config: LdapConfig, membership: str) -> LdapConfig:
    """Membership of the fixture's group of that shape instead of the gidNumber match."""
    return dataclasses.replace(
        config, gid_attribute="", group_dn=slapd.group_dns[membership], group_membership=membership
    )




def assert_unavailable(authenticator: LdapAuthenticator, username: str, password: str, *secrets: str) -> str:
    """Assert the login raises LdapUnavailable without revealing any password; return the message."""
    with pytest.raises(LdapUnavailable) as caught:
        authenticator.authenticate(username, password)
    message = str(caught.value)
    for secret in (password, *secrets):
        assert secret not in message
    return message


def test_strict_directory_lets_anonymous_clients_only_bind_and_carries_member_of(strict_slapd: Slapd) -> None:
    """What the tests below rely on: slapd's answer to an anonymous search, and memberOf loaded by slapadd."""
    server = ldap3.Server(strict_slapd.ldap_url, get_info=ldap3.NONE)
    with ldap3.Connection(server, receive_timeout=2) as anonymous:
        assert not anonymous.search(strict_slapd.base_dn, "(uid=alice)")
        assert anonymous.result["description"] == "insufficientAccessRights"
    with ldap3.Connection(server, strict_slapd.reader.dn, strict_slapd.reader.password, receive_timeout=2) as reader:
        reader.search(strict_slapd.base_dn, f"(memberOf={strict_slapd.admin_group_dn})", attributes=["uid"])
        found = {uid for entry in reader.response for uid in entry["attributes"]["uid"]}
    assert found == strict_slapd.group_members[strict_slapd.admin_group_dn]
    assert {"alice", "émile"} <= found and "bob" not in found


@pytest.mark.parametrize("password", [ALICE_PASSWORD, "wrong-password"], ids=["right-password", "wrong-password"])
def test_refused_anonymous_search_is_unavailable_not_a_wrong_password(
    caplog: pytest.LogCaptureFixture, anonymous_config: LdapConfig, password: str
) -> None:
    authenticator = LdapAuthenticator(anonymous_config)

    message = assert_unavailable(authenticator, "alice", password)

    assert "insufficientAccessRights" in message
    assert "bind_dn" in message
    assert any(record.levelno == logging.WARNING and "insufficientAccessRights" in record.getMessage()
               for record in caplog.records)


@pytest.mark.parametrize(
    ("username", "password", "accepted"),
    [
        pytest.param("alice", ALICE_PASSWORD, True, id="valid-user"),
        pytest.param("émile", EMILE_PASSWORD, True, id="unicode-name-and-password"),
        pytest.param("ALICE", ALICE_PASSWORD, True, id="uid-matches-case-insensitively"),
        pytest.param("alice", "wrong-password", False, id="wrong-password"),
        pytest.param("alice", BOB_PASSWORD, False, id="another-users-password"),
        pytest.param("émile", unicodedata.normalize("NFD", EMILE_PASSWORD), False, id="decomposed-unicode-password"),
        pytest.param("alice", "ａlice-secret-1", False, id="password-equal-only-after-nfkc"),
        pytest.param("bob", BOB_PASSWORD, False, id="gid-not-valid"),
        pytest.param("nobody", "whatever", False, id="unknown-user"),
        pytest.param("twin", "twin-pw", False, id="uid-on-two-entries"),
        pytest.param("reader", "reader-secret", False, id="service-account-is-no-user"),
    ],
)
def test_search_as_service_account(config: LdapConfig, username: str, password: str, accepted: bool) -> None:
    assert LdapAuthenticator(config).authenticate(username, password) is accepted


@pytest.mark.parametrize("password", ["", " ", "   ", "\t", "\n"], ids=["empty", "space", "spaces", "tab", "newline"])
def test_empty_and_whitespace_passwords_are_refused(config: LdapConfig, password: str) -> None:
    # Empty: refused before any traffic (it would bind anonymously). Whitespace: sent, and no user has it.
    assert LdapAuthenticator(config).authenticate("alice", password) is False


@pytest.mark.parametrize(
    "bind_dn",
    [None, "cn=nobody,dc=example,dc=org"],
    ids=["wrong-bind-password", "unknown-bind-dn"],
)
def test_service_account_that_cannot_bind_is_unavailable(
    caplog: pytest.LogCaptureFixture, config: LdapConfig, bind_dn: str | None
) -> None:
    caplog.set_level(logging.DEBUG)
    authenticator = LdapAuthenticator(
        dataclasses.replace(config, bind_dn=bind_dn or config.bind_dn, bind_password=WRONG_BIND_PASSWORD)
    )

    message = assert_unavailable(authenticator, "alice", ALICE_PASSWORD, WRONG_BIND_PASSWORD)

    assert "invalidCredentials" in message
    assert "bind_password" in message
    assert WRONG_BIND_PASSWORD not in caplog.text
    assert ALICE_PASSWORD not in caplog.text


def test_bind_dn_without_password_is_refused_up_front(config: LdapConfig) -> None:
    with pytest.raises(ValueError, match="bind_password"):
        LdapAuthenticator(dataclasses.replace(config, bind_password=""))


def test_wrong_base_dn_is_unavailable(config: LdapConfig) -> None:
    authenticator = LdapAuthenticator(dataclasses.replace(config, base_dn="ou=nowhere,dc=example,dc=org"))

    assert "noSuchObject" in assert_unavailable(authenticator, "alice", ALICE_PASSWORD)


@pytest.mark.parametrize("membership", MEMBERSHIPS)
def test_group_members_log_in_and_others_do_not(
    caplog: pytest.LogCaptureFixture, strict_slapd: Slapd, config: LdapConfig, membership: str
) -> None:
    caplog.set_level(logging.INFO)
    authenticator = LdapAuthenticator(group_config(strict_slapd, config, membership))
    members = strict_slapd.group_members[strict_slapd.group_dns[membership]]

    outcome = {uid: authenticator.authenticate(uid, user.password) for uid, user in strict_slapd.users.items()}

    assert outcome == {uid: uid in members for uid in strict_slapd.users}
    assert outcome["alice"] is True and outcome["bob"] is False
    refusals = [record for record in caplog.records if "bob" in record.getMessage()]
    assert refusals and all(record.levelno == logging.INFO for record in refusals)
    assert BOB_PASSWORD not in caplog.text


def test_member_uid_is_compared_with_the_entrys_uid_not_the_typed_name(
    strict_slapd: Slapd, config: LdapConfig
) -> None:
    # uid matches case-insensitively but memberUid (caseExactIA5Match) does not: "ALICE" is alice all the same.
    authenticator = LdapAuthenticator(group_config(strict_slapd, config, "memberUid"))

    assert authenticator.authenticate("ALICE", ALICE_PASSWORD) is True


def test_group_and_gid_both_configured_must_both_hold(strict_slapd: Slapd, config: LdapConfig) -> None:
    # bob's gid with a group bob is not in: alice (member, other gid) and bob (gid, no member) are both refused.
    authenticator = LdapAuthenticator(
        dataclasses.replace(config, valid_gid="2000", group_dn=strict_slapd.admin_group_dn)
    )

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is False
    assert authenticator.authenticate("bob", BOB_PASSWORD) is False
    assert LdapAuthenticator(dataclasses.replace(config, group_dn=strict_slapd.admin_group_dn)).authenticate(
        "alice", ALICE_PASSWORD
    ) is True


@pytest.mark.parametrize("membership", ["member", "memberOf"])
def test_group_dn_with_filter_metacharacters_is_matched_literally(
    strict_slapd: Slapd, config: LdapConfig, membership: str
) -> None:
    authenticator = LdapAuthenticator(
        dataclasses.replace(group_config(strict_slapd, config, membership), group_dn=strict_slapd.punctuated_group_dn)
    )

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True
    assert authenticator.authenticate("émile", EMILE_PASSWORD) is False


@pytest.mark.parametrize("membership", ["member", "uniqueMember", "memberUid"])
def test_missing_group_is_unavailable_when_the_group_is_looked_up(
    strict_slapd: Slapd, config: LdapConfig, membership: str
) -> None:
    wrong = dataclasses.replace(
        group_config(strict_slapd, config, membership), group_dn="cn=no-such-group,ou=groups,dc=example,dc=org"
    )

    message = assert_unavailable(LdapAuthenticator(wrong), "alice", ALICE_PASSWORD)

    assert "noSuchObject" in message and "group_dn" in message


def test_missing_group_refuses_everyone_with_member_of(strict_slapd: Slapd, config: LdapConfig) -> None:
    # With memberOf the group is only a value in the user filter: a wrong DN matches nobody, like a non-member.
    wrong = dataclasses.replace(
        group_config(strict_slapd, config, "memberOf"), group_dn="cn=no-such-group,ou=groups,dc=example,dc=org"
    )

    assert LdapAuthenticator(wrong).authenticate("alice", ALICE_PASSWORD) is False


@pytest.mark.parametrize(
    ("user_filter", "accepted"),
    [
        pytest.param("(objectClass=inetOrgPerson)", {"alice", "émile"}, id="object-class"),
        pytest.param("(!(uid=alice))", {"émile"}, id="negation"),
        pytest.param("(|(cn=émile)(cn=bob))", {"émile"}, id="unicode-value"),
        pytest.param("(objectClass=groupOfNames)", set(), id="matches-no-user"),
    ],
)
def test_user_filter_restricts_who_may_log_in(config: LdapConfig, user_filter: str, accepted: set[str]) -> None:
    authenticator = LdapAuthenticator(dataclasses.replace(config, user_filter=user_filter))
    passwords = {"alice": ALICE_PASSWORD, "émile": EMILE_PASSWORD, "bob": BOB_PASSWORD}

    assert {uid for uid, password in passwords.items() if authenticator.authenticate(uid, password)} == accepted


@pytest.mark.parametrize("membership", MEMBERSHIPS)
@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("*", ALICE_PASSWORD, id="wildcard"),
        pytest.param("admin)(uid=*", ALICE_PASSWORD, id="extra-condition"),
        pytest.param("alice)(uid=*", ALICE_PASSWORD, id="extra-condition-on-real-user"),
        pytest.param("alice\\00", ALICE_PASSWORD, id="escaped-nul-as-text"),
        pytest.param("alice\0", ALICE_PASSWORD, id="nul"),
        pytest.param("*)(memberOf=*", ALICE_PASSWORD, id="member-of-wildcard"),
        pytest.param("bob)(|(memberOf=*", BOB_PASSWORD, id="group-check-bypass"),
    ],
)
def test_filter_metacharacters_in_username_match_only_literally(
    strict_slapd: Slapd, config: LdapConfig, membership: str, username: str, password: str
) -> None:
    authenticator = LdapAuthenticator(group_config(strict_slapd, config, membership))

    assert authenticator.authenticate(username, password) is False


def test_fails_over_to_the_next_server(
    caplog: pytest.LogCaptureFixture, strict_slapd: Slapd, config: LdapConfig, unused_port: int
) -> None:
    down = f"ldap://127.0.0.1:{unused_port}"
    # Commas or spaces separate the servers; the first that answers does the whole login.
    authenticator = LdapAuthenticator(dataclasses.replace(config, host=f"{down}, {strict_slapd.ldaps_url}"))
    started = time.monotonic()

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True
    assert authenticator.authenticate("bob", BOB_PASSWORD) is False

    assert time.monotonic() - started < 1.0
    assert any(record.levelno == logging.WARNING and down in record.getMessage() for record in caplog.records)


def test_fails_over_past_a_server_that_never_answers(
    strict_slapd: Slapd, config: LdapConfig, silent_port: int
) -> None:
    # Its TCP handshake succeeds, so only the response timeout shows it is gone.
    authenticator = LdapAuthenticator(
        dataclasses.replace(config, host=f"ldaps://127.0.0.1:{silent_port} {strict_slapd.ldaps_url}", timeout=1.0)
    )
    started = time.monotonic()

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True

    assert 1.0 <= time.monotonic() - started < 3.0


def test_all_servers_down_is_unavailable_at_once(config: LdapConfig) -> None:
    with socket.create_server(("127.0.0.1", 0)) as first, socket.create_server(("127.0.0.1", 0)) as second:
        urls = [f"ldaps://127.0.0.1:{first.getsockname()[1]}", f"ldap://127.0.0.1:{second.getsockname()[1]}"]
    authenticator = LdapAuthenticator(dataclasses.replace(config, host=" ".join(urls), timeout=5.0))
    started = time.monotonic()

    message = assert_unavailable(authenticator, "alice", ALICE_PASSWORD, config.bind_password)

    assert time.monotonic() - started < 1.0
    assert all(url in message for url in urls)


def test_login_works_again_once_stopped_strict_slapd_is_back(strict_slapd: Slapd, config: LdapConfig) -> None:
    authenticator = LdapAuthenticator(group_config(strict_slapd, config, "member"))
    strict_slapd.stop()
    try:
        assert_unavailable(authenticator, "alice", ALICE_PASSWORD, config.bind_password)
    finally:
        strict_slapd.start()

    assert authenticator.authenticate("alice", ALICE_PASSWORD) is True


def test_plain_ldap_only_when_start_tls_is_off(
    caplog: pytest.LogCaptureFixture, strict_slapd: Slapd, config: LdapConfig
) -> None:
    # A CA that did not sign slapd's certificate: any TLS handshake fails, so a login proves there was none.
    untrusted = dataclasses.replace(config, host=strict_slapd.ldap_url, ca_file=str(strict_slapd.tls.other_ca_cert))

    plain = LdapAuthenticator(dataclasses.replace(untrusted, start_tls=False))

    assert plain.authenticate("émile", EMILE_PASSWORD) is True
    assert any(record.levelno == logging.WARNING and "without TLS" in record.getMessage()
               for record in caplog.records)
    message = assert_unavailable(LdapAuthenticator(untrusted), "émile", EMILE_PASSWORD, config.bind_password)
    assert "certificate verify failed" in message


def test_start_tls_off_leaves_ldaps_encrypted(
    caplog: pytest.LogCaptureFixture, strict_slapd: Slapd, config: LdapConfig
) -> None:
    authenticator = LdapAuthenticator(
        dataclasses.replace(config, ca_file=str(strict_slapd.tls.other_ca_cert), start_tls=False)
    )

    assert "certificate verify failed" in assert_unavailable(authenticator, "alice", ALICE_PASSWORD)
    assert "without TLS" not in caplog.text


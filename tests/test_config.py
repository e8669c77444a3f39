"""Config parsing: the original's keys and defaults, validation with messages naming file, section and key."""

from __future__ import annotations

import configparser
import datetime

import pytest

from gitlab_registry_usage_rest.config import (
    Config,
    ConfigError,
    default_config_text,
    effective_config_text,
    parse_config,
    parse_timedelta,
    unknown_keys,
)

SECRET = "s3cr3t-" + "x" * 40


def parse(text: str) -> Config:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parse_config(parser, source="test.conf")


def minimal(extra: str = "") -> str:
    return f"[jwt]\nsecret_key = {SECRET}\n{extra}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 weeks", datetime.timedelta(weeks=2)),
        ("2w", datetime.timedelta(weeks=2)),
        ("30 minutes", datetime.timedelta(minutes=30)),
        ("1h", datetime.timedelta(hours=1)),
        ("90s", datetime.timedelta(seconds=90)),
        ("3 Days", datetime.timedelta(days=3)),
        ("1 hour", datetime.timedelta(hours=1)),
    ],
    ids=["weeks", "w", "minutes", "h", "s", "days-any-case", "hour"],
)
def test_durations_in_the_originals_forms(text: str, expected: datetime.timedelta) -> None:
    assert parse_timedelta(text) == expected


@pytest.mark.parametrize("text", ["", "weeks", "2 fortnights", "-1h", "1.5h", "2 weeks ago"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timedelta(text)


def test_defaults_are_the_originals() -> None:
    config = parse(minimal())
    assert (config.general.socket_host, config.general.socket_port) == ("127.0.0.1", 5000)
    assert (config.general.server_prefix, config.general.debug) == ("/", False)
    assert config.general.refresh_interval == datetime.timedelta(minutes=60)
    assert (config.ldap.username_attribute, config.ldap.gid_attribute) == ("uid", "gidNumber")
    assert config.ldap.verify_certificates is True
    assert config.jwt.auth_token_expires == datetime.timedelta(weeks=2)
    assert config.registry.username == "root"


def test_original_config_file_is_accepted_as_is() -> None:
    config = parse(f"""
[general]
socket_host = 0.0.0.0
socket_port = 8080
server_prefix = /registry-usage
debug = False
[ldap]
host = ldap.example.org
base_dn = ou=people,dc=example,dc=org
valid_gid = 1234
username_attribute = uid
gid_attribute = gidNumber
[jwt]
auth_token_expires = 1 week
secret_key = {SECRET}
[registry]
gitlab_base_url = https://gitlab.example.org
registry_base_url = https://registry.example.org/
username = root
access_token = abcdefghijklmnopqrst
""")
    assert config.general.server_prefix == "/registry-usage"
    assert config.ldap.url == "ldaps://ldap.example.org"
    assert config.registry.gitlab_base_url == "https://gitlab.example.org/"
    assert config.registry.access_token == "abcdefghijklmnopqrst"


def test_ldap_url_keeps_an_explicit_scheme() -> None:
    assert parse(minimal("[ldap]\nhost = ldap://dir:389\n")).ldap.url == "ldap://dir:389"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("general", "socket_port", "http"),
        ("general", "socket_port", "70000"),
        ("general", "debug", "maybe"),
        ("general", "server_prefix", "api"),
        ("general", "refresh_interval", "0 minutes"),
        ("general", "threads", "0"),
        ("ldap", "host", "http://dir"),
        ("ldap", "verify_certificates", "perhaps"),
        ("ldap", "ca_file", "/nonexistent/ca.pem"),
        ("ldap", "timeout", "0"),
        ("registry", "gitlab_base_url", "gitlab.example.org"),
        ("registry", "collector", "magic"),
        ("jwt", "auth_token_expires", "forever"),
    ],
    ids=lambda value: str(value),
)
def test_invalid_value_names_file_section_and_key(section: str, key: str, value: str) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict({"jwt": {"secret_key": SECRET}})
    parser.read_dict({section: {key: value}})
    with pytest.raises(ConfigError) as raised:
        parse_config(parser, source="test.conf")
    assert str(raised.value).startswith(f"test.conf: [{section}] {key}: ")


@pytest.mark.parametrize(
    "secret",
    ["", "0" * 32, "x" * 40, "tooshort-but-random-1234"],
    ids=["missing", "original-default", "one-character", "short"],
)
def test_weak_secret_is_refused_with_a_way_to_make_one(secret: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(f"[jwt]\nsecret_key = {secret}\n")
    message = str(raised.value)
    assert message.startswith("test.conf: [jwt] secret_key")
    assert "secrets.token_urlsafe" in message


def test_secrets_never_appear_in_errors_or_repr() -> None:
    config = parse(minimal("[registry]\naccess_token = glpat-verysecret\n"))
    assert "glpat-verysecret" not in repr(config)
    assert SECRET not in repr(config)


def test_default_config_text_lists_every_key_commented_and_parses_back() -> None:
    text = default_config_text()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text.replace("secret_key = \n", f"secret_key = {SECRET}\n"))
    assert unknown_keys(parser) == []
    assert {"refresh_interval", "ca_file", "verify_certificates", "collector"} <= {
        key for section in parser.sections() for key in parser[section]
    }
    assert text.count("# ") >= len([line for line in text.splitlines() if " = " in line])
    parse_config(parser)


def test_unknown_keys_are_reported() -> None:
    parser = configparser.ConfigParser()
    parser.read_string("[general]\nrefresh_intervall = 5m\n[extra]\nx = 1\n")
    assert unknown_keys(parser) == ["[general] refresh_intervall", "[extra]"]


METRICS_TOKEN = "scrape-" + "t" * 40


def test_metrics_token_is_none_by_default_and_kept_out_of_repr_and_printed_config() -> None:
    assert parse(minimal()).general.metrics_token is None
    assert parse(minimal("[general]\nmetrics_token =\n")).general.metrics_token is None
    config = parse(minimal(f"[general]\nmetrics_token = {METRICS_TOKEN}\n"))
    assert config.general.metrics_token == METRICS_TOKEN
    assert METRICS_TOKEN not in repr(config)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(minimal(f"[general]\nmetrics_token = {METRICS_TOKEN}\n"))
    printed = effective_config_text(parser)
    assert "metrics_token = ********" in printed.splitlines() and METRICS_TOKEN not in printed


def test_a_short_metrics_token_is_refused_without_being_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        parse(minimal("[general]\nmetrics_token = only-thirty-one-characters-long\n"))
    message = str(raised.value)
    assert message.startswith("test.conf: [general] metrics_token: invalid value (hidden): is shorter than 32")
    assert "only-thirty-one" not in message and "secrets.token_urlsafe" in message

"""The command line: the original's options, one-line config errors with exit status 2."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest

from gitlab_registry_usage_rest import __version__
from gitlab_registry_usage_rest.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-V"]) == 0
    assert capsys.readouterr().out == f"gitlab-registry-usage-rest, version {__version__}\n"


def test_print_default_config_is_a_valid_ini_with_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-default-config"]) == 0
    parser = configparser.ConfigParser()
    parser.read_string(capsys.readouterr().out)
    assert parser.sections() == ["general", "ldap", "jwt", "registry"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "the config file does not exist"),
        ("[general\nx=1", "File contains no section headers"),
        ("[general]\nsocket_port = abc\n[jwt]\nsecret_key = " + "r4nd0m" * 8, "[general] socket_port: invalid value"),
        ("[jwt]\nsecret_key = " + "0" * 32, "[jwt] secret_key: is the well-known default"),
        ("[general]\n", "[jwt] secret_key: is required"),
    ],
    ids=["missing", "malformed", "bad-port", "original-secret", "no-secret"],
)
def test_bad_config_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, expected: str
) -> None:
    path = tmp_path / "missing.conf" if text is None else write(tmp_path, text)
    assert main(["-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"gitlab-registry-usage-rest: error: {path}")
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[general]\n")
    path.chmod(0)
    assert main(["-c", str(path)]) == 2
    assert "not readable" in capsys.readouterr().err


def test_config_path_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_secret_value_is_never_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[jwt]\nsecret_key = short-secret-value\n")
    assert main(["-c", str(path)]) == 2
    assert "short-secret-value" not in capsys.readouterr().err

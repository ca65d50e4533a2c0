"""Docker config credentials: auths forms, Docker Hub's key, and credential helpers run for real from PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from admission.errors import InputError, RegistryError
from admission.images.credentials import Credential, Credentials, server_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def _helper(folder: Path, name: str, script: str) -> None:
    """A docker-credential-<name> on PATH: a small Python program speaking the helper protocol."""
    program = folder / f"docker-credential-{name}"
    program.write_text(f"#!/usr/bin/env python3\nimport json, sys\n{script}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    ("server", "key"),
    [("https://index.docker.io/v1/", "docker.io"), ("registry-1.docker.io", "docker.io"),
     ("HTTPS://Registry.Example.com:5000/v2/", "registry.example.com:5000"), ("127.0.0.1:5000", "127.0.0.1:5000")],
)
def test_config_keys_name_registries_without_scheme_or_path(server: str, key: str) -> None:
    assert server_key(server) == key


async def test_auth_field_is_base64_user_colon_password_and_may_contain_colons() -> None:
    creds = Credentials.from_config({"auths": {"registry.example.com": {"auth": _b64("bob:pa:ss")}}})
    assert await creds.get("registry.example.com") == Credential("bob", "pa:ss")


async def test_hub_key_of_docker_login_serves_docker_io() -> None:
    creds = Credentials.from_config({"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}})
    assert await creds.get("docker.io") == Credential("u", "p")
    assert await creds.get("registry-1.docker.io") == Credential("u", "p")


async def test_identitytoken_entry_becomes_an_identity_token() -> None:
    creds = Credentials.from_config({"auths": {"r.example": {"auth": _b64("u:"), "identitytoken": "refresh"}}})
    found = await creds.get("r.example")
    assert found is not None and found.identity_token == "refresh"


async def test_credentials_are_only_for_their_own_registry() -> None:
    creds = Credentials.from_config({"auths": {"a.example": {"auth": _b64("u:p")}}})
    assert await creds.get("b.example") is None
    assert await creds.get("a.example:5000") is None


def test_secrets_do_not_show_in_repr() -> None:
    assert "hunter2" not in repr(Credential("u", "hunter2", "tok-hunter2"))


def test_bad_auth_field_is_an_input_error_naming_the_entry() -> None:
    with pytest.raises(InputError) as caught:
        Credentials.from_config({"auths": {"r.example": {"auth": "!!not base64"}}}, source="config.json")
    assert caught.value.path == "auths.r.example.auth"


def test_explicit_config_file_that_is_not_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{\n  nope")
    with pytest.raises(InputError) as caught:
        Credentials.load(path)
    assert caught.value.file == str(path) and caught.value.line == 2


def test_missing_explicit_config_is_an_input_error_but_missing_default_is_none(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        Credentials.load(tmp_path / "absent.json")
    assert Credentials.load(environ={"DOCKER_CONFIG": str(tmp_path / "nothing")}).source.endswith("config.json")


async def test_docker_config_env_names_the_folder(tmp_path: Path) -> None:
    _write(tmp_path / "config.json", {"auths": {"r.example": {"auth": _b64("u:p")}}})
    creds = Credentials.load(environ={"DOCKER_CONFIG": str(tmp_path)})
    assert await creds.get("r.example") == Credential("u", "p")


async def test_cred_helper_gets_the_server_url_on_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, "echo", 'server = sys.stdin.read()\nassert sys.argv[1] == "get"\n'
                              'print(json.dumps({"ServerURL": server, "Username": "user-for-" + server, "Secret": "s"}))')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    creds = Credentials.from_config({"credHelpers": {"r.example:5000": "echo"}})
    assert await creds.get("r.example:5000") == Credential("user-for-r.example:5000", "s")
    hub = Credentials.from_config({"credsStore": "echo"})
    assert await hub.get("docker.io") == Credential("user-for-https://index.docker.io/v1/", "s")


async def test_helper_token_username_means_identity_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, "tok", 'sys.stdin.read()\nprint(json.dumps({"Username": "<token>", "Secret": "refresh"}))')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = await Credentials.from_config({"credsStore": "tok"}).get("r.example")
    assert found == Credential(identity_token="refresh")


async def test_helper_not_found_falls_back_to_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, "empty", 'sys.stdin.read()\nprint("credentials not found in native keychain")\nsys.exit(1)')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    creds = Credentials.from_config({"credsStore": "empty", "auths": {"r.example": {"auth": _b64("u:p")}}})
    assert await creds.get("r.example") == Credential("u", "p")
    assert await creds.get("other.example") is None


async def test_helper_answers_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = tmp_path / "count"
    _helper(tmp_path, "counting", f'sys.stdin.read()\nopen({str(count)!r}, "a").write("x")\n'
                                  'print(json.dumps({"Username": "u", "Secret": "s"}))')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    creds = Credentials.from_config({"credsStore": "counting"})
    for _ in range(3):
        await creds.get("r.example")
    assert count.read_text() == "x"


async def test_missing_or_failing_helper_is_an_auth_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, "broken", 'sys.stdin.read()\nprint("keychain locked")\nsys.exit(1)')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RegistryError) as missing:
        await Credentials.from_config({"credsStore": "not-installed-anywhere"}).get("r.example")
    assert missing.value.reason == "auth" and "docker-credential-not-installed-anywhere" in str(missing.value)
    with pytest.raises(RegistryError) as failing:
        await Credentials.from_config({"credHelpers": {"r.example": "broken"}}).get("r.example")
    assert "keychain locked" in str(failing.value)

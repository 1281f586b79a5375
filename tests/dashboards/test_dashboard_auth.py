"""Dashboard users: scrypt hashes with a salt each, no plaintext, demo users for development."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import yaml

from dashboards.auth import (
    DEMO_PASSWORD_ENV,
    AuthError,
    add_user,
    authenticate,
    default_users_path,
    demo_users,
    ensure_users_file,
    hash_password,
    load_users,
    remove_user,
    verify_password,
)
from rainbow.settings import Lake


def test_hash_is_salted_scrypt_and_verifies() -> None:
    a, b = hash_password("secret-123"), hash_password("secret-123")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # a fresh salt each time
    assert verify_password("secret-123", a) and verify_password("secret-123", b)
    assert not verify_password("secret-124", a)
    assert not verify_password("secret-123", "plaintext") and not verify_password("x", "md5$1$2$3$4$5")


def test_add_user_writes_hashes_only_and_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "users.yaml"
    add_user(path, "staff_013", "street_staff", "pass-word-1", street="长白新村街道")
    add_user(path, "leader", "leadership", "pass-word-2", display_name="区领导")
    text = path.read_text(encoding="utf-8")
    assert "pass-word" not in text
    users = load_users(path)
    assert users["staff_013"].street == "310110013000"  # a Chinese street name resolves to its code
    assert users["staff_013"].display_name == "长白新村街道工作人员"
    assert users["leader"].display_name == "区领导" and users["leader"].street is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert authenticate(users, "staff_013", "pass-word-1") == users["staff_013"]
    assert authenticate(users, "staff_013", "pass-word-2") is None
    assert authenticate(users, "nobody", "pass-word-1") is None
    # replacing a user keeps one entry with the new password
    add_user(path, "leader", "leadership", "new-password")
    users = load_users(path)
    assert len(users) == 2 and authenticate(users, "leader", "new-password") is not None
    assert remove_user(path, "leader") and not remove_user(path, "leader")


@pytest.mark.parametrize(
    ("role", "street", "password", "message"),
    [
        ("street_staff", None, "long-enough", "必须指定所属街道"),
        ("leadership", "310110013000", "long-enough", "只有街道工作人员"),
        ("admin", None, "long-enough", "未知角色"),
        ("street_staff", "火星街道", "long-enough", "未知街道"),
        ("steward", None, "short", "至少"),
    ],
)
def test_add_user_refuses_bad_entries(
    tmp_path: Path, role: str, street: str | None, password: str, message: str
) -> None:
    with pytest.raises(AuthError, match=message):
        add_user(tmp_path / "u.yaml", "someone", role, password, street=street)


def test_a_plaintext_password_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(
        yaml.safe_dump({"users": [{"username": "x", "role": "steward", "password": "hunter22"}]}),
        encoding="utf-8",
    )
    with pytest.raises(AuthError, match="明文"):
        load_users(path)


def test_demo_users_take_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEMO_PASSWORD_ENV, "demo-password-9")
    path = default_users_path(Lake(tmp_path))
    assert path == tmp_path / "secrets" / "dashboard_users.yaml"
    assert ensure_users_file(path) and not ensure_users_file(path)  # created once
    users = load_users(path)
    assert {u.role for u in users.values()} == {"steward", "leadership", "analyst", "street_staff"}
    assert sum(u.role == "street_staff" for u in users.values()) == 12  # one per street
    assert all(authenticate(users, name, "demo-password-9") for name in users)
    assert "demo-password-9" not in path.read_text(encoding="utf-8")


def test_demo_users_without_the_variable_get_random_passwords_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(DEMO_PASSWORD_ENV, raising=False)
    path = tmp_path / "users.yaml"
    with caplog.at_level(logging.WARNING, logger="dashboards.auth"):
        ensure_users_file(path)
    message = caplog.records[-1].getMessage()
    assert "DEVELOPMENT" in message
    issued = dict(pair.split("=", 1) for pair in message.rsplit(": ", 1)[1].split(", "))
    users = load_users(path)
    assert set(issued) == {name for name, *_ in demo_users()} == set(users)
    assert authenticate(users, "steward", issued["steward"]) is not None
    assert issued["steward"] not in path.read_text(encoding="utf-8")

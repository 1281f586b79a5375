"""Dashboard users: a YAML credentials file with salted scrypt hashes, no plaintext passwords.

The file (default ``<lake>/secrets/dashboard_users.yaml``, mode 600) lists users::

    version: 1
    users:
      - username: staff_001
        display_name: 定海路街道工作人员
        role: street_staff          # steward | street_staff | leadership | analyst | third_party
        street: "310110001000"      # street_staff only: the one street the user sees
        password_hash: scrypt$16384$8$1$<salt hex>$<hash hex>

Passwords are hashed with :func:`hashlib.scrypt` and a random 16-byte salt per user;
:func:`verify_password` compares in constant time. :func:`add_user` adds or replaces a
user (the CLI's ``rainbow user add``).

Development: when the file does not exist, :func:`ensure_users_file` creates demo users
(a steward, a leader, an analyst and one street worker per street). Their password is
``$RAINBOW_DEMO_PASSWORD`` when set; otherwise one random password per user, printed once
to the log with a warning. Never use demo users in production: create the file with
``rainbow user add`` instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from rainbow.io import write_bytes_atomic
from rainbow.settings import Lake

log = logging.getLogger(__name__)

USERS_FILE = "dashboard_users.yaml"
USERS_FILE_ENV = "RAINBOW_DASHBOARD_USERS"
DEMO_PASSWORD_ENV = "RAINBOW_DEMO_PASSWORD"
ROLES: dict[str, str] = {
    "steward": "数据管理员",
    "street_staff": "街道工作人员",
    "leadership": "领导决策层",
    "analyst": "数据分析人员",
    "third_party": "授权第三方",
}
MIN_PASSWORD_LENGTH = 8
# scrypt cost: 16 MiB and ~50 ms per check on a small machine
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32


class AuthError(ValueError):
    """A user or credentials file that cannot be accepted."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    street: str | None
    password_hash: str
    recipient: str | None = None  # third_party: the export recipient the user stands for


# --------------------------------------------------------------------------- hashing


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex) of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES)
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        key = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(bytes.fromhex(expected)),
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(key.hex(), expected)


# --------------------------------------------------------------------------- the file


def default_users_path(lake: Lake) -> Path:
    """``$RAINBOW_DASHBOARD_USERS`` or ``<lake>/secrets/dashboard_users.yaml``."""
    override = os.environ.get(USERS_FILE_ENV)
    return Path(override).expanduser() if override else lake.root / "secrets" / USERS_FILE


def street_names() -> dict[str, str]:
    """Current street code -> Chinese name (the 12 streets; no retired codes)."""
    from schemas import load_registry

    return {v.code: v.zh for v in load_registry().codelist("street").values if v.valid_until is None}


def _validate(user: User) -> None:
    if not user.username or not user.username.replace("_", "").replace("-", "").isalnum():
        raise AuthError(f"用户名只能包含字母、数字、下划线或连字符: {user.username!r}")
    if user.role not in ROLES:
        raise AuthError(f"未知角色 {user.role!r}；可选: {', '.join(ROLES)}")
    if user.role == "street_staff":
        if not user.street:
            raise AuthError("街道工作人员必须指定所属街道 (street)")
        if user.street not in street_names():
            raise AuthError(f"未知街道代码 {user.street!r}")
    elif user.street:
        raise AuthError(f"只有街道工作人员可以指定街道（{user.role} 不行）")
    if not user.password_hash.startswith("scrypt$"):
        raise AuthError(f"用户 {user.username} 的密码不是 scrypt 哈希（不接受明文密码）")


def load_users(path: Path) -> dict[str, User]:
    """Users by name. Raises :class:`AuthError` for an invalid file (never skips a bad entry)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("users", []), list):
        raise AuthError(f"{path}: expected a mapping with a 'users' list")
    users: dict[str, User] = {}
    for entry in data.get("users") or []:
        if not isinstance(entry, dict):
            raise AuthError(f"{path}: every user is a mapping")
        if "password" in entry:
            raise AuthError(
                f"{path}: 用户 {entry.get('username')} 含明文密码字段 'password'，请改用 password_hash"
            )
        street = entry.get("street")
        recipient = entry.get("recipient")
        user = User(
            username=str(entry.get("username", "")),
            display_name=str(entry.get("display_name") or entry.get("username", "")),
            role=str(entry.get("role", "")),
            street=str(street) if street is not None else None,
            password_hash=str(entry.get("password_hash", "")),
            recipient=str(recipient) if recipient is not None else None,
        )
        _validate(user)
        if user.username in users:
            raise AuthError(f"{path}: 用户名重复 {user.username}")
        users[user.username] = user
    return users


def _dump(users: dict[str, User]) -> bytes:
    entries = []
    for u in users.values():
        entry: dict[str, str] = {"username": u.username, "display_name": u.display_name, "role": u.role}
        if u.street:
            entry["street"] = u.street
        if u.recipient:
            entry["recipient"] = u.recipient
        entry["password_hash"] = u.password_hash
        entries.append(entry)
    text = "# 彩虹桥数据看板用户（密码为 scrypt 哈希，不含明文）。用 `rainbow user add` 维护。\n"
    text += yaml.safe_dump({"version": 1, "users": entries}, allow_unicode=True, sort_keys=False)
    return text.encode("utf-8")


def _write(path: Path, users: dict[str, User]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.parent.chmod(stat.S_IRWXU)
    write_bytes_atomic(path, _dump(users))
    with contextlib.suppress(OSError):
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def add_user(
    path: Path,
    username: str,
    role: str,
    password: str,
    street: str | None = None,
    display_name: str | None = None,
    recipient: str | None = None,
) -> User:
    """Add ``username`` to the credentials file at ``path`` (replacing a user of that name).

    ``street`` may be a code (``310110001000``) or a Chinese name (``定海路街道`` / ``定海路``).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"密码至少 {MIN_PASSWORD_LENGTH} 个字符")
    code = resolve_street(street) if street else None
    users = load_users(path) if path.exists() else {}
    default_name = f"{street_names()[code]}工作人员" if code else ROLES.get(role, role)
    user = User(
        username=username,
        display_name=display_name or default_name,
        role=role,
        street=code,
        password_hash=hash_password(password),
        recipient=recipient,
    )
    _validate(user)
    users[username] = user
    _write(path, users)
    return user


def remove_user(path: Path, username: str) -> bool:
    """Remove ``username``; False when there was no such user."""
    users = load_users(path) if path.exists() else {}
    if users.pop(username, None) is None:
        return False
    _write(path, users)
    return True


def resolve_street(text: str) -> str:
    """A street code from a code or a Chinese name (with or without 街道)."""
    names = street_names()
    if text in names:
        return text
    for code, zh in names.items():
        if text in (zh, zh.removesuffix("街道")):
            return code
    raise AuthError(f"未知街道 {text!r}")


def authenticate(users: dict[str, User], username: str, password: str) -> User | None:
    """The user when the password matches, else None (same work for unknown names)."""
    user = users.get(username.strip())
    if user is None:
        verify_password(password, _DUMMY_HASH)  # no timing hint that the name does not exist
        return None
    return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = "scrypt$16384$8$1$" + "00" * _SALT_BYTES + "$" + "00" * _KEY_BYTES


# --------------------------------------------------------------------------- development users


def demo_users() -> list[tuple[str, str, str | None, str]]:
    """(username, role, street, display name) of the development users."""
    out: list[tuple[str, str, str | None, str]] = [
        ("steward", "steward", None, "数据管理员（演示）"),
        ("leader", "leadership", None, "区民政局领导（演示）"),
        ("analyst", "analyst", None, "数据分析员（演示）"),
    ]
    for code, zh in street_names().items():
        out.append((f"staff_{code[6:9]}", "street_staff", code, f"{zh}工作人员（演示）"))
    return out


def ensure_users_file(path: Path) -> bool:
    """Create the development users when ``path`` does not exist; True when it was created.

    Password: ``$RAINBOW_DEMO_PASSWORD`` for every demo user, or a random one per user
    logged once as a warning (development only).
    """
    if path.exists():
        return False
    shared = os.environ.get(DEMO_PASSWORD_ENV)
    if shared is not None and len(shared) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"{DEMO_PASSWORD_ENV} 至少 {MIN_PASSWORD_LENGTH} 个字符")
    users: dict[str, User] = {}
    issued: list[tuple[str, str]] = []
    for username, role, street, display in demo_users():
        password = shared or secrets.token_urlsafe(9)
        users[username] = User(username, display, role, street, hash_password(password))
        if not shared:
            issued.append((username, password))
    _write(path, users)
    if shared:
        log.warning(
            "开发用演示账号已创建 / demo dashboard users created in %s (password from $%s): %s",
            path,
            DEMO_PASSWORD_ENV,
            ", ".join(users),
        )
    else:
        log.warning(
            "开发用演示账号已创建（仅限开发环境！）/ DEVELOPMENT demo users created in %s; "
            "passwords shown once: %s",
            path,
            ", ".join(f"{u}={p}" for u, p in issued),
        )
    return True

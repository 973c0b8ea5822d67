"""User accounts: argon2id password hashes and per-user API keys in the ``users`` table.

Hashing happens on the caller's thread (it is deliberately slow); only the
INSERT/UPDATE goes through the Store's single writer.

An API key (``ak-`` + 43 random URL-safe characters, 256 bits) lets an API
caller rate as that account: ``Authorization: Bearer ak-...``. Only its
sha256 is stored (a key has far too much entropy to guess, so a fast hash is
enough, and a lookup by hash compares no secret byte by byte); it is shown
once, when made. Making a new key replaces the old one.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from feedback.store import NotFoundError, Store, ValidationError, utc_now

USER_ROLES = ("user", "admin")
MIN_PASSWORD_CHARS = 8
# argon2 accepts any length; the cap only stops multi-megabyte "passwords".
MAX_PASSWORD_CHARS = 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
API_KEY_PREFIX = "ak-"
_API_KEY_RE = re.compile(r"^ak-[A-Za-z0-9_-]{43}$")

_hasher = PasswordHasher()
# Verified against when the user doesn't exist, so a miss costs as much
# time as a wrong password and names can't be probed by timing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    return password


def create_user(store: Store, name: str, password: str, role: str = "user") -> int:
    """Create a user and return its id; a taken name raises ValidationError."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationError("name must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    if role not in USER_ROLES:
        raise ValidationError(f"role must be one of {USER_ROLES}, got {role!r}")
    password_hash = _hasher.hash(_check_password(password))

    def fn(db: sqlite_utils.Database) -> int:
        if db.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise ValidationError(f"user {name!r} already exists")
        cursor = db.execute(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
            [name, password_hash, role, utc_now()],
        )
        return int(cursor.lastrowid or 0)

    return store.write(fn)


def verify_user(store: Store, name: str, password: str) -> dict[str, str] | None:
    """{"name", "role"} if the password is right, else None (same cost either way)."""
    if not isinstance(password, str):
        password = ""  # still verified below, so a bad call costs the same
    rows = store.query("SELECT name, role, password_hash FROM users WHERE name = ?", [name])
    user = rows[0] if rows else None
    stored = user["password_hash"] if user and user["password_hash"] else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is _DUMMY_HASH:
        return None
    if _hasher.check_needs_rehash(stored):
        # Hash parameters were raised since this one was made: upgrade it now
        # that we have the plaintext.
        new_hash = _hasher.hash(password)
        store.write(
            lambda db: db.execute("UPDATE users SET password_hash = ? WHERE name = ?", [new_hash, name])
        )
    return {"name": user["name"], "role": user["role"]}


def account_of_rater(store: Store, rater: str) -> str | None:
    """The account that owns rater name ``rater``, else None: ``alice`` and its sub-labels ``alice/...``
    belong to account ``alice``. One lookup on the unique (indexed) ``users.name``; a name that cannot be
    an account costs no query."""
    name = rater.split("/", 1)[0] if isinstance(rater, str) else ""
    if not _NAME_RE.match(name):
        return None
    rows = store.query("SELECT name FROM users WHERE name = ?", [name])
    return str(rows[0]["name"]) if rows else None


def get_role(store: Store, name: str) -> str | None:
    rows = store.query("SELECT role FROM users WHERE name = ?", [name])
    return rows[0]["role"] if rows else None


def ensure_admin(store: Store, password: str | None) -> str | None:
    """Create user 'admin' if no admin exists; return the password set, else None.

    The caller prints the returned password once. With ``password=None`` a
    random one is generated. If a non-admin account is already called
    'admin', it is promoted and its password reset, so only the returned
    password opens it.
    """
    new_password = _check_password(password) if password is not None else secrets.token_urlsafe(12)
    # Cheap check first so a normal start doesn't pay for hashing.
    if store.query("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1"):
        return None
    password_hash = _hasher.hash(new_password)

    def fn(db: sqlite_utils.Database) -> bool:
        # Re-checked inside the write: another process may have just done it.
        if db.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone():
            return False
        db.execute(
            """
            INSERT INTO users (name, password_hash, role, created_at) VALUES ('admin', ?, 'admin', ?)
            ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, role = 'admin'
            """,
            [password_hash, utc_now()],
        )
        return True

    return new_password if store.write(fn) else None


# -- API keys ----------------------------------------------------------------


def is_api_key(token: str) -> bool:
    """Whether a bearer token claims to be one of our API keys (it may still be unknown or revoked)."""
    return token.startswith(API_KEY_PREFIX)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key(store: Store, name: str) -> str:
    """Give user ``name`` a new API key (replacing any old one) and return it; only its hash is kept."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key_hash = hash_api_key(key)

    def fn(db: sqlite_utils.Database) -> None:
        cursor = db.execute(
            "UPDATE users SET api_key_hash = ?, api_key_created_at = ? WHERE name = ?",
            [key_hash, utc_now(), name],
        )
        if cursor.rowcount != 1:
            raise NotFoundError(f"no user {name!r}; create it first")

    store.write(fn)
    return key


def revoke_api_key(store: Store, name: str) -> bool:
    """Remove user ``name``'s API key; False if the user had none (unknown user: NotFoundError)."""

    def fn(db: sqlite_utils.Database) -> bool:
        row = db.execute("SELECT api_key_hash FROM users WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFoundError(f"no user {name!r}")
        db.execute("UPDATE users SET api_key_hash = NULL, api_key_created_at = NULL WHERE name = ?", [name])
        return row[0] is not None

    return store.write(fn)


def verify_api_key(store: Store, key: str) -> dict[str, str] | None:
    """{"name", "role"} of the key's user, or None for an unknown, revoked or malformed key."""
    if not isinstance(key, str) or not _API_KEY_RE.match(key):
        return None
    # Looked up by its hash: the database never compares the secret itself.
    rows = store.query("SELECT name, role FROM users WHERE api_key_hash = ?", [hash_api_key(key)])
    return {"name": rows[0]["name"], "role": rows[0]["role"]} if rows else None


def list_users(store: Store) -> list[dict[str, object]]:
    """Every account: name, role, created_at, and whether it has an API key (never the key)."""
    rows = store.query(
        "SELECT name, role, created_at, api_key_hash IS NOT NULL AS has_api_key, api_key_created_at"
        " FROM users ORDER BY name"
    )
    return [{**row, "has_api_key": bool(row["has_api_key"])} for row in rows]

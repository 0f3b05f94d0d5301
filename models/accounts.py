"""Staff accounts for the web door: passwords, API tokens and sign-in attempts.

Passwords are hashed with argon2 (pwdlib). A token is a long random secret shown once; only
its SHA-256 is stored (it is not guessable, so a slow hash buys nothing and would cost every
API call). Sign-in attempts are rows, so a rate limit holds across replicas.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from pwdlib import PasswordHash
from sqlalchemy import Boolean, ForeignKey, Index, String, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import NotFound, PropflowError
from models.db import Base, UTCDateTime
from models.org import Staff
from models.outbox import audit

MIN_PASSWORD = 8
MAX_PASSWORD = 200
TOKEN_PREFIX = "pft_"
# A token's last use is written at most this often: not one write per API call.
LAST_USED_EVERY = timedelta(minutes=1)
# Failed sign-ins allowed in the window, per login and per client address (a shared office
# address carries several people's typos).
WINDOW = timedelta(minutes=5)
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_ADDRESS = 20


class Credential(Base):
    """A staff member's password; `login` is an optional name to sign in with besides the id."""

    __tablename__ = "staff_credentials"
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True)
    login: Mapped[str | None] = mapped_column(String(60), unique=True, nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SignInAttempt(Base):
    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_login_at", "login", "at"),
        Index("ix_sign_in_attempts_address_at", "address", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    login: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean)


@lru_cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()  # argon2id with the library's current parameters


@lru_cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def check_password_rule(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PropflowError(f"password：密码至少 {MIN_PASSWORD} 个字符（现为 {len(password)} 个）；"
                            f"expected at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise PropflowError(f"password：密码最多 {MAX_PASSWORD} 个字符；"
                            f"expected at most {MAX_PASSWORD} characters", field="password")
    if not password.strip():
        raise PropflowError("password：密码不能全是空白；expected visible characters",
                            field="password")


def hash_password(password: str) -> str:
    check_password_rule(password)
    return _hasher().hash(password)


def set_password(session: Session, staff: Staff, password: str, *, now: datetime,
                 actor: str, login: str | None = None, password_hash: str | None = None) -> None:
    """Set (or replace) a staff member's password; `password_hash` lets the demo seed hash
    one password once for every demo account."""
    hashed = password_hash or hash_password(password)
    if login is not None:
        check_login(session, staff.id, login)
    cred = session.get(Credential, staff.id)
    if cred is None:
        session.add(Credential(staff_id=staff.id, login=login, password_hash=hashed, set_at=now))
    else:
        cred.password_hash, cred.set_at = hashed, now
        if login is not None:
            cred.login = login
    audit(session, at=now, actor=actor, action="password_set", staff=staff.id)
    session.flush()


def check_login(session: Session, staff_id: int, login: str) -> None:
    if not login or login.isdigit() or len(login) > 60 or any(c.isspace() for c in login):
        raise PropflowError(f"login：{login!r} 不是有效的登录名；expected 1-60 characters, "
                            "no spaces, not all digits (digits are staff ids)", field="login")
    holder = session.scalar(select(Credential.staff_id).where(Credential.login == login))
    if holder is not None and holder != staff_id:
        raise PropflowError(f"login：登录名 {login!r} 已被员工 {holder} 使用；"
                            "expected a login nobody else has", field="login")


def find_staff(session: Session, login: str) -> Staff | None:
    """A staff member by id (digits) or by login name; None when there is none."""
    login = login.strip()
    if login.isdigit():
        return session.get(Staff, int(login))
    staff_id = session.scalar(select(Credential.staff_id).where(Credential.login == login))
    return session.get(Staff, staff_id) if staff_id is not None else None


def authenticate(session: Session, login: str, password: str) -> Staff | None:
    """The active staff member whose password this is, or None. An unknown login costs the
    same hash as a known one, so the time taken does not tell which staff ids exist."""
    person = find_staff(session, login)
    cred = session.get(Credential, person.id) if person is not None else None
    if cred is None or person is None:
        _hasher().verify(password, _dummy_hash())
        return None
    if not _hasher().verify(password, cred.password_hash) or not person.active:
        return None
    return person


def version_of(cred: Credential) -> str:
    """Changes with every new password (a new salt each time): sessions carry it, so a
    password change ends the sessions opened before it."""
    return hashlib.sha256(cred.password_hash.encode()).hexdigest()[:16]


def login_of(session: Session, staff_id: int) -> str | None:
    return session.scalar(select(Credential.login).where(Credential.staff_id == staff_id))


# --- sign-in attempts -----------------------------------------------------------------

def record_attempt(session: Session, *, login: str, address: str, ok: bool,
                   now: datetime) -> None:
    session.add(SignInAttempt(at=now, login=login[:100], address=address[:64], ok=ok))
    session.flush()


def blocked_for(session: Session, *, login: str, address: str, now: datetime) -> int:
    """Seconds until another sign-in may be tried (0: now). Counts failures in the window:
    per login since its last success, per address regardless."""
    since = now - WINDOW
    last_ok = session.scalar(select(func.max(SignInAttempt.at)).where(
        SignInAttempt.login == login[:100], SignInAttempt.ok.is_(True),
        SignInAttempt.at >= since))
    wait = 0
    for column, value, limit, after in (
            (SignInAttempt.login, login[:100], MAX_FAILURES_PER_LOGIN, last_ok or since),
            (SignInAttempt.address, address[:64], MAX_FAILURES_PER_ADDRESS, since)):
        failures = list(session.scalars(
            select(SignInAttempt.at).where(column == value, SignInAttempt.ok.is_(False),
                                           SignInAttempt.at > after)
            .order_by(SignInAttempt.at.desc()).limit(limit)))
        if len(failures) >= limit:
            # Free again once the oldest of the last `limit` failures leaves the window.
            wait = max(wait, 1, math.ceil((failures[-1] + WINDOW - now).total_seconds()))
    return wait


# --- API tokens -----------------------------------------------------------------------

def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, staff: Staff, *, name: str, now: datetime,
                 actor: str) -> tuple[ApiToken, str]:
    """A new token and its secret; the secret is not kept and cannot be shown again."""
    if len(name) > 100:
        raise PropflowError("name：令牌名称最多 100 个字符；expected at most 100 characters",
                            field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(staff_id=staff.id, name=name, token_hash=_digest(secret), created_at=now)
    session.add(token)
    session.flush()
    audit(session, at=now, actor=actor, action="token_created", staff=staff.id, token=token.id,
          name=name)
    return token, secret


def find_token(session: Session, secret: str) -> tuple[ApiToken, Staff] | None:
    """The live token and its active staff member; None for anything else. Only reads, so
    an API call needs no write lock (touch_token notes the use, at most once a minute)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked_at is not None:
        return None
    person = session.get(Staff, token.staff_id)
    if person is None or not person.active:
        return None
    return token, person


def stale_use(token: ApiToken, now: datetime) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY


def touch_token(session: Session, token_id: int, *, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id)
                    .values(last_used_at=now).execution_options(synchronize_session=False))


def revoke_token(session: Session, token_id: int, *, now: datetime, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token：没有编号为 {token_id} 的令牌；expected an id from "
                       "`propflow tokens list`", field="token")
    if token.revoked_at is None:
        token.revoked_at = now
        audit(session, at=now, actor=actor, action="token_revoked", staff=token.staff_id,
              token=token.id)
        session.flush()
    return token


def list_tokens(session: Session, staff_id: int | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if staff_id is not None:
        query = query.where(ApiToken.staff_id == staff_id)
    return list(session.scalars(query))

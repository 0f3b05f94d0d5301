"""Sign-in, passwords and API tokens: what the CLI and the web door ask of staff accounts.

Each function is one transaction, as in propflow.actions; the web door maps the errors to
401 (SignInFailed) and 429 (TooManyAttempts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.clock import now
from core.errors import PropflowError
from models import accounts, directory
from models.db import unit_of_work
from models.org import Staff
from models.outbox import audit


class SignInFailed(PropflowError):
    def __init__(self) -> None:
        # Which of the two was wrong is not said: it would tell who has an account.
        super().__init__("login/password：登录名或密码不正确；expected a staff id or login name "
                         "and its password", field="password", code="sign_in_failed")


class TooManyAttempts(PropflowError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"登录失败次数过多，请 {retry_after} 秒后再试；expected at most "
                         f"{accounts.MAX_FAILURES_PER_LOGIN} failed sign-ins in "
                         f"{int(accounts.WINDOW.total_seconds() // 60)} minutes",
                         field="login", code="too_many_attempts")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    staff_id: int
    name: str
    login: str | None
    version: str  # of the password: a session from before a change is refused


def credential_version(session: Any, staff_id: int) -> str | None:
    cred = session.get(accounts.Credential, staff_id)
    return accounts.version_of(cred) if cred is not None else None


def sign_in(login: str, password: str, *, address: str) -> SignedIn:
    """Check a password, under the rate limit; every attempt is recorded, failures audited."""
    login = (login or "").strip()
    at = now()
    with unit_of_work(write=False) as session:
        wait = accounts.blocked_for(session, login=login, address=address, now=at)
        person = None if wait else accounts.authenticate(session, login, password or "")
        signed = None
        if person is not None:
            signed = SignedIn(person.id, person.name, accounts.login_of(session, person.id),
                              credential_version(session, person.id) or "")
    with unit_of_work() as session:
        if wait:
            audit(session, at=at, actor="anonymous", action="sign_in_refused", login=login,
                  address=address, retry_after=wait)
        else:
            accounts.record_attempt(session, login=login, address=address,
                                    ok=signed is not None, now=at)
            if signed is None:
                audit(session, at=at, actor="anonymous", action="sign_in_failed", login=login,
                      address=address)
            else:
                audit(session, at=at, actor=f"staff:{signed.staff_id}", action="signed_in",
                      address=address)
    if wait:
        raise TooManyAttempts(wait)
    if signed is None:
        raise SignInFailed()
    return signed


def set_password(staff_id: int | str, password: str, *, actor: str,
                 login: str | None = None) -> dict[str, Any]:
    with unit_of_work() as session:
        person = directory.staff(session, staff_id, field="staff")
        accounts.set_password(session, person, password, now=now(), actor=actor, login=login)
        return {"staff": person.id, "name": person.name,
                "login": accounts.login_of(session, person.id)}


def token_row(token: accounts.ApiToken, name: str | None = None) -> dict[str, Any]:
    return {"id": token.id, "staff": token.staff_id, "staff_name": name, "name": token.name,
            "created_at": token.created_at.isoformat(),
            "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None}


def create_token(staff_id: int | str, *, name: str = "", actor: str) -> dict[str, Any]:
    with unit_of_work() as session:
        person = directory.staff(session, staff_id, field="staff")
        token, secret = accounts.create_token(session, person, name=name, now=now(), actor=actor)
        return token_row(token, person.name) | {"token": secret}


def list_tokens(staff_id: int | str | None = None) -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        person = directory.staff(session, staff_id, field="as") if staff_id is not None else None
        tokens = accounts.list_tokens(session, person.id if person else None)
        names = {s.id: s.name for s in session.query(Staff).filter(
            Staff.id.in_({t.staff_id for t in tokens}))}
        return [token_row(t, names.get(t.staff_id)) for t in tokens]


def revoke_token(token_id: int, *, actor: str) -> dict[str, Any]:
    with unit_of_work() as session:
        return token_row(accounts.revoke_token(session, token_id, now=now(), actor=actor))


def token_principal(secret: str) -> Staff | None:
    """The staff member of a live bearer token (read only; its use is noted once a minute)."""
    at = now()
    with unit_of_work(write=False) as session:
        found = accounts.find_token(session, secret)
    if found is None:
        return None
    token, person = found
    if accounts.stale_use(token, at):
        with unit_of_work() as session:
            accounts.touch_token(session, token.id, now=at)
    return person

"""One-tap links: the link in a message opens one step's page (staff) or an owner's answer
page, without a password, once, until it expires (policy `links:`).

A token is 32 random bytes; only its SHA-256 is stored, so the table alone opens nothing.
Using a link is one guarded UPDATE (`... WHERE used_at IS NULL AND expires_at > now`): of
two clicks, or two replicas, exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.errors import Conflict, NotFound
from core.policy import get_policy
from core.settings import get_settings
from core.vocabulary import Role, StepStatus
from models.cases import Decision, Step, mark_decided
from models.db import Base, UTCDateTime, insert_rows, rowcount
from models.notices import StepFacts
from models.outbox import Recipient, audit

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy

Audience = Literal["staff", "owner"]
# The owner's own steps that have an answer page (propflow/web/owner.py).
OWNER_STEPS = ("quote", "owner_acceptance", "callback")


class Link(Base):
    __tablename__ = "links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    audience: Mapped[str] = mapped_column(String(10))  # staff | owner
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An owner's answer form carries it (owners have no session to hold a CSRF token).
    form_token: Mapped[str] = mapped_column(String(64))
    step: Mapped[Step] = relationship(lazy="joined")


class LinkGone(Conflict):
    """A link already used, or expired: nothing was changed."""

    def __init__(self, message: str, *, reason: Literal["used", "expired"],
                 link: Link | None = None) -> None:
        super().__init__(message, field="token")
        self.code = f"link_{reason}"
        self.reason = reason
        # Whose and which step: a second tap by whoever already holds its session goes on.
        self.staff_id = link.staff_id if link else None
        self.step_id = link.step_id if link else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint(session: Session, *, step: StepFacts, audience: Audience, now: datetime,
         staff_id: int | None = None, batch: list[dict[str, Any]] | None = None,
         policy: Policy | None = None) -> str:
    """A new link to the step for one person; returns its token (shown once, in the URL).
    With `batch` the row is only collected, for write() to insert with the others at once."""
    ttls = (policy or get_policy()).links
    ttl = ttls.staff_ttl if audience == "staff" else ttls.owner_ttl
    token = secrets.token_urlsafe(32)
    row = dict(token_hash=digest(token), audience=audience, step_id=step.id,
               staff_id=staff_id, created_at=now, expires_at=now + ttl, used_at=None,
               form_token=secrets.token_urlsafe(24))
    if batch is None:
        session.add(Link(**row))
    else:
        batch.append(row)
    return token


def write(session: Session, batch: list[dict[str, Any]]) -> None:
    """The links a batch of messages collected (an SLA pass's warnings), in one INSERT."""
    insert_rows(session, Link.__table__, batch)


def url(token: str, audience: Audience) -> str:
    base = get_settings().link_base
    return f"{base}/{'l' if audience == 'staff' else 'o'}/{token}"


def for_step(session: Session, step: StepFacts, now: datetime,
             batch: list[dict[str, Any]] | None = None,
             policy: Policy | None = None) -> Callable[[Recipient], str]:
    """Each recipient's own link to the step, for notices.tell(links=...): staff open the
    step's page as themselves; the owner opens their answer page for an owner step. A batch
    passes the policy it read once (reading it checks the file: 60 µs a step)."""
    policy = policy or get_policy()

    def link(person: Recipient) -> str:
        kind, _, ident = person.key.partition(":")
        if kind == "staff" and ident.isdigit():
            return url(mint(session, step=step, audience="staff", now=now,
                            staff_id=int(ident), batch=batch, policy=policy), "staff")
        if kind == "owner" and step.role == Role.OWNER and step.kind in OWNER_STEPS:
            return url(mint(session, step=step, audience="owner", now=now, batch=batch,
                            policy=policy), "owner")
        return ""

    return link


def find(session: Session, token: str, audience: Audience) -> Link:
    link = session.scalars(select(Link).where(Link.token_hash == digest(token),
                                              Link.audience == audience)).first()
    if link is None:
        raise NotFound("token：链接无效（可能抄错了）；expected the link exactly as it came in "
                       "the message", field="token")
    return link


def usable(link: Link, now: datetime) -> None:
    """LinkGone unless the link may still be used."""
    if link.used_at is not None:
        raise LinkGone("token：此链接已使用过，每个链接只能使用一次；expected a new link, or "
                       "sign in (登录) instead", reason="used", link=link)
    if link.expires_at <= now:
        raise LinkGone("token：此链接已过期；expected a link used before it expires, or sign "
                       "in (登录) instead", reason="expired", link=link)


def consume(session: Session, token: str, audience: Audience, now: datetime) -> Link:
    """Use the link once: exactly one of any number of concurrent uses wins."""
    link = find(session, token, audience)
    usable(link, now)
    _claim(link, session, now)
    session.refresh(link)
    audit(session, at=now, actor=f"staff:{link.staff_id}" if link.staff_id else "owner",
          action="link_used", case_id=link.step.case_id, step=link.step.key)
    return link


def _claim(link: Link, session: Session, now: datetime) -> None:
    taken = rowcount(session.execute(
        update(Link).where(Link.id == link.id, Link.used_at.is_(None), Link.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)))
    if not taken:  # another click got there between the read and the claim
        raise LinkGone("token：此链接刚刚已被使用；每个链接只能使用一次；expected a new link, "
                       "or sign in (登录) instead", reason="used", link=link)


def owner_decides(session: Session, link: Link, values: dict[str, Any],
                  now: datetime) -> Decision:
    """The owner's own answer through their link: recorded as theirs (no staff member),
    channel owner_link. The link is used in the same transaction: a refused answer (a
    missing reason) leaves it usable."""
    usable(link, now)
    step = link.step
    if step.role != Role.OWNER or step.kind not in OWNER_STEPS:
        raise NotFound("token：此链接不是业主答复链接；expected an owner's link", field="token")
    if step.status != StepStatus.WAITING:
        raise Conflict(f"step：此事项已处理（{step.status}）；一个步骤只能答复一次；"
                       "expected a waiting step", field="step")
    from models.forms import form_key, validate_form  # pydantic forms: only an answer needs them

    checked = validate_form(form_key(step.case.procedure, step.kind), values)
    _claim(link, session, now)
    if not mark_decided(session, step, now):
        raise Conflict("step：此事项刚刚已被处理；一个步骤只能答复一次；expected a waiting "
                       "step", field="step")
    decision = Decision(step_id=step.id, decided_by=None, channel="owner_link", values=checked,
                        comment="", override=False, created_at=now, on_behalf_of_owner=False)
    session.add(decision)
    audit(session, at=now, actor="owner", action="decided", case_id=step.case_id,
          step=step.key, values=checked, comment="", channel="owner_link", override=False)
    session.flush()
    session.refresh(step)
    return decision

"""Checkpoint links: the URL printed as a QR code at a checkpoint of an inspection round.

The code hangs on a wall for months, so the link does not expire and is not used up like a
one-tap link (models/links.py): it names (community, plan, checkpoint) and carries an HMAC
of them under the web door's secret key (propflow.web.auth.secret_key, PROPFLOW_SECRET_KEY),
so nobody can make a link for a checkpoint they are not standing at by editing the URL.
Changing the secret key makes every printed sheet invalid: print them again.

The link proves where, not who: scanning it still needs a signed-in member of staff.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from core.errors import Conflict, Forbidden, NotFound
from core.settings import get_settings
from propflow.sheets import Code, check_format, draw

if TYPE_CHECKING:
    from core.policy.inspection import Plan

# A separate key from the session cookies': a cookie's signature is never a link's.
PURPOSE = b"propflow-checkpoint-link-v1"
PATH = "/checkin"
SIGNATURE_BYTES = 16  # 128 bits: unguessable, and a shorter URL is a sparser QR code


@dataclass(frozen=True)
class Checkpoint:
    community: str  # the community's code, e.g. YGHY
    plan: str  # the plan's key in the policy (procedures.inspection.plans)
    checkpoint: str  # the checkpoint's key in that plan


def _key() -> bytes:
    # The web door's key handling (environment or a file made once under PROPFLOW_HOME);
    # imported here so that merely naming this module does not load the web framework.
    from propflow.web.auth import secret_key

    return hmac.new(secret_key().encode(), PURPOSE, hashlib.sha256).digest()


def signature(point: Checkpoint) -> str:
    # JSON of the three: no pair of different triples gives the same message.
    message = json.dumps([point.community, point.plan, point.checkpoint], ensure_ascii=False)
    digest = hmac.new(_key(), message.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def path(point: Checkpoint) -> str:
    parts = (point.community, point.plan, point.checkpoint, signature(point))
    return PATH + "".join("/" + quote(part, safe="") for part in parts)


def url(point: Checkpoint) -> str:
    """The link the QR code holds: PROPFLOW_PUBLIC_URL (or the web door's address) + path."""
    return get_settings().link_base + path(point)


def genuine(point: Checkpoint, sent: str) -> bool:
    """Whether `sent` is this checkpoint's signature (compared in constant time)."""
    return hmac.compare_digest(signature(point).encode(), sent.encode("utf-8", "replace"))


# --- the plans' checkpoints -------------------------------------------------------------

def plans() -> dict[str, Plan]:
    """The inspection plans of the policy (procedures.inspection.plans)."""
    from core.policy import get_policy

    rules = get_policy().procedures.get("inspection")
    return dict(rules.plans) if rules is not None else {}


def plan(key: str) -> Plan:
    found = plans().get(key)
    if found is None:
        raise NotFound(f"plan：没有巡查计划 {key!r}；expected one of {sorted(plans())}",
                       field="plan")
    return found


def codes(community: str, plan_key: str) -> tuple[str, list[Code]]:
    """The sheet's title and one code per checkpoint of the plan, in the plan's order."""
    from models.db import unit_of_work
    from models.directory import community as find_community

    chosen = plan(plan_key)
    with unit_of_work(write=False) as session:
        place = find_community(session, community)
        title = f"{place.name} · {chosen.label}"
        code = place.code
    return title, [Code(label=point.label, note=key,
                        url=url(Checkpoint(code, plan_key, key)))
                   for key, point in chosen.checkpoints.items()]


def sheet(community: str, plan_key: str, fmt: str, *, viewer: int | str | None = None,
          actor: str = "cli") -> bytes:
    """The printable sheet of the plan's codes for the community (PDF or PNG). A member of
    staff (`viewer`) gets only a community of theirs; printing is audited."""
    from core.clock import now
    from models import directory, scope
    from models.db import unit_of_work
    from models.outbox import audit

    chosen = check_format(fmt)
    if viewer is not None:
        with unit_of_work(write=False) as session:
            person = directory.staff(session, viewer, field="viewer")
            place = directory.community(session, community)
            if not scope.sees(session, person, place.id):
                raise NotFound(f"community：没有项目 {community!r}；expected a community where "
                               "you hold a role", field="community")
            actor = f"staff:{person.id}"
    title, found = codes(community, plan_key)
    drawn = draw(title, found, chosen)
    with unit_of_work() as session:
        audit(session, at=now(), actor=actor, action="checkpoint_sheet", community=community,
              plan=plan_key, format=chosen, checkpoints=len(found))
    return drawn


# --- checking in ------------------------------------------------------------------------

# Who may check in at a checkpoint, besides the plan's own role: the community's customer
# service (the stewards walk the rounds; a supervisor or a colleague may stand in).
CHECK_IN_ROLES = frozenset({"steward", "csr", "cs_supervisor", "cs_director"})


def _local(at: datetime) -> str:
    from zoneinfo import ZoneInfo

    from core.policy import get_policy

    return at.astimezone(ZoneInfo(get_policy().timezone)).strftime("%Y-%m-%d %H:%M")


class NoRound(Conflict):
    """No round of the plan is under way here now: nothing recorded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="checkpoint")
        self.code = "no_round"


def check_in(staff_id: int | str, point: Checkpoint) -> dict[str, Any]:
    """Record that the member of staff is at the checkpoint now (core.clock, so the training
    clock counts) on its step of the community's current round of the plan, through
    models.inspection.check_in (which audits it). The same person scanning again in the same
    round records nothing more and is shown their first check-in. Returns the step, when and
    by whom it was checked in, and whether this scan recorded it."""
    from sqlalchemy import select

    from core.clock import now
    from models import directory, inspection, scope
    from models.cases import Step, step_by_key
    from models.db import unit_of_work

    chosen = plan(point.plan)
    spot = chosen.checkpoints.get(point.checkpoint)
    if spot is None:
        raise NotFound(f"checkpoint：巡查计划 {point.plan!r} 没有检查点 {point.checkpoint!r}；"
                       f"expected one of {list(chosen.checkpoints)}", field="checkpoint")
    at = now()
    with unit_of_work() as session:
        person = directory.staff(session, staff_id)
        place = directory.community(session, point.community)
        allowed = CHECK_IN_ROLES | {chosen.role}
        if not scope.sees(session, person, place.id) \
                or not directory.roles_of(person, place.id) & allowed:
            raise Forbidden(f"staff：{person.name} 不是{place.name}的管家或客服人员，不能在此签到；"
                            f"expected a member of staff holding one of {sorted(allowed)} in "
                            f"{place.code}", field="staff")
        case = inspection.current_round(session, community_id=place.id, plan=point.plan,
                                        at=at, staff_id=person.id)
        step = step_by_key(session, case.id, inspection.step_key(point.checkpoint)) \
            if case is not None else None
        if case is None or step is None:
            raise NoRound(f"checkpoint：{place.name}现在没有进行中的{chosen.label}（{_local(at)}，"
                          "不在巡查时段内，或本轮已结束、尚未开始）；expected a scan during a "
                          "round of the plan")
        # The step's row locked and read afresh: two scans at once (two people, or a double
        # tap) each add to the list the other wrote, and the same person's second adds none.
        session.execute(select(Step.id).where(Step.id == step.id).with_for_update())
        session.refresh(step)
        mine = [e for e in (step.context or {}).get("check_ins", [])
                if e.get("staff_id") == person.id]
        if not mine:
            step = inspection.check_in(session, community=place.code, plan=point.plan,
                                       checkpoint=point.checkpoint, staff_id=person.id, at=at)
        first = datetime.fromisoformat(mine[0]["at"]) if mine else at
        everyone = [{"name": e.get("name", ""), "at": _local(datetime.fromisoformat(e["at"]))}
                    for e in (step.context or {}).get("check_ins", [])]
        return {"step_id": step.id, "case": case.number, "new": not mine,
                "at": _local(first), "by": person.id, "by_name": person.name,
                "label": spot.label, "items": list(spot.items), "check_ins": everyone}

"""Who may decide a step, and whom a decision may name (DESIGN.md "Who may decide").

The assignee, or anyone holding the step's role when it is unassigned; a stand-in the policy
names for that role; a level of the escalation chain only once the step has reached it;
never whoever proposed what an approval approves. Each refusal names the rule it applied,
so whoever is refused knows whom to ask instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.errors import Forbidden, NotFound, PropflowError
from core.policy import get_policy
from core.roles import LAST_RESORT
from core.vocabulary import Role
from models.cases import Step, step_by_key
from models.directory import MAX_ID, people_in_role, roles_of
from models.org import Community, Staff

# Decision fields that name a member of staff, and the role that person must hold.
STAFF_FIELDS = {"technician": Role.TECHNICIAN, "reassign_to": Role.TECHNICIAN}


def chain_of(step: Step) -> list[str]:
    """The escalation chain above the step: a manager's own step climbs past the manager,
    never back down to the supervisor below them."""
    chain = get_policy().chain(step.case.procedure, step.kind, step.case.priority)
    if step.role in chain:
        return chain[chain.index(step.role) + 1:]
    return chain


def stand_ins(role: str) -> list[str]:
    return get_policy().stand_ins.get(role, [])


def reached(step: Step) -> list[str]:
    """The levels of the chain the step has escalated to. Past the top of its chain the
    company's service centre, told when every level was vacant, may decide too."""
    chain = chain_of(step)
    top = [LAST_RESORT] if chain and step.level >= len(chain) else []
    return [*chain[:step.level], *top]


def rule_allowing(step: Step, person: Staff) -> str | None:
    """The rule that lets this person decide the step (proposals aside), or None."""
    roles = roles_of(person, step.case.community_id)
    if step.assignee_id == person.id:
        return "assignee"
    if step.assignee_id is None and step.role in roles:
        return "role"
    if roles & set(stand_ins(step.role)):
        return "stand_in"
    if roles & set(reached(step)):
        return "chain"
    if roles & set(chain_of(step)) and _skips_levels(step):
        return "skip_level"  # an emergency: a level above acts at once, told afterwards
    return None


def _skips_levels(step: Step) -> bool:
    section = get_policy().procedures.get(step.case.procedure)
    return bool(section and section.skip_levels)


def check_decider(session: Session, step: Step, person: Staff) -> str:
    """The rule under which the person decides, or Forbidden naming the rule refused."""
    rule = rule_allowing(step, person)
    if rule is None:
        raise Forbidden(_refusal(session, step, person), field="as")
    check_not_proposer(session, step, person)
    return rule


def staff_label(session: Session, staff_id: int | None, word: str = "员工 ") -> str:
    """How a refusal names a member of staff: 员工 7（王五）."""
    person = session.get(Staff, staff_id) if staff_id else None
    return f"{word}{staff_id}（{person.name if person else '?'}）"


def _refusal(session: Session, step: Step, person: Staff) -> str:
    roles = roles_of(person, step.case.community_id)
    chain = chain_of(step)
    own = f"stand_ins.{step.role}：{stand_ins(step.role)}"
    head = (f"as：{staff_label(session, person.id)}无权处理步骤 {step.id}（{step.kind}，角色 "
            f"{step.role}，第 {step.level} 级）；")
    later = [r for r in chain[step.level:] if r in roles]
    if later:
        rule = (f"规则（chain）：升级链上的角色在步骤升级到其所在层级后才可处理；{later[0]} 在第 "
                f"{chain.index(later[0]) + 1} 级，本步骤目前在第 {step.level} 级")
    elif step.assignee_id:
        rule = (f"规则（assignee）：已指派的步骤由被指派人处理，或由策略指定的替岗角色（{own}）"
                "及已升级到的层级处理")
    else:
        rule = (f"规则（role）：未指派的步骤由本项目持 {step.role} 角色者处理，或由策略指定的"
                f"替岗角色（{own}）及已升级到的层级处理")
    allowed = sorted({*([] if step.assignee_id else [step.role]), *stand_ins(step.role),
                      *reached(step)})
    who = (f"{staff_label(session, step.assignee_id, 'assignee staff ')} or "
           if step.assignee_id else "")
    nxt = (f"; once escalated to level {step.level + 1}, {chain[step.level]}"
           if step.level < len(chain) else "")
    return f"{head}{rule}；expected {who}a role among {allowed}{nxt}"


def check_not_proposer(session: Session, step: Step, person: Staff) -> None:
    """Forbidden when the person proposed what this approval step approves (rule proposer):
    an approval step names the step whose proposal it approves (context "approves")."""
    key = (step.context or {}).get("approves")
    if not key:
        return
    proposal = step_by_key(session, step.case_id, key)  # proposed again if sent back
    if proposal is None or proposal.decision is None:
        return
    if proposal.decision.decided_by == person.id:
        raise Forbidden(
            f"as：{staff_label(session, person.id)}无权处理步骤 {step.id}（{step.kind}）；"
            f"规则（proposer）：审批不能由提出所审批方案的人处理（{key} 由其决定）；"
            f"expected another {step.role}, or the level above once the step escalates",
            field="as")


def check_references(session: Session, step: Step, values: dict[str, Any]) -> None:
    """Staff a decision names must be able to take the work, before the run ever sees them."""
    for field, role in STAFF_FIELDS.items():
        if values.get(field) is not None:
            staff_of(session, step.case.community_id, values[field], field=field, role=role)
    if values.get("unit"):  # a round's finding names the unit its repair or notice is for
        from sqlalchemy import select

        from models.org import Unit

        if session.scalar(select(Unit.id).where(Unit.community_id == step.case.community_id,
                                                Unit.code == values["unit"])) is None:
            raise NotFound(f"unit：本项目没有房号 {values['unit']!r}；expected 楼栋-单元-房号 of "
                           "this community, such as 1-2-301", field="unit")


def staff_of(session: Session, community_id: int, staff_id: int | str, *, field: str,
             role: str | None = None) -> Staff:
    """Active staff holding a role in the community (company-level roles count everywhere);
    with role, that role."""
    community = session.get(Community, community_id)
    where = community.name if community else str(community_id)
    wanted = f"持 {role} 角色的在职员工" if role else "在职员工"
    rule = f"规则（reference）：决定或登记中引用的员工须为本项目（{where}）的{wanted}"
    if role:
        found = people_in_role(session, community_id, role)
        names = ", ".join(f"{p.id}（{p.name}）" for p in found)
        expected = f"expected a staff id of a {role} of {where}: {names or 'none on record'}"
    else:
        expected = f"expected a staff id of someone working at {where}"
    try:
        pk = int(staff_id)
    except (TypeError, ValueError):
        pk = 0
    person = session.get(Staff, pk) if 0 < pk <= MAX_ID else None
    if person is None or not person.active:
        raise NotFound(f"{field}：没有编号为 {staff_id!r} 的在职员工；{rule}；{expected}",
                       field=field)
    held = roles_of(person, community_id)
    if not held or (role and role not in held):
        raise PropflowError(f"{field}：{staff_label(session, person.id)}不是{where}的{wanted}；"
                            f"{rule}；{expected}", field=field)
    return person

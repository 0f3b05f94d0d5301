"""The demo company: one community, buildings, units and staff in every role. Idempotent."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import now
from models import accounts
from models.db import unit_of_work
from models.org import Building, Community, Company, Resident, Staff, StaffRole, Unit

STAFF: list[tuple[str, str, str, str | None]] = [
    # name, role, skills, community ("" = company level)
    ("王芳", "csr", "", "YGHY"),
    ("李娜", "csr", "", "YGHY"),
    ("赵磊", "steward", "", "YGHY"),
    ("陈静", "cs_supervisor", "", "YGHY"),
    ("刘洋", "cs_director", "", "YGHY"),
    ("张伟", "project_manager", "", "YGHY"),
    ("孙丽", "company_cs", "", None),
    ("周强", "dispatcher", "", "YGHY"),
    ("吴刚", "technician", "plumbing,electrical", "YGHY"),
    ("郑浩", "technician", "civil", "YGHY"),
    ("冯涛", "technician", "equipment,elevator", "YGHY"),
    ("何军", "tech_supervisor", "plumbing,electrical,civil", "YGHY"),
    ("马超", "security", "", "YGHY"),
    ("朱红", "cleaning", "", "YGHY"),
    ("胡敏", "pr", "", "YGHY"),
    ("郭婷", "hr", "", None),
    ("林峰", "vendor", "elevator", "YGHY"),
    ("高明", "developer_warranty", "", "YGHY"),
]


def _get_or_add(session: Session, model: type, where: dict[str, Any], **extra: Any) -> Any:
    found = session.scalars(select(model).filter_by(**where)).first()
    if found is None:
        found = model(**where, **extra)
        session.add(found)
        session.flush()
    return found


# One household per unit, so a building notice in the walkthrough reaches every home of it.
SURNAMES = "王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈"


def resident_phone(code: str) -> str:
    """A distinct, well-formed mainland mobile per unit: 1-2-301 -> 13750120301."""
    building, entrance, room = code.split("-")
    return f"13750{building}{entrance}{int(room):04d}"


def _residents(session: Session, units: list[Unit]) -> None:
    """A named resident with a phone in every unit that has nobody yet (idempotent)."""
    housed = set(session.scalars(select(Resident.unit_id).where(
        Resident.unit_id.in_([u.id for u in units]))))
    for i, unit in enumerate(units):
        if unit.id not in housed:
            title = "先生" if i % 2 else "女士"
            session.add(Resident(unit_id=unit.id, name=f"{SURNAMES[i % len(SURNAMES)]}{title}",
                                 phone=resident_phone(unit.code), is_owner=True))
    session.flush()


# Every demo account signs in with this password (README, "Web door"); the login is the
# role, numbered from the second holder on: csr, csr2, technician, technician2, ...
DEMO_PASSWORD = "propflow-demo"


@lru_cache
def _demo_hash() -> str:
    return accounts.hash_password(DEMO_PASSWORD)  # argon2 is slow: once per process


def _demo_login(session: Session, staff_id: int, role: str, before: list[str]) -> str | None:
    """Give a demo account its login and the demo password, unless it has a password
    already (one set with `propflow users set-password` stays)."""
    cred = session.get(accounts.Credential, staff_id)
    if cred is None:
        n = before.count(role) + 1
        login: str | None = role if n == 1 else f"{role}{n}"
        if session.scalar(select(accounts.Credential.staff_id).where(
                accounts.Credential.login == login)) is not None:
            login = None
        cred = accounts.Credential(staff_id=staff_id, login=login,
                                   password_hash=_demo_hash(), set_at=now())
        session.add(cred)
        session.flush()
    return cred.login


def seed() -> dict[str, Any]:
    with unit_of_work() as session:
        company = _get_or_add(session, Company, {"code": "DEMO"}, name="示范物业服务有限公司")
        community = _get_or_add(session, Community, {"code": "YGHY"},
                                company_id=company.id, name="阳光花园", tz="Asia/Shanghai")
        units = []
        for b in (1, 2, 3):
            building = _get_or_add(session, Building, {"community_id": community.id,
                                                       "code": str(b)}, name=f"{b}号楼")
            for entrance in (1, 2):
                for floor in (1, 2, 3):
                    for room in (1, 2):
                        code = f"{b}-{entrance}-{floor}0{room}"
                        # Building 3 was handed over recently: still under warranty (free repairs).
                        warranty = date(2027, 12, 31) if b == 3 else date(2024, 6, 30)
                        unit = _get_or_add(session, Unit, {"community_id": community.id,
                                                           "code": code},
                                           building_id=building.id, warranty_until=warranty)
                        units.append(unit)
        _get_or_add(session, Resident, {"unit_id": units[0].id, "name": "业主张三"},
                    phone="13800138000", is_owner=True)
        _residents(session, units)
        staff: list[dict[str, Any]] = []
        for i, (name, role, skills, where) in enumerate(STAFF, start=1):
            person = _get_or_add(session, Staff, {"company_id": company.id, "name": name},
                                 phone=f"139{i:08d}", email=f"staff{i}@demo.propflow.local",
                                 skills=skills)
            _get_or_add(session, StaffRole, {"staff_id": person.id, "role": role,
                                             "community_id": community.id if where else None})
            login = _demo_login(session, person.id, role, [s["role"] for s in staff])
            staff.append({"id": person.id, "name": name, "role": role, "skills": skills,
                          "login": login})
        return {
            "company": {"code": company.code, "name": company.name},
            "community": {"code": community.code, "name": community.name},
            "units": [u.code for u in units],
            "households": session.scalar(select(func.count(func.distinct(Resident.unit_id))).join(
                Unit, Unit.id == Resident.unit_id).where(Unit.community_id == community.id)),
            "staff": staff,
        }

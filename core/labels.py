"""Names people read, in zh-CN and en."""

from __future__ import annotations

from core import procedures
from core.roles import ROLES
from core.vocabulary import Role

ROLE_EN = {
    "csr": "customer-service officer", "steward": "steward",
    "cs_supervisor": "customer-service supervisor", "cs_director": "customer-service director",
    "project_manager": "project manager", "company_cs": "company service centre",
    "dispatcher": "dispatcher", "technician": "technician",
    "tech_supervisor": "technical supervisor", "security": "security",
    "cleaning": "cleaning", "pr": "public relations", "hr": "human resources",
    "vendor": "vendor", "developer_warranty": "developer warranty centre", "owner": "owner",
}
PRIORITIES = {"high": ("高", "high"), "medium": ("中", "medium"), "low": ("低", "low")}
CALENDARS = {"24x7": ("全天候", "24/7"), "business": ("工作时间", "business hours")}
OUTCOMES = {
    "done": ("已完成", "done"), "quote_refused": ("业主未接受报价", "quote refused"),
    "resolved": ("已处理", "resolved"), "moved_in": ("已入住", "moved in"),
    "refused": ("未获批准", "not approved"), "declined": ("不予受理", "not taken on"),
}


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh-CN" else pair[1]


def role(key: str | None, lang: str) -> str:
    if not key:
        return ""
    zh = "业主" if key == Role.OWNER else ROLES.get(key, key)
    return zh if lang == "zh-CN" else ROLE_EN.get(key, key)


def procedure(name: str, lang: str) -> str:
    """A procedure's name (core/procedures.py); an unknown one as it is."""
    found = procedures.PROCEDURES.get(name)
    return pick((found.zh, found.en), lang) if found else name


def step(procedure_name: str, kind: str, lang: str) -> str:
    """A step's name as its procedure declares it (a complaint's resolve is not an
    emergency's); an unknown one as it is."""
    found = procedures.PROCEDURES.get(procedure_name)
    for s in found.steps if found else ():
        if s.kind == kind:
            return pick((s.zh, s.en), lang)
    return kind


def label(table: dict[str, tuple[str, str]], key: str | None, lang: str) -> str:
    return pick(table[key], lang) if key in table else (key or "")

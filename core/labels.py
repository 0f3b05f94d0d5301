"""Names people read, in zh-CN and en."""

from __future__ import annotations

from core.roles import ROLES

ROLE_EN = {
    "csr": "customer-service officer", "steward": "steward",
    "cs_supervisor": "customer-service supervisor", "cs_director": "customer-service director",
    "project_manager": "project manager", "company_cs": "company service centre",
    "dispatcher": "dispatcher", "technician": "technician",
    "tech_supervisor": "technical supervisor", "security": "security",
    "cleaning": "cleaning", "pr": "public relations", "hr": "human resources",
    "vendor": "vendor", "developer_warranty": "developer warranty centre", "owner": "owner",
}
STEPS = {
    "dispatch": ("派单", "dispatch"), "accept": ("接单", "accept"), "quote": ("确认报价", "quote"),
    "complete": ("完工登记", "complete"), "owner_acceptance": ("业主验收", "owner acceptance"),
    "reinspection": ("复检", "re-inspection"), "callback": ("回访评价", "callback"),
    "phone_callback": ("电话回访", "phone callback"),
    "acknowledge": ("确认受理", "acknowledge"), "investigate": ("调查与方案", "investigate"),
    "approve_resolution": ("审批方案", "approve resolution"),
"feedback": ("结果反馈", "feedback"),
    "activate": ("启动应急预案", "activate"), "update": ("进展通报", "update"),
    "resolve": ("处置完毕", "resolve"),
    "incident_report": ("突发事件处理记录表", "incident report"),
    "training_review": ("案例评审", "training review"), "receive": ("接待", "receive"),
    "handle": ("处理", "handle"),
}
PROCEDURES = {"repair": ("报修", "repair"), "complaint": ("投诉", "complaint"),
              "emergency": ("应急事件", "emergency")}
PRIORITIES = {"high": ("高", "high"), "medium": ("中", "medium"), "low": ("低", "low")}
CALENDARS = {"24x7": ("全天候", "24/7"), "business": ("工作时间", "business hours")}
OUTCOMES = {
    "done": ("已完成", "done"), "quote_refused": ("业主未接受报价", "quote refused"),
    "resolved": ("已处理", "resolved"),
}


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh-CN" else pair[1]


def role(key: str | None, lang: str) -> str:
    if not key:
        return ""
    zh = "业主" if key == "owner" else ROLES.get(key, key)
    return zh if lang == "zh-CN" else ROLE_EN.get(key, key)


def label(table: dict[str, tuple[str, str]], key: str | None, lang: str) -> str:
    return pick(table[key], lang) if key in table else (key or "")

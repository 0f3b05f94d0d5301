"""The role vocabulary: who can be asked, told or escalated to.

Kept here, importing nothing of ours, so the policy check can name the roles without
reaching into the database models.
"""

from __future__ import annotations

from core.vocabulary import Role

_LABELS: dict[Role, str] = {
    Role.CSR: "客服专员",
    Role.STEWARD: "片区管家",
    Role.CS_SUPERVISOR: "客服主管",
    Role.CS_DIRECTOR: "客服主任",
    Role.PROJECT_MANAGER: "项目经理",
    Role.COMPANY_CS: "公司客服中心",
    Role.DISPATCHER: "维修调度员",
    Role.TECHNICIAN: "维修工",
    Role.TECH_SUPERVISOR: "技术主管",
    Role.SECURITY: "秩序维护部",
    Role.CLEANING: "环境部",
    Role.PR: "行政公关部",
    Role.HR: "人力资源部",
    Role.VENDOR: "外包服务商",
    Role.DEVELOPER_WARRANTY: "地产保修中心",
}

# The roles staff hold, keyed by the plain string (messages list them as text).
ROLES: dict[str, str] = {role.value: label for role, label in _LABELS.items()}

# A step may also wait on the owner (recorded by the front desk); nobody holds that role.
STEP_ROLES: dict[str, str] = {**ROLES, Role.OWNER.value: "业主"}

# Told when an escalation reaches a level nobody in the community holds: a company-level role.
LAST_RESORT = Role.COMPANY_CS

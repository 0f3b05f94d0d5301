"""The role vocabulary: who can be asked, told or escalated to.

Kept here, importing nothing of ours, so the policy check can name the roles without
reaching into the database models.
"""

from __future__ import annotations

ROLES = {
    "csr": "客服专员",
    "steward": "片区管家",
    "cs_supervisor": "客服主管",
    "cs_director": "客服主任",
    "project_manager": "项目经理",
    "company_cs": "公司客服中心",
    "dispatcher": "维修调度员",
    "technician": "维修工",
    "tech_supervisor": "技术主管",
    "security": "秩序维护部",
    "cleaning": "环境部",
    "pr": "行政公关部",
    "hr": "人力资源部",
    "vendor": "外包服务商",
    "developer_warranty": "地产保修中心",
}

# A step may also wait on the owner (recorded by the front desk); nobody holds that role.
STEP_ROLES = {**ROLES, "owner": "业主"}

# Told when an escalation reaches a level nobody in the community holds: a company-level role.
LAST_RESORT = "company_cs"

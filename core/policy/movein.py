"""The move-in (入住) rules of the policy file, `procedures.movein` (PROCEDURES.md §4, §10).

Plain models, no import of core.policy: its Procedure section takes these as fields. The
defaults are the seed's, so a policy written before move-in existed still loads.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Room(_Strict):
    """One room of the acceptance form 房屋质量验收登记表 and what is checked in it."""

    label: str
    items: list[str] = Field(min_length=1)


class Fee(_Strict):
    label: str
    rate: Decimal = Field(ge=0)  # yuan per m² of floor area per month


class Fees(_Strict):
    items: dict[str, Fee] = {
        "property": Fee(label="物业服务费", rate=Decimal("2.5")),  # (default)
        "public_energy": Fee(label="公共能耗费", rate=Decimal("0.3")),  # (seed) 0.3 yuan/m²/month
    }
    months: int = Field(3, ge=1, le=36)  # paid in advance at move-in (default)


class Custody(_Strict):
    """托管: a unit the property company looks after until the owner moves in."""

    water_max: Decimal = Field(Decimal(5), ge=0)  # (seed) units on the meter, at most
    electricity_max: Decimal = Field(Decimal(20), ge=0)  # (seed)
    fee_share: Decimal = Field(Decimal("0.7"), gt=0, le=1)  # (seed) the fee at 70 %


OWNER_DOCUMENTS = ["id_card", "move_in_notice", "purchase_contract"]  # (seed)


class MoveInRules(_Strict):
    # What the front desk checks per buyer type: owner in person, by an agent, a company.
    documents: dict[str, list[str]] = {
        "owner": OWNER_DOCUMENTS,
        "agent": [*OWNER_DOCUMENTS, "agent_id_card", "power_of_attorney"],
        "company": [*OWNER_DOCUMENTS, "company_certificate"],
    }
    document_labels: dict[str, str] = {
        "id_card": "业主身份证", "move_in_notice": "入住通知书",
        "purchase_contract": "购房合同（或交房确认书）", "agent_id_card": "代理人身份证",
        "power_of_attorney": "授权委托书", "company_certificate": "公司营业执照",
    }
    # Signed by the owner (§4 and §10): one key each, with its label.
    agreements: dict[str, str] = {
        "registration": "住户登记表", "decoration_application": "装修申请表",
        "service_agreement": "物业服务协议", "decoration_agreement": "装修管理协议",
        "temporary_rules": "临时管理规约", "documents_receipt": "入住文本签收单",
    }
    custody_agreement: str = "托管协议"
    # Handed over against the owner's signed receipt.
    handover_items: dict[str, str] = {
        "keys": "钥匙", "handbook": "住户手册", "diagrams": "水电图",
        "decoration_notice": "装修须知",
    }
    rooms: dict[str, Room] = {
        "living_room": Room(label="客厅", items=["墙面", "地面", "门窗", "开关插座"]),
        "bedroom": Room(label="卧室", items=["墙面", "地面", "门窗", "开关插座"]),
        "kitchen": Room(label="厨房", items=["墙地面", "给排水", "燃气管道", "烟道"]),
        "bathroom": Room(label="卫生间", items=["防水", "地漏", "给排水", "墙地砖"]),
        "balcony": Room(label="阳台", items=["栏杆", "地漏", "门窗"]),
    }
    # The repair category a defect found at the inspection is opened under.
    defect_category: str = "in_unit"
    fees: Fees = Fees()
    custody: Custody = Custody()

"""Move-in (入住) rules: its input, its forms, what is checked per buyer type, the fee, the
acceptance checklist, the custody limits (PROCEDURES.md §4, §10; policy: core/policy/movein.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.orm import Session

from core.errors import PropflowError
from core.policy import get_policy
from models import identity, limits
from models.cases import Case
from models.forms import AnswerForm, Form, Short
from models.intake import Intake, Opening, Place
from models.validate import CommaList, Phone, choice, text

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy
    from core.policy import Procedure as PolicySection

BUYERS = ("owner", "agent", "company")
BUYER_LABELS = {"owner": "业主本人", "agent": "委托代理人", "company": "公司购房"}


def _id_number(value: str | None, field: str) -> str | None:
    return identity.check(value, field) if value else None


class MoveInIntake(Intake):
    """A new owner moving in (入住): who they are, how they bought, and custody."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        unit="1-1-101", owner="业主张三", phone="13800138000", buyer="owner",
        id_number="110101199003071233")]})

    unit: str = Field(description="房号，如 1-2-301")
    owner: Annotated[str, text("the owner's name", limits.NAME)] = Field(description="业主姓名")
    phone: Phone = Field(description="联系电话（大陆手机号）")
    buyer: Annotated[str, choice(BUYERS)] = Field(
        description="owner|agent|company：本人、委托代理人或公司购房")
    id_number: str = Field(description="业主身份证号（18位，加密保存，仅显示掩码）")
    agent: str | None = Field(None, description="代理人姓名（--buyer agent 时必填）")
    agent_id_number: str | None = Field(None, description="代理人身份证号（--buyer agent 时必填）")
    company: str | None = Field(None, description="购房公司名称（--buyer company 时必填）")
    custody: bool = Field(False, description="托管：交房后由物业代管")
    community: str | None = Field(None, description="项目编号，如 YGHY")

    @field_validator("id_number")
    @classmethod
    def _owner_id(cls, value: str) -> str:
        return identity.check(value, "id_number")

    @field_validator("agent_id_number")
    @classmethod
    def _agent_id(cls, value: str | None) -> str | None:
        return _id_number(value, "agent_id_number")

    @field_validator("agent", "company")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        name = info.field_name or "?"
        return limits.check_length(value.strip(), name, limits.NAME) if value else None

    @model_validator(mode="after")
    def _per_buyer(self) -> MoveInIntake:
        """What each way of buying needs, and nothing it does not."""
        needs = {"agent": ("agent", "agent_id_number"), "company": ("company",)}
        for buyer, fields in needs.items():
            for name in fields:
                given = getattr(self, name)
                if self.buyer == buyer and not given:
                    raise PropflowError(
                        f"{name}：{BUYER_LABELS[buyer]}时必须填写；expected --"
                        f"{name.replace('_', '-')}", field=name)
                if self.buyer != buyer and given:
                    raise PropflowError(
                        f"{name}：仅 --buyer {buyer} 时填写；expected it left out for "
                        f"--buyer {self.buyer}", field=name)
        return self

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        # The lists are frozen with the case: a policy edit later changes no open move-in.
        documents = list(policy.documents.get(self.buyer, []))
        agreements = list(policy.agreements)
        if self.custody:
            agreements.append("custody_agreement")
        who = {"owner": self.owner, "agent": f"{self.owner}（代理人 {self.agent}）",
               "company": f"{self.company}（{self.owner}）"}[self.buyer]
        return Opening(
            reporter=self.owner, phone=self.phone, category="movein", channel="front_desk",
            description=f"{self.unit} 入住：{who}{'，托管' if self.custody else ''}",
            actor="front_desk",
            data={"buyer": self.buyer, "custody": self.custody, "documents": documents,
                  "agreements": agreements, "agent": self.agent, "company": self.company},
            audit={"buyer": self.buyer, "custody": self.custody},
        )

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        identity.store(session, case.id, "owner", self.id_number)
        if self.agent_id_number:
            identity.store(session, case.id, "agent", self.agent_id_number)

    @classmethod
    def details(cls, session: Session, case: Case) -> dict[str, Any]:
        data = case.data or {}
        shown = identity.masked_of(session, case.id)
        out: dict[str, Any] = {"buyer": data.get("buyer"), "custody": data.get("custody"),
                               "owner_id_number": shown.get("owner")}
        if data.get("agent"):
            out |= {"agent": data["agent"], "agent_id_number": shown.get("agent")}
        if data.get("company"):
            out["company"] = data["company"]
        if data.get("fee"):
            out["fee"] = data["fee"]
        if data.get("defect_rounds"):
            out["defect_repairs"] = [n for pairs in data["defect_rounds"].values()
                                     for _, n in pairs]
        return out


# --- forms ---------------------------------------------------------------------------------

Reading = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 8, decimal_places=2)]


def _section(policy: Policy | None = None) -> PolicySection:
    return (policy or get_policy()).procedures["movein"]


def _agreement_labels(section: PolicySection) -> dict[str, str]:
    return {**section.agreements, "custody_agreement": section.custody_agreement}


def _listed(table: Callable[[PolicySection], dict[str, str]]) -> AfterValidator:
    """A CommaList check: every item one of the keys (or labels) `table` reads from the
    policy's move-in section, as the key: Annotated[CommaList, _listed(...)]."""
    def check(values: list[str]) -> list[str]:
        known = table(_section())
        by_label = {label: key for key, label in known.items()}
        out = []
        for value in values:
            key = by_label.get(value, value)
            if key not in known:
                raise ValueError(f"{value!r} 不在清单中；expected some of {list(known)}")
            out.append(key)
        return list(dict.fromkeys(out))
    return AfterValidator(check)


Documents = Annotated[CommaList, _listed(lambda s: s.document_labels)]
Agreements = Annotated[CommaList, _listed(_agreement_labels)]
HandoverItems = Annotated[CommaList, _listed(lambda s: s.handover_items)]
Rooms = Annotated[CommaList, _listed(lambda s: {k: r.label for k, r in s.rooms.items()})]


class DocumentsForm(Form):
    documents: Documents = Field(description="已核验的资料，逗号分隔：id_card,move_in_notice,"
                                             "purchase_contract,agent_id_card,power_of_attorney,"
                                             "company_certificate")
    area: Decimal = Field(gt=0, le=100000, decimal_places=2,
                          description="建筑面积（平方米，以购房合同为准）")
    note: Short = ""


class AgreementsForm(Form):
    signed: Agreements = Field(description="已签署，逗号分隔：registration,decoration_application,"
                                          "service_agreement,decoration_agreement,"
                                          "temporary_rules,documents_receipt（托管另加 "
                                          "custody_agreement）")
    note: Short = ""


class FeesForm(AnswerForm):
    answer: ClassVar[str] = "paid"
    refusal: ClassVar[str] = "未缴费"
    paid: bool = Field(description="是否已按应缴金额收费")
    receipt: Short = Field("", description="收据号")
    reason: Short = ""

    @model_validator(mode="after")
    def _receipt_when_paid(self) -> FeesForm:
        if self.paid and not self.receipt:
            raise ValueError("receipt: 已缴费时必须填写收据号 (required when paid=true)")
        return self


class HandoverForm(AnswerForm):
    answer: ClassVar[str] = "receipt_signed"
    refusal: ClassVar[str] = "业主未签收"
    keys: int = Field(ge=1, le=100, description="交付钥匙数（把）")
    items: HandoverItems = Field(description="交付的资料，逗号分隔：keys,handbook,diagrams,"
                                         "decoration_notice")
    receipt_signed: bool = Field(description="业主是否已在交接单上签字")
    reason: Short = ""


class Defect(Form):
    room: str = Field(description="房间（验收表上的，如 bathroom 或 卫生间）")
    item: Short = Field(min_length=1, description="缺陷")

    @field_validator("room")
    @classmethod
    def _room(cls, value: str) -> str:
        rooms = _section().rooms
        by_label = {r.label: k for k, r in rooms.items()}
        key = by_label.get(value, value)
        if key not in rooms:
            raise ValueError(f"房间 {value!r} 不在验收表中；expected one of "
                             f"{list(rooms)} or {list(by_label)}")
        return key


def _defects(value: Any) -> Any:
    """"卫生间:地漏堵塞; 客厅:墙面开裂" from the command line, or a list."""
    if not isinstance(value, str):
        return value
    out = []
    for part in (p.strip() for p in re.split(r"[;；\n]", value)):
        if not part:
            continue
        room, sep, item = part.replace("：", ":").partition(":")
        if not sep:
            raise ValueError("defects: 每项应为 房间:缺陷；expected room:defect, several "
                             "separated by ;")
        out.append({"room": room.strip(), "item": item.strip()})
    return out


Defects = Annotated[list[Defect], BeforeValidator(_defects), Field(max_length=50)]


class InspectionForm(Form):
    """房屋质量验收登记表: every room checked item by item, the meters read together."""

    rooms: Rooms = Field(description="已逐项验收的房间，逗号分隔，如 living_room,bedroom,"
                                         "kitchen,bathroom")
    water: Reading = Field(description="水表读数")
    electricity: Reading = Field(description="电表读数")
    gas: Reading = Field(description="燃气表读数")
    # A factory, not a default: the web form would show "[]" in the text box (web/stepform).
    defects: Defects = Field(default_factory=list,
                             description="缺陷，每项 房间:缺陷，多项以 ; 分隔（每项转一张报修单）")
    note: Short = ""

    @model_validator(mode="after")
    def _defects_in_rooms(self) -> InspectionForm:
        for defect in self.defects:
            if defect.room not in self.rooms:
                raise ValueError(f"defects: 房间 {defect.room} 未列入已验收的 rooms；expected "
                                 "a room listed in rooms")
        return self


class ReinspectionForm(Form):
    passed: bool = Field(description="整改是否全部合格")
    defects: Defects = Field(default_factory=list,
                             description="仍有或新发现的缺陷，每项 房间:缺陷（再转报修）")
    finding: Short = ""

    @model_validator(mode="after")
    def _defects_when_failed(self) -> ReinspectionForm:
        if self.passed and self.defects:
            raise ValueError("defects: 合格时不应再有缺陷；expected passed=false with defects")
        if not self.passed and not self.defects:
            raise ValueError("defects: 不合格时必须列出缺陷 (required when passed=false)")
        return self


class SignOffForm(AnswerForm):
    refusal: ClassVar[str] = "业主不签收"
    accepted: bool = Field(description="业主是否签收（验收合格）")
    reason: Short = ""


class CustodyStartForm(Form):
    water: Reading = Field(description="托管交接时水表读数")
    electricity: Reading = Field(description="托管交接时电表读数")
    note: Short = ""


class CustodyCheckForm(Form):
    occasion: Literal["weekly", "before_rain", "after_rain"] = Field(
        "weekly", description="weekly|before_rain|after_rain：每周巡查，或大雨前、大雨后")
    exterior_ok: bool = Field(description="门窗、外墙、阳台、排水是否正常")
    issues: Short = Field("", description="发现的问题")
    water: Reading = Field(description="水表读数")
    electricity: Reading = Field(description="电表读数")

    @model_validator(mode="after")
    def _issues_when_not_ok(self) -> CustodyCheckForm:
        if not self.exterior_ok and not self.issues:
            raise ValueError("issues: 有问题时必须填写 (required when exterior_ok=false)")
        return self


# --- rules ---------------------------------------------------------------------------------

def missing(required: list[str], given: list[str]) -> list[str]:
    return [k for k in required if k not in given]


def labelled(keys: list[str], table: dict[str, str]) -> str:
    return "、".join(table.get(k, k) for k in keys)


def document_duty(keys: list[str], buyer: str, lacking: list[str]) -> str:
    table = _section().document_labels
    again = f"；上次缺 {labelled(lacking, table)}" if lacking else ""
    return f"{BUYER_LABELS.get(buyer, buyer)}：核验 {labelled(keys, table)}{again}"


def agreement_duty(keys: list[str], lacking: list[str]) -> str:
    table = _agreement_labels(_section())
    again = f"；上次未签 {labelled(lacking, table)}" if lacking else ""
    return f"签署 {labelled(keys, table)}{again}"


def fee_due(area: Decimal, custody: bool, policy: Policy | None = None) -> dict[str, Any]:
    """The fees at move-in: area × rate × the months paid in advance, each item; in custody
    at the policy's share (seed: 70 %). Yuan, to the cent."""
    section = _section(policy)
    fees = section.fees
    share = section.custody.fee_share if custody else Decimal(1)
    items = {key: (area * fee.rate * fees.months * share).quantize(limits.CENT, ROUND_HALF_UP)
             for key, fee in fees.items.items()}
    total = sum(items.values(), Decimal(0))
    text_ = "；".join(f"{fees.items[k].label} {v} 元" for k, v in items.items())
    return {"total": str(total), "items": {k: str(v) for k, v in items.items()},
            "months": fees.months, "share": str(share), "area": str(area),
            "text": f"{text_}（{area} m² × {fees.months} 个月"
                    f"{f' × 托管 {share:.0%}' if custody else ''}），合计 {total} 元"}


def checklist() -> str:
    """The acceptance form's rooms and items, as the inspector's duty."""
    return "；".join(f"{r.label}（{k}）：{'、'.join(r.items)}" for k, r in _section().rooms.items())


def over_custody_limits(water: Any, electricity: Any,
                        policy: Policy | None = None) -> dict[str, str]:
    """Readings above the custody limits (seed: water 5, electricity 20 units): meter ->
    "reading > limit"; empty when within."""
    limits_ = _section(policy).custody
    over = {}
    if Decimal(str(water)) > limits_.water_max:
        over["water"] = f"{water} > {limits_.water_max}"
    if Decimal(str(electricity)) > limits_.electricity_max:
        over["electricity"] = f"{electricity} > {limits_.electricity_max}"
    return over


def custody_duty() -> str:
    limits_ = _section().custody
    return (f"托管交接：抄水电表（水 ≤ {limits_.water_max}、电 ≤ {limits_.electricity_max}，"
            "超出即报客服主管）")


def room_label(key: str) -> str:
    room = _section().rooms.get(key)
    return room.label if room else key

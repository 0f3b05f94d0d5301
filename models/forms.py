"""What each human step asks for: one typed form per step kind."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import import_module
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from core import procedures
from core.errors import PropflowError
from models import limits


def _money(value: Decimal) -> Decimal:
    from core.policy import get_policy

    return limits.money(value, get_policy().limits.money_max)


# Lengths and sums are bounded here, before the database (models/limits.py, README).
Short = Annotated[str, StringConstraints(max_length=limits.NOTE)]
Long = Annotated[str, StringConstraints(max_length=limits.REPORT)]
Link = Annotated[str, StringConstraints(max_length=limits.URL)]
Money = Annotated[Decimal, AfterValidator(_money)]


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DispatchForm(Form):
    technician: int = Field(description="派给的维修工 (staff id)")


class AcceptForm(Form):
    eta: datetime | None = Field(None, description="预计到场时间")
    note: Short = Field("", description="备注")
    reassign_to: int | None = Field(None, description="改派给 (staff id，仅主管)")


class QuoteForm(Form):
    accepted: bool = Field(description="业主是否接受报价")
    reason: Short = ""


class CompleteForm(Form):
    diagnosis: Short = Field(min_length=1, description="故障诊断")
    work_done: Short = ""
    photo: Link = Field("", description="完工照片 URL")
    charge: Money = Field(Decimal("0"), description="收费（元）")


class AnswerForm(Form):
    """A yes/no answer where a no must say why."""

    answer: ClassVar[str] = "accepted"
    refusal: ClassVar[str] = "不通过验收"

    @model_validator(mode="after")
    def _reason_when_no(self) -> AnswerForm:
        if not getattr(self, self.answer) and not getattr(self, "reason", ""):
            raise ValueError(f"reason: {self.refusal}时必须填写原因 "
                             f"(required when {self.answer}=false)")
        return self


class OwnerAcceptanceForm(AnswerForm):
    accepted: bool = Field(description="业主是否验收通过")
    reason: Short = ""


class ReinspectionForm(Form):
    finding: Short = Field(min_length=1, description="复检结论")
    redo: bool = Field(description="是否返工")


class CallbackForm(Form):
    reached: bool = Field(True, description="是否联系上业主")
    rating: int | None = Field(None, ge=1, le=5, description="满意度 1-5")
    comment: Short = ""

    @model_validator(mode="after")
    def _rating_when_reached(self) -> CallbackForm:
        if self.reached and self.rating is None:
            raise ValueError("rating: 联系上业主时必须打分 1-5 (required when reached=true)")
        return self


class NoteForm(Form):
    note: Short = Field("", description="备注")


class InvestigateForm(Form):
    findings: Long = Field(min_length=1, description="调查结果")
    proposed_resolution: Short = Field(min_length=1, description="处理方案")
    compensation: Money = Field(Decimal("0"), description="补偿金额（元）")
    exception: bool = Field(False, description="是否需要特殊处理（例外）")


class ApprovalForm(AnswerForm):
    answer: ClassVar[str] = "approved"
    refusal: ClassVar[str] = "不批准"
    approved: bool = Field(description="是否批准")
    reason: Short = ""


class ResultForm(Form):
    result: Short = Field(min_length=1, description="处理结果")


class FeedbackForm(OwnerAcceptanceForm):
    """The first responder records whether the complainant accepts the result."""

    refusal: ClassVar[str] = "投诉人不接受结果"


class UpdateForm(Form):
    message: Short = Field(min_length=1, description="向住户通报的进展")


class ResolveForm(Form):
    summary: Long = Field(min_length=1, description="处理经过")
    cause: Short = Field(min_length=1, description="原因")
    losses: Short = Field("", description="损失情况")


class ReportForm(Form):
    report: Long = Field(min_length=1, description="突发事件处理记录表")


class ReviewForm(Form):
    training_case: bool = Field(description="是否列为培训案例")
    note: Short = ""


def form_key(procedure: str, kind: str) -> str:
    """Each procedure's step has its own form (a complaint's resolve is not an emergency's)."""
    return f"{procedure}.{kind}"


@cache
def _forms() -> dict[str, type[Form]]:
    """Every declared step's form (core/procedures.py), built on first use: a procedure's own
    form module imports this one for Form, so it cannot be imported while this one loads."""
    return {form_key(p.name, s.kind): _resolve(s.form)
            for p in procedures.PROCEDURES.values() for s in p.steps}


def _resolve(name: str) -> type[Form]:
    module, _, cls = name.rpartition(":")
    found = getattr(import_module(module), cls) if module else globals().get(cls)
    if not (isinstance(found, type) and issubclass(found, Form)):
        raise LookupError(f"form {name!r} (core/procedures.py) is not a models.forms.Form")
    return found


def __getattr__(name: str) -> Any:
    if name == "FORMS":  # form key -> form class, derived from the registry
        return _forms()
    raise AttributeError(name)


def validate_form(key: str, values: dict[str, Any]) -> dict[str, Any]:
    """Checked values as JSON-ready data, or an error naming the field."""
    form = _forms()[key]
    kind = key.rsplit(".", 1)[-1]
    try:
        return form.model_validate(values).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_too_long":  # the text itself may hold a phone number
            limit = err.get("ctx", {}).get("max_length")
            msg = f"太长（{len(str(err.get('input', '')))} 字），最多 {limit} 字"
        if not field and ":" in msg:  # a rule across fields names its field first
            field, msg = (part.strip() for part in msg.split(":", 1))
        expected = ", ".join(
            f"{name}{'' if f.is_required() else '?'}" for name, f in form.model_fields.items()
        )
        # A missing value has nothing to show; a rule across fields would show the whole form.
        shown = err["type"] not in ("missing", "string_too_long") and err["loc"]
        got = f"（实际为 {err.get('input')!r}）" if shown else ""
        raise PropflowError(
            f"步骤 {kind} 的字段 {field or '?'}：{msg}{got}；"
            f"expected fields {expected}（该步骤的字段，? 为选填）",
            field=field,
        ) from exc

"""The JSON API under /api, for integrations (a bearer token) and scripts (a session).

Every route calls propflow.actions, so the API applies the CLI's rules. Built from the
procedure registry (core/procedures.py) each time the app is made: every registered
procedure gets its own POST /api/cases/<procedure> whose body is its input model, so a new
procedure appears here, and in /api/openapi.json, without endpoint code.

Scope (models.scope): a member of staff sees the cases of the communities where they hold a
role (every community of their company with a company-level role). A case, step or
notification outside it answers 404, as one that does not exist, so its existence is not
given away; a step they see but may not decide (models.authority) answers 403 naming the
rule. Opening a case in a community that is not theirs answers 403: they named the place.
Owners' phone numbers never leave: every string of a case or step is masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from core.faults import mask
from core.procedures import PROCEDURES
from core.vocabulary import CaseStatus
from models import limits
from models.directory import MAX_ID
from models.intake import model_of
from propflow import actions
from propflow.web import auth
from propflow.web.problems import Problem

T = TypeVar("T")
# Values that are ours, never personal: left as they are (a run id is hex and dashes).
UNMASKED = frozenset({"flow_run_id", "prefect_url", "form_schema"})


def masked(value: T, key: str = "") -> T:
    """Every string of an answer with phone and ID numbers masked, as in our logs."""
    if key in UNMASKED:
        return value
    if isinstance(value, str):
        return cast(T, mask(value))
    if isinstance(value, dict):
        return cast(T, {k: masked(v, str(k)) for k, v in value.items()})
    if isinstance(value, list):
        return cast(T, [masked(v, key) for v in value])
    return value


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str = Field(description="what was refused and what was expected (zh-CN, en)")
    field: str | None = Field(None, description="the field at fault")
    instance: str | None = None


class Answer(BaseModel):
    """Fields the API promises; others the service layer adds pass through as they are."""

    model_config = ConfigDict(extra="allow")


class CaseSummary(Answer):
    number: str = Field(description="工单号，如 BX-20261124-0001")
    procedure: str
    status: CaseStatus
    unit: str | None
    category: str | None
    priority: str | None
    paid: bool
    assignee: int | None
    reporter: str
    outcome: str | None
    created_at: str = Field(description="local time, YYYY-MM-DD HH:MM")
    closed_at: str = Field(description="local time; empty while open")
    flow_run_id: str | None = Field(description="the case's Prefect flow run")
    run_state: str | None


class CasePage(Answer):
    items: list[CaseSummary]
    total: int
    limit: int
    offset: int


class StepRow(Answer):
    id: int
    case: str
    step: str = Field(description="the step's kind (accept, quote, ...)")
    key: str
    role: str = Field(description="the role it waits on now (after escalation, the one reached)")
    escalated_from: str | None
    assignee: int | None
    assignee_name: str | None
    due_at: str
    level: int = Field(description="0: the assignee; n: escalated n levels")
    status: str
    breached: bool


class TimelineEntry(Answer):
    at: str
    actor: str
    action: str
    detail: dict[str, Any]


class NotificationRow(Answer):
    id: int
    case: str | None
    event: str
    to: str
    recipient: str = Field(description="staff:<id>, or an owner's masked phone")
    channel: str
    status: str
    subject: str
    created_at: str


class MyNotification(NotificationRow):
    read_at: str = Field(description="when you marked it read; empty: unread")


class CaseDetail(CaseSummary):
    description: str
    links: list[dict[str, str]]
    steps: list[StepRow]
    timeline: list[TimelineEntry]
    notifications: list[NotificationRow]
    prefect_url: str | None = Field(description="the run in the Prefect UI")


class StepDetail(StepRow):
    procedure: str
    window: str
    may_decide: list[dict[str, Any]] = Field(description="who may decide it now, and by which "
                                                         "rule")
    form_schema: dict[str, Any] = Field(description="the JSON schema of its form: the "
                                                    "decision's values")


class Opened(CaseSummary):
    note: str | None = Field(None, description="why its run has not started yet, if so")


class DecisionResult(Answer):
    step: int
    case: str
    decided_by: int
    delivery: str | None = Field(None, description="delivered: the run has it; queued: it "
                                                   "will read it (reason)")


class Read(Answer):
    id: int
    read_at: str


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "a body that is not JSON", 401: "not signed in (no or a bad token)",
             403: "not allowed", 404: "not found, or not in your communities",
             409: "already decided, or already opened (a round or a month's report)",
             422: "invalid input: the field and what was expected"}
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {s: {"model": ProblemDetails, "description": words[s],
                "content": {"application/problem+json": {"schema": schema}}} for s in statuses}


READ = _problems(401, 403, 404, 422)  # 404: a filter naming no such community
ACT = _problems(400, 401, 403, 404, 409, 422)


def staff_id(request: Request,
             principal: Annotated[auth.Principal, Depends(auth.api_principal)]) -> int:
    """The signed-in member of staff; a one-tap link's session reaches its own step alone."""
    if principal.staff_id is None:
        raise Problem(403, "无权访问 (forbidden)", "authorization：expected a staff sign-in or "
                      "an API token (propflow tokens create)", field="authorization",
                      code="forbidden")
    if principal.limited:
        raw = str(request.path_params.get("id", ""))
        on_step = request.url.path.startswith("/api/steps/") and raw.isdigit()
        auth.check_scope(principal, step_id=int(raw) if on_step else None)
    return principal.staff_id


Viewer = Annotated[int, Depends(staff_id)]
StepId = Annotated[int, Path(ge=1, le=MAX_ID, description="步骤编号 (step id)")]


def seen_step(id: StepId, viewer: Viewer) -> int:
    """404 for a step out of the viewer's scope, before its body is even read."""
    return actions.sees_step(id, viewer)


SeenStep = Annotated[int, Depends(seen_step)]


class DecisionBody(BaseModel):
    """A step's decision: the values of its form (GET /api/steps/{id}: form_schema)."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, Any] = Field(default_factory=dict, description="表单字段 (form values)")
    comment: str = Field("", max_length=limits.NOTE, description="意见 (comment)")


StaffId = Annotated[int, Field(ge=1, le=MAX_ID, description="员工编号 (staff id)")]
Reason = Annotated[str, Field(max_length=limits.NOTE, description="理由 (reason)")]


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToColleague(Operation):
    to: StaffId
    reason: Reason = ""


class AddSigner(ToColleague):
    position: Literal["before", "after"] = Field(
        "before", description="before: they sign first, then it returns to you; after: they "
                              "approve after you")


class CopyTo(Operation):
    to: list[StaffId] = Field(min_length=1, max_length=50, description="抄送给 (staff ids)")
    reason: Reason = ""


class SendBack(Operation):
    reason: Annotated[str, Field(min_length=1, max_length=limits.NOTE,
                                 description="驳回理由 (required)")]


class Withdraw(Operation):
    reason: Reason = ""


def _operations() -> dict[str, tuple[str, type[Operation] | None,
                                     Callable[[int, int, Any], dict[str, Any]]]]:
    """Approval operations (propflow.actions, models.operations), each at
    POST /api/steps/{id}/<name>: its summary, its body's model (None: no body), the call."""
    return {
        "claim": ("认领 (claim a step of your role)", None,
                  lambda step, who, _: actions.claim(step, who)),
        "unclaim": ("退回 (give a claimed step back to its role)", None,
                    lambda step, who, _: actions.unclaim(step, who)),
        "transfer": ("转办 (transfer to a colleague)", ToColleague,
                     lambda step, who, b: actions.transfer(step, who, b.to, b.reason)),
        "delegate": ("委派 (delegate; it returns for your final word)", ToColleague,
                     lambda step, who, b: actions.delegate(step, who, b.to, b.reason)),
        "add_signer": ("加签 (add an approver before or after you)", AddSigner,
                       lambda step, who, b: actions.add_signer(step, who, b.to, b.position,
                                                               b.reason)),
        "cc": ("抄送 (copy to watchers: read only)", CopyTo,
               lambda step, who, b: actions.cc(step, who, list(b.to), b.reason)),
        "send_back": ("驳回 (send back to the previous step, with a reason)", SendBack,
                      lambda step, who, b: actions.send_back(step, who, b.reason)),
        "withdraw": ("撤回 (withdraw your decision while the next step is untouched)",
                     Withdraw, lambda step, who, b: actions.withdraw(step, who, b.reason)),
    }


def _operation(call: Callable[[int, int, Any], dict[str, Any]],
               body: type[Operation] | None) -> Any:
    if body is None:
        def run(id: SeenStep, viewer: Viewer) -> dict[str, Any]:
            return masked(call(id, viewer, None))

        return run

    def run_with(id: SeenStep, viewer: Viewer, payload: Any) -> dict[str, Any]:
        return masked(call(id, viewer, payload))

    # The body's model is known only here; FastAPI reads it from the annotation.
    run_with.__annotations__["payload"] = Annotated[body, Body()]
    return run_with


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a problem naming it (the procedure's own model checks
    the fields, with the messages the CLI gives)."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Problem(422, "输入无效 (invalid input)", "body：不是有效的 JSON；expected a JSON "
                      "object of the procedure's fields", field="body", code="invalid") from None
    if not isinstance(body, dict):
        raise Problem(422, "输入无效 (invalid input)", "body：expected a JSON object of the "
                      "procedure's fields", field="body", code="invalid")
    return body


def _opener(name: str) -> Any:
    async def open_(request: Request, viewer: Viewer) -> dict[str, Any]:
        fields = await _json_object(request)
        return masked(await run_in_threadpool(actions.open_case_as, name, fields, viewer))

    open_.__name__ = f"open_{name}"
    return open_


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/cases", tags=["cases"], responses=READ, summary="工单列表 (cases)")
    def list_cases(
        viewer: Viewer,
        procedure: Annotated[str | None, Query(max_length=40, description=" | ".join(
            PROCEDURES))] = None,
        status: CaseStatus | None = None,
        community: Annotated[str | None, Query(max_length=40, description="项目编号，如 YGHY")
                             ] = None,
        overdue: Annotated[bool, Query(description="有超时未处理的步骤")] = False,
        q: Annotated[str | None, Query(max_length=40, description="工单号（部分）")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> CasePage:
        """The cases of your communities, newest first: items, total, limit, offset."""
        return CasePage.model_validate(masked(actions.find_cases(
            viewer, procedure=procedure, status=status, community=community, overdue=overdue,
            q=q, limit=limit, offset=offset)))

    @router.get("/cases/{number}", tags=["cases"], responses=READ, summary="工单详情 (a case)")
    def show_case(number: Annotated[str, Path(max_length=40)], viewer: Viewer) -> CaseDetail:
        """Summary, steps with decisions and escalations, timeline, links, notifications, and
        its Prefect run (flow_run_id, prefect_url)."""
        return CaseDetail.model_validate(masked(actions.show_case_as(number, viewer)))

    for name, spec in PROCEDURES.items():
        schema = model_of(name).model_json_schema()
        router.add_api_route(
            f"/cases/{name}", _opener(name), methods=["POST"], tags=["cases"],
            status_code=201, response_model=Opened,
            responses=_problems(400, 401, 403, 404, 409, 422),  # 409: one already opened
            summary=f"{spec.command_help or spec.zh} ({spec.en})",
            description=f"Open a {spec.en} case ({spec.zh}); its run starts at once. The body "
                        "is the procedure's input model; received_by defaults to you.",
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": schema}}}})

    @router.get("/steps", tags=["steps"], responses=READ, summary="待办步骤 (steps)")
    def list_steps(
        viewer: Viewer,
        view: Annotated[actions.StepView, Query(description=(
            "mine: assigned to me, my role or escalated to me; role: my roles' queue; "
            "overdue: past their window; escalated: escalated to a level I hold; copied: "
            "copied to me (抄送, read only)"))] = "mine",
    ) -> list[StepRow]:
        return [StepRow.model_validate(r) for r in masked(actions.steps_as(viewer, view))]

    @router.get("/steps/{id}", tags=["steps"], responses=READ, summary="步骤详情 (a step)")
    def show_step(id: StepId, viewer: Viewer) -> StepDetail:
        """The step, its window, level, who may decide it, and its form's JSON schema."""
        return StepDetail.model_validate(masked(actions.show_step_as(id, viewer)))

    @router.post("/steps/{id}/decision", tags=["steps"], responses=ACT,
                 summary="处理步骤 (decide)")
    def decide(id: SeenStep, viewer: Viewer,
               body: Annotated[DecisionBody, Body()]) -> DecisionResult:
        """Stored, then the case's run is woken: delivery says delivered, or queued with the
        reason and when the run will read it."""
        # SeenStep checked the scope before the body was read.
        return DecisionResult.model_validate(masked(actions.decide(
            id, viewer, body.values, comment=body.comment, channel="api")))

    for name, (summary, body, call) in _operations().items():
        router.add_api_route(f"/steps/{{id}}/{name}", _operation(call, body), methods=["POST"],
                             tags=["steps"], responses=ACT, summary=summary,
                             name=f"step_{name}")

    @router.get("/notifications", tags=["notifications"], responses=READ,
                summary="我的通知 (my notifications)")
    def notifications(viewer: Viewer,
                      unread: Annotated[bool, Query(description="只看未读")] = False,
                      ) -> list[MyNotification]:
        return [MyNotification.model_validate(n)
                for n in masked(actions.notifications_as(viewer, unread=unread))]

    @router.post("/notifications/{id}/read", tags=["notifications"], responses=READ,
                 summary="标记已读 (mark read)")
    def read(id: Annotated[int, Path(ge=1, le=MAX_ID)], viewer: Viewer) -> Read:
        return Read.model_validate(actions.mark_read(id, viewer))

    return router


def __getattr__(name: str) -> Any:
    """`router`: built when the app is made, from the procedures registered by then."""
    if name == "router":
        return build_router()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


"""The procedure registry: one declaration per procedure, plain data, no import of ours.

Everything else is derived from it: the policy check's required steps (core.policy), step
and procedure labels (core.labels), the message templates' folder (core.render), the forms
(models.forms), intake (models.intake), the deployments started (tasks.runs) and served
(propflow.service), prefect.yaml (propflow.deployments), the CLI's open/report commands
(propflow.cli) and the test kit (tests/flowkit.py). Names of code are strings, resolved
lazily by the layer that needs them: a read command never imports a flow or Prefect.

Adding a procedure: README, "Adding a procedure". tests/test_policy.py proves each flow asks
for exactly the steps declared here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from core.vocabulary import Priority

PRIORITIES = tuple(p.value for p in Priority)  # plain strings: shown in messages


@dataclass(frozen=True)
class Step:
    """A human step a flow may open: its kind, labels and form.

    `form` names a class of models.forms ("NoteForm"), or "module:Class" for a form of the
    procedure's own module."""

    kind: str
    zh: str
    en: str
    form: str


@dataclass(frozen=True)
class Schedule:
    """A further deployment of a procedure's flow on its own cron, with its parameters: its
    runs carry no case (an inspection plan's, making that fire time's rounds)."""

    name: str  # the deployment's: <flow name>/<name>
    cron: str
    timezone: str
    parameters: dict[str, str]
    description: str


class _Entrypoint:
    """What a declaration's `flow` entrypoint ("flows/repair.py:repair") names."""

    flow: str

    @property
    def flow_name(self) -> str:
        return self.flow.rpartition(":")[2]

    @property
    def flow_module(self) -> str:
        """"flows/repair.py:repair" -> "flows.repair"."""
        return self.flow.rpartition(":")[0].removesuffix(".py").replace("/", ".")


@dataclass(frozen=True)
class Procedure(_Entrypoint):
    name: str  # cases.procedure, the policy's procedures.<name>, the CLI group
    prefix: str  # case numbers: BX-20261124-0001
    zh: str
    en: str
    flow: str  # entrypoint "flows/repair.py:repair"; the function's name is the flow's name
    intake: str  # "models.repair:RepairIntake": the input model, its fields the CLI options
    steps: tuple[Step, ...]
    command: str = "open"  # propflow <name> <command>
    command_help: str = ""  # the command's help
    group_help: str = ""  # the CLI group's help; default: the zh label
    description: str = ""  # the deployment's, in prefect.yaml and the Prefect UI
    # The reporter chooses a priority; otherwise every step needs a `default` window.
    prioritised: bool = False
    templates: str = ""  # folder under core/templates; default: the name
    deployment: str = ""  # default: the name
    tags: tuple[str, ...] = field(default=())
    # A cron schedule (in schedule_timezone) on which Prefect also starts the flow with no
    # case: the flow's own recurring duty (the reception day's notice). Empty: none.
    schedule: str = ""
    schedule_timezone: str = "Asia/Shanghai"
    # "module:function" taking the policy and returning the procedure's further scheduled
    # deployments (list[Schedule]): an inspection plan each. Empty: none.
    schedules: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.kind for s in self.steps))

    @property
    def deployment_name(self) -> str:
        return self.deployment or self.name

    @property
    def deployment_path(self) -> str:
        """What run_deployment takes: <flow name>/<deployment name>."""
        return f"{self.flow_name}/{self.deployment_name}"

    @property
    def templates_folder(self) -> str:
        return self.templates or self.name

    def step(self, kind: str) -> Step:
        for s in self.steps:
            if s.kind == kind:
                return s
        raise KeyError(f"{self.name} has no step {kind!r}")


REPAIR = Procedure(
    name="repair", prefix="BX", zh="报修", en="repair", prioritised=True,
    flow="flows/repair.py:repair", intake="models.repair:RepairIntake",
    command="open", command_help="登记报修，生成工单号并启动流程。",
    description="报修 repair procedure — one run per work order, named after its number",
    steps=(
        Step("dispatch", "派单", "dispatch", "DispatchForm"),
        Step("accept", "接单", "accept", "AcceptForm"),
        Step("quote", "确认报价", "quote", "QuoteForm"),
        Step("complete", "完工登记", "complete", "CompleteForm"),
        Step("owner_acceptance", "业主验收", "owner acceptance", "OwnerAcceptanceForm"),
        Step("reinspection", "复检", "re-inspection", "ReinspectionForm"),
        Step("callback", "回访评价", "callback", "CallbackForm"),
        Step("phone_callback", "电话回访", "phone callback", "CallbackForm"),
    ),
)

COMPLAINT = Procedure(
    name="complaint", prefix="TS", zh="投诉", en="complaint",
    flow="flows/complaint.py:complaint", intake="models.complaint:ComplaintIntake",
    command="open", command_help="登记投诉；接待人即首问责任人。",
    description="投诉 complaint procedure — the first responder owns it to the end",
    steps=(
        Step("acknowledge", "确认受理", "acknowledge", "NoteForm"),
        Step("investigate", "调查与方案", "investigate", "InvestigateForm"),
        Step("approve_resolution", "审批方案", "approve resolution", "ApprovalForm"),
        Step("resolve", "处置完毕", "resolve", "ResultForm"),
        Step("feedback", "结果反馈", "feedback", "FeedbackForm"),
        Step("callback", "回访评价", "callback", "CallbackForm"),
        Step("phone_callback", "电话回访", "phone callback", "CallbackForm"),
    ),
)

EMERGENCY = Procedure(
    name="emergency", prefix="YJ", zh="应急事件", en="emergency",
    flow="flows/emergency.py:emergency", intake="models.emergency:EmergencyIntake",
    command="report", command_help="报告突发事件，启动应急流程。", group_help="应急 / 突发事件",
    description="应急 emergency procedure — minutes, fan-out, residents told at each turn",
    steps=(
        Step("activate", "启动应急预案", "activate", "NoteForm"),
        Step("acknowledge", "确认受理", "acknowledge", "NoteForm"),
        Step("update", "进展通报", "update", "UpdateForm"),
        Step("resolve", "处置完毕", "resolve", "ResolveForm"),
        Step("hazard_check", "同类隐患排查", "check of similar hazards",
             "models.emergency:HazardCheckForm"),
        Step("incident_report", "突发事件处理记录表", "incident report", "ReportForm"),
        Step("training_review", "案例评审", "training review", "ReviewForm"),
        Step("receive", "接待", "receive", "models.emergency:OfficeReceiveForm"),
        Step("handle", "处理", "handle", "ResultForm"),
    ),
)

MOVEIN = Procedure(
    name="movein", prefix="RZ", zh="入住", en="move-in",
    flow="flows/movein.py:movein", intake="models.movein:MoveInIntake",
    command="open",
    command_help="登记入住：核验资料、签署协议、缴费、交付钥匙、联合验收（缺陷转报修）、复验与业主签收；"
                 "--custody 托管。",
    description="入住 move-in — documents, agreements, fees, keys, the joint inspection with "
                "its defect repairs, re-inspection and sign-off; custody duties",
    steps=(
        Step("documents", "资料核验", "documents check", "models.movein:DocumentsForm"),
        Step("agreements", "签署协议", "agreements signed", "models.movein:AgreementsForm"),
        Step("fees", "缴费", "fees", "models.movein:FeesForm"),
        Step("handover", "交付钥匙资料", "keys and documents handed over",
             "models.movein:HandoverForm"),
        Step("inspection", "联合验收", "joint inspection", "models.movein:InspectionForm"),
        Step("rectification", "缺陷整改", "defect repairs", "NoteForm"),
        Step("reinspection", "复验", "re-inspection", "models.movein:ReinspectionForm"),
        Step("sign_off", "业主签收", "owner's sign-off", "models.movein:SignOffForm"),
        Step("custody_start", "托管交接", "custody hand-over", "models.movein:CustodyStartForm"),
        Step("custody_check", "托管巡查", "custody check", "models.movein:CustodyCheckForm"),
        Step("custody_end", "托管结束", "custody ended", "NoteForm"),
    ),
)

VISIT = Procedure(
    name="visit", prefix="CG", zh="参观接待", en="VIP visit",
    flow="flows/visit.py:visit", intake="models.visit:VisitIntake",
    command="book",
    command_help="登记参观接待：按接待等级倒排准备步骤（非办公时间须项目经理批准）。",
    description="参观接待 VIP visit — a countdown to the arrival, each step due at its time",
    steps=(
        Step("approve_visit", "非办公时间接待审批", "out-of-hours approval",
             "models.visit:VisitApprovalForm"),
        Step("briefing", "接待前布置会", "briefing", "NoteForm"),
        Step("duty_plan", "接待安排表", "duty plan", "models.visit:DutyPlanForm"),
        Step("readiness", "安全设施检查", "readiness check", "models.visit:ReadinessForm"),
        Step("cleaning", "重点清洁与布置", "cleaning", "models.visit:CleaningForm"),
        Step("air_conditioning", "开启空调", "air conditioning", "NoteForm"),
        Step("supplies", "预备用品", "supplies", "NoteForm"),
        Step("route_walk", "巡视接待路线", "route walk", "models.visit:FindingForm"),
        Step("lift", "专用电梯（手动）", "manual lift", "NoteForm"),
        Step("at_post", "全员到岗", "everyone at post", "NoteForm"),
        Step("parking", "预留车位", "parking", "models.visit:ParkingForm"),
        Step("restore", "恢复现场", "restore", "NoteForm"),
        Step("review", "接待总结", "review", "models.visit:FindingForm"),
        Step("archive", "资料归档", "archive", "NoteForm"),
    ),
)

RECEPTION = Procedure(
    name="reception", prefix="JF", zh="接访日", en="reception day",
    flow="flows/reception.py:reception", intake="models.reception:MatterIntake",
    command="matter", command_help="登记接访日来访事项（接访来访登记表），逐级签批后受理。",
    group_help="经理接访日：每月第一个星期五 10:00-12:00（遇节假日顺延）",
    description="接访日 reception day — a visitor's matter signed off, accepted, followed up; "
                "scheduled daily to tell residents a week before each reception day",
    steps=(
        Step("signoff_cs", "客服部签字", "customer-service sign-off",
             "models.reception:SignoffForm"),
        Step("signoff_department", "责任部门签字", "department sign-off",
             "models.reception:SignoffForm"),
        Step("signoff_supervisor", "分管领导签字", "supervisor sign-off",
             "models.reception:SignoffForm"),
        Step("accept", "接访经理受理", "manager's acceptance", "models.reception:AcceptMatterForm"),
        Step("handle", "责任部门办理", "handling", "models.reception:HandleForm"),
        Step("follow_up", "跟进督办", "follow-up", "models.reception:FollowUpForm"),
        Step("satisfaction", "满意度回访", "satisfaction check", "CallbackForm"),
    ),
    schedule="0 9 * * *",
)

INSPECTION = Procedure(
    name="inspection", prefix="XC", zh="巡查", en="inspection round",
    flow="flows/inspection.py:inspection", intake="models.inspection:RoundIntake",
    command="round",
    command_help="开一轮临时巡查（计划内的巡查由各计划的定时部署按时生成）：每个检查点一个步骤。",
    group_help="巡查：按策略中的巡查计划定时生成，每轮每个检查点签到并填写检查表",
    description="巡查 inspection round — one step per checkpoint, due at the round's end; "
                "each plan of the policy is its own scheduled deployment inspection/<plan>",
    steps=(
        Step("checkpoint", "检查点巡查", "checkpoint", "models.inspection:CheckpointForm"),
        Step("follow_up", "整改复查", "rectification follow-up",
             "models.inspection:FollowUpForm"),
    ),
    schedules="models.inspection:schedules",
)

BUILDING_REPORT = Procedure(
    name="building_report", prefix="LY", zh="楼宇综合情况表", en="building report",
    flow="flows/building_report.py:building_report",
    intake="models.building_report:BuildingReportIntake",
    command="open",
    command_help="编制一个项目某月的楼宇综合情况表（据当月巡查记录），送客服主管审批。",
    group_help="楼宇综合情况表：每月 28 日据当月巡查生成，客服主管审批",
    description="楼宇综合情况表 building report — on the 28th each community's month of rounds "
                "compiled and put to the 客服主管 for approval",
    steps=(
        Step("approve", "主管审批", "supervisor's approval", "ApprovalForm"),
        Step("revise", "补正巡查记录", "records corrected", "ResultForm"),
    ),
    schedule="0 9 28 * *",
)

PROCEDURES: dict[str, Procedure] = {
    p.name: p for p in (REPAIR, COMPLAINT, EMERGENCY, MOVEIN, VISIT, RECEPTION, INSPECTION,
                        BUILDING_REPORT)}


@dataclass(frozen=True)
class Duty(_Entrypoint):
    """A scheduled flow that is no procedure: it opens no case and asks nobody (the monthly
    report). Deployed as <flow name>/<name> on its cron, beside the procedures'."""

    name: str
    flow: str  # entrypoint "flows/monthly_report.py:monthly_report"
    schedule: str  # cron, in schedule_timezone
    description: str
    schedule_timezone: str = "Asia/Shanghai"
    tags: tuple[str, ...] = field(default=())

    @property
    def deployment_path(self) -> str:
        return f"{self.flow_name}/{self.name}"


MONTHLY_REPORT = Duty(
    name="monthly_report", flow="flows/monthly_report.py:monthly_report",
    schedule="0 8 1 * *",
    description="月度报表 monthly report — on the 1st at 08:00, last month's report of each "
                "community written (HTML, XLSX) and its project manager told")

ROUND_NOTICE = Duty(
    name="round_notice", flow="flows/round_notice.py:round_notice",
    schedule="0 8 * * *",
    description="巡查住户通知 residents' notice — daily at 08:00, every household told of a "
                "plan's rounds on its notice day (pest control 消杀, two days before), once")

DUTIES: dict[str, Duty] = {d.name: d for d in (MONTHLY_REPORT, ROUND_NOTICE)}


def register(procedure: Procedure) -> Procedure:
    """Add a procedure (tests, or a deployment's own procedures) before the layers above are
    imported: what they derive at import (the CLI, the forms) is built once."""
    PROCEDURES[procedure.name] = procedure
    return procedure


def get(name: str) -> Procedure:
    return PROCEDURES[name]


class _Steps(Mapping[str, tuple[str, ...]]):
    """Each procedure's step kinds, as the registry says now."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return PROCEDURES[name].kinds

    def __iter__(self) -> Iterator[str]:
        return iter(PROCEDURES)

    def __len__(self) -> int:
        return len(PROCEDURES)


STEPS: Mapping[str, tuple[str, ...]] = _Steps()

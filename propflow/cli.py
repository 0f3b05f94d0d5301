"""propflow: the command line. Every command takes --json; errors go to stderr, exit 2."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup
from typer.exceptions import TyperException

from core.errors import PropflowError
from core.vocabulary import CaseStatus, StepStatus


class _Procedures(TyperGroup):
    """The root group: a registered procedure's group (core/procedures.py) is built when it
    is asked for, so other commands do not import the intake models to start."""

    # Any: typer's click types are its own vendored copy's.
    def list_commands(self, ctx: Any) -> list[str]:
        from core.procedures import PROCEDURES

        return [*super().list_commands(ctx), *(p for p in PROCEDURES if p not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        from core.procedures import PROCEDURES

        if cmd_name not in self.commands and cmd_name in PROCEDURES:
            self.commands[cmd_name] = procedure_group(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(help="物业客服流程 propflow", no_args_is_help=True, add_completion=False,
                  cls=_Procedures)
demo_app = typer.Typer(help="示范数据", no_args_is_help=True)
steps_app = typer.Typer(help="待办步骤", no_args_is_help=True)
cases_app = typer.Typer(help="工单", no_args_is_help=True)
notes_app = typer.Typer(help="通知", no_args_is_help=True)
clock_app = typer.Typer(help="时钟（培训模式可拨动）", no_args_is_help=True)
db_app = typer.Typer(help="数据库", no_args_is_help=True)
deployments_app = typer.Typer(help="Prefect 部署 (prefect.yaml)", no_args_is_help=True)
for sub, name in ((demo_app, "demo"), (steps_app, "steps"), (cases_app, "cases"),
                  (notes_app, "notifications"), (clock_app, "clock"), (db_app, "db"),
                  (deployments_app, "deployments")):
    app.add_typer(sub, name=name)

JSON = typer.Option(False, "--json", help="输出 JSON")


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Prepare the database, run, print. Every command ends here: a refused request exits 2
    with the reason; our own fault exits 1 with a reference into the log, never a traceback."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        as_json = kwargs.get("as_json", False)
        try:
            from core.policy import ensure_valid
            from models.db import upgrade

            ensure_valid()
            upgrade()
            fn(*args, **kwargs)
            sys.stdout.flush()  # a reader gone away is met here, not at the interpreter's exit
        except PropflowError as exc:
            if as_json:
                print(json.dumps(exc.as_dict(), ensure_ascii=False), file=sys.stderr)
            else:
                print(f"错误：{exc.message}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own exits and usage errors (its click is a vendored copy)
        except BrokenPipeError:
            # The reader stopped reading (`cases list | head`): what was asked is done, the
            # rest of the listing has nobody to read it. Quiet, as Unix tools are; stdout is
            # pointed at /dev/null so the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as exc:  # noqa: BLE001 - the one place every fault is reported
            from core import faults

            reference, path = faults.record(exc)
            text = faults.message(exc, reference, path)
            if as_json:
                print(json.dumps({"error": "internal", "field": None, "message": text,
                                  "reference": reference, "log": str(path) if path else None},
                                 ensure_ascii=False), file=sys.stderr)
            else:
                print(f"错误：{text}", file=sys.stderr)
            raise typer.Exit(1) from None

    return run


def emit(data: Any, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif isinstance(data, list) and columns:
        print("\t".join(columns))
        for row in data:
            print("\t".join(str(row.get(c, "")) for c in columns))
    elif isinstance(data, dict):
        for key, value in data.items():
            shown = json.dumps(value, ensure_ascii=False, default=str) if isinstance(
                value, (dict, list)) else value
            print(f"{key}: {shown}")
    else:
        print(data)


@demo_app.command("seed")
@command
def demo_seed(as_json: bool = JSON) -> None:
    """建立示范公司、项目、楼栋、房屋和各角色员工（可重复执行）。"""
    from propflow.demo import seed

    data = seed()
    if as_json:
        emit(data, True)
        return
    print(f"{data['company']['name']} / {data['community']['name']} ({data['community']['code']})")
    print(f"房屋 {len(data['units'])} 套，例如 {', '.join(data['units'][:4])}；"
          f"有住户登记的 {data['households']} 套")
    emit(data["staff"], False, ["id", "name", "role", "skills", "login"])
    from propflow.demo import DEMO_PASSWORD

    print(f"网页登录 (web sign-in)：员工编号或 login，密码 {DEMO_PASSWORD}"
          f"（用 propflow users set-password 改过的除外）")


def intake_command(name: str) -> Callable[..., Any]:
    """`propflow <procedure> <command>`: one option per field of the procedure's input model
    (models.intake), in its order, with its description as help."""
    from core.procedures import get
    from models.intake import model_of

    spec = get(name)
    params = []
    for field, info in model_of(name).model_fields.items():
        default: Any = ... if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(default, list):  # a list is given as "1,2"
            default = ",".join(map(str, default))
        kind: Any = bool if isinstance(default, bool) else str if default is not None \
            else str | None  # a yes/no field is a flag: --custody
        params.append(inspect.Parameter(
            field, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
            default=typer.Option(default, f"--{(info.alias or field).replace('_', '-')}",
                                 help=info.description)))
    params.append(inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=bool, default=JSON))

    def open_(**fields: Any) -> None:
        from propflow import actions

        as_json = fields.pop("as_json")
        emit(actions.open_case(name, fields), as_json)

    open_.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    open_.__annotations__ = {p.name: p.annotation for p in params}
    open_.__name__ = f"{name}_{spec.command}"
    open_.__doc__ = spec.command_help
    return command(open_)


def procedure_group(name: str) -> TyperGroup:
    """`propflow <procedure>`, holding its intake command."""
    from core.procedures import get

    spec = get(name)
    group = typer.Typer(help=spec.group_help or spec.zh, no_args_is_help=True)
    group.command(spec.command)(intake_command(name))
    if name == "reception":  # its calendar, and the notice its schedule sends
        group.command("days")(reception_days)
        group.command("announce")(reception_announce)
    if name == "repair":  # progress while work is under way, merged for the owner hourly
        group.command("progress")(repair_progress)
    if name == "inspection":  # the QR codes posted at the checkpoints
        group.command("sheet")(inspection_sheet)
    built = typer.main.get_group(group)
    built.name = name
    return built


@command
def repair_progress(case: str = typer.Argument(..., help="工单号 BX-..."),
                    as_staff: str = typer.Option(..., "--as", help="操作人员工编号"),
                    note: str = typer.Option(..., "--note", help="进展，如 已更换阀门，正在试水"),
                    as_json: bool = JSON) -> None:
    """通报维修进展：维修进行中，业主每小时收到一次进展汇总（同一小时内的进展合并为一条）。"""
    from propflow import actions

    emit(actions.repair_progress(case, as_staff, note), as_json)


@command
def inspection_sheet(community: str = typer.Option(..., "--community", help="项目编号，如 YGHY"),
                     plan: str = typer.Option(..., "--plan",
                                              help="巡查计划（策略 procedures.inspection.plans）"),
                     out: str = typer.Option(..., "--out", help="输出文件：sheet.pdf 或 sheet.png"),
                     as_json: bool = JSON) -> None:
    """打印巡查签到码：每个检查点一个二维码（签名链接），下方印检查点名称。

    PDF 为 A4 每页 6 个，PNG 为一整张图；扫码并登录后记录签到人和时间（README“巡查签到码”）。"""
    from pathlib import Path

    from propflow import checkpoints

    target = Path(out)
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in ("pdf", "png"):
        raise PropflowError(f"out：{target.name!r} 的扩展名应为 .pdf 或 .png；expected a file name "
                            "such as sheet.pdf or sheet.png", field="out")
    drawn = checkpoints.sheet(community, plan, fmt)
    try:
        target.write_bytes(drawn)
    except OSError as exc:
        raise PropflowError(f"out：无法写入 {str(target)!r}（{exc.strerror}）；expected a path in "
                            "a writable directory", field="out") from None
    emit({"out": str(target), "format": fmt, "bytes": len(drawn),
          "checkpoints": list(checkpoints.plan(plan).checkpoints)}, as_json)


@command
def reception_days(year: int = typer.Option(..., "--year", help="年份，如 2026"),
                   as_json: bool = JSON) -> None:
    """列出全年的经理接访日（每月第一个星期五，遇节假日顺延至下一个工作日）。"""
    from propflow import actions

    days = actions.reception_days(year)
    if as_json:
        emit(days, True)
        return
    for day in days:
        moved = f"  （原定 {day['scheduled']}，遇节假日顺延）" if day["postponed"] else ""
        print(f"{day['day']} {day['weekday']} {day['start']}-{day['end']}{moved}")


@command
def reception_announce(as_json: bool = JSON) -> None:
    """现在执行一次接访日通知（计划任务每天执行）：接访日前一周通知住户和项目经理。"""
    from propflow import actions

    told = actions.announce_reception_days()
    if as_json:
        emit(told, True)
    elif not told:
        print("没有需要通知的接访日 (no reception day within its notice period, or told already)")
    for item in told:
        print(f"{item['community']}：接访日 {item['day']} 已通知 {item['households']} "
              "户住户及项目经理")


@deployments_app.command("write")
@command
def deployments_write(check: bool = typer.Option(
                          False, "--check", help="只比较，不写入；不一致时退出码 2"),
                      as_json: bool = JSON) -> None:
    """按流程登记 (core/procedures.py) 生成 prefect.yaml；--check 检查已提交的文件是否一致。"""
    from propflow import deployments

    path = deployments.PREFECT_YAML
    if check:
        deployments.check(path)
        emit({"prefect.yaml": str(path), "matches_registry": True}, as_json)
        return
    changed = deployments.write(path)
    emit({"prefect.yaml": str(path), "written": changed}, as_json)


@steps_app.command("list")
@command
def steps_list(case: str | None = typer.Option(None, "--case"),
               role: str | None = typer.Option(None, "--role", help="当前所在角色（含升级后）"),
               mine: bool = typer.Option(False, "--mine", help="我的待办（配合 --as）"),
               as_staff: str | None = typer.Option(None, "--as", help="员工编号"),
               overdue: bool = typer.Option(False, "--overdue", help="只列超时的步骤"),
               all_: bool = typer.Option(False, "--all", help="包括已处理的步骤"),
               copied: bool = typer.Option(False, "--copied", help="抄送给我的（配合 --as）"),
               as_json: bool = JSON) -> None:
    """列出待处理步骤：--mine --as 员工编号 为指派给本人、本人角色或已升级到本人层级的步骤；
    --copied --as 为抄送给本人的步骤。"""
    from propflow import actions as service

    if (mine or copied) and as_staff is None:
        raise PropflowError("as：--mine / --copied 需要 --as 员工编号；expected --mine --as "
                            "STAFF", field="as")
    rows = service.list_steps(case=case, role=role, status=None if all_ else StepStatus.WAITING,
                              mine=None if copied else as_staff, overdue=overdue,
                              copied=as_staff if copied else None)
    if not as_json:  # names beside ids
        for row in rows:
            row["assignee"] = _named(row["assignee"], row["assignee_name"])
    emit(rows, as_json, ["id", "case", "step", "role", "assignee", "due_at", "level", "status"])


def _named(staff_id: int | None, name: str | None) -> str:
    return f"{staff_id} {name}" if staff_id else "-"


@steps_app.command("show")
@command
def steps_show(step: str = typer.Argument(..., help="步骤编号"), as_json: bool = JSON) -> None:
    """步骤详情：表单字段（* 为必填）、时限、升级层级、谁可以处理。"""
    from propflow import actions as service

    data = service.show_step(step)
    if as_json:
        emit(data, True)
        return
    print(f"步骤 step {data['id']} {data['key']} ({data['step']}) · {data['case']} "
          f"{data['procedure']} · {data['status']}")
    origin = f"（升级自 escalated from {data['escalated_from']}）" if data["escalated_from"] else ""
    print(f"角色 role: {data['role']}{origin}   "
          f"处理人 assignee: {_named(data['assignee'], data['assignee_name'])}")
    print(f"时限 window: {data['window']}, opened {data['opened_at']}, due {data['due_at']}"
          f"{' 超时 breached' if data['breached'] else ''}")
    if data.get("duty"):
        print(f"任务 duty: {data['duty']}")
    chain = " → ".join(data["chain"]) or "-"
    print(f"层级 level: {data['level']} (chain {chain}; next {data['next_role'] or '-'})")
    for e in data["escalations"]:
        print(f"  升级 escalation → L{e['level']} {e['to_role']} (lapsed {e['lapsed_at']})")
    who = ", ".join(f"{p['id']} {p['name']} ({'/'.join(p['roles'])}; {p['rule']})"
                    for p in data["may_decide"])
    print(f"可处理 may decide: {who or '-'}")
    print("表单 form (* 必填 required):")
    for f in data["fields"]:
        mark = "*" if f["required"] else " "
        print(f"  {mark} {f['name']:<20} {f['type']:<16} {f['description']}")
    if data.get("sign_mode"):
        print(f"多人审批 signers: {data['sign_mode']}")
    for r in data.get("signers", []):
        who = r["staff"] if r["staff"] else f"role {r['role']}"
        print(f"  {r['label']} ({r['kind']}) {who}: {r['status']}"
              f"{' ' + json.dumps(r['values'], ensure_ascii=False) if r['values'] else ''}")
    if data.get("waiting_for"):
        print("等待 waiting for: " + ", ".join(w["who"] for w in data["waiting_for"]))
    if data.get("replaced_by"):
        print(f"已由步骤 {data['replaced_by']} 取代 (replaced: sent back or withdrawn)")
    if "decision" in data:
        d = data["decision"]
        print(f"决定 decided by {_named(d['by'], d['by_name'])} at {d['at']}: "
              f"{json.dumps(d['values'], ensure_ascii=False)}")


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PropflowError(f"--set：{pair!r} 格式不对；expected KEY=VALUE", field="set")
        values[key.strip()] = value
    return values


@steps_app.command("decide")
@command
def steps_decide(step: str = typer.Argument(..., help="步骤编号"),
                 as_staff: str = typer.Option(..., "--as", help="处理人员工编号"),
                 sets: list[str] = typer.Option([], "--set", help="KEY=VALUE，可重复"),
                 comment: str = typer.Option("", "--comment"),
                 as_json: bool = JSON) -> None:
    """处理一个步骤。"""
    from models.outbox import audit_extra
    from propflow import actions as service

    with audit_extra(os_user=os_user()):
        result = service.decide(step, as_staff, parse_sets(sets), comment=comment)
    if not as_json:  # "delivery: queued" and its reason say it; a bare False reads as lost
        result.pop("delivered", None)
    emit(result, as_json)


AS = typer.Option(..., "--as", help="操作人员工编号")
REASON = typer.Option("", "--reason", help="说明 / reason")


def _op(name: str, *args: Any, as_json: bool, **kwargs: Any) -> None:
    """An operation on a step (propflow.actions), audited with the operating-system user;
    a refusal names its rule and exits 2."""
    from models.outbox import audit_extra
    from propflow import actions as service

    with audit_extra(os_user=os_user()):
        result = getattr(service, name)(*args, **kwargs)
    emit(result, as_json)


@steps_app.command("claim")
@command
def steps_claim(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                as_json: bool = JSON) -> None:
    """认领：把本角色未指派的步骤领到自己名下。"""
    _op("claim", step, as_staff, as_json=as_json)


@steps_app.command("unclaim")
@command
def steps_unclaim(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                  as_json: bool = JSON) -> None:
    """退回：把自己认领的步骤退回本角色。"""
    _op("unclaim", step, as_staff, as_json=as_json)


@steps_app.command("transfer")
@command
def steps_transfer(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                   to: str = typer.Option(..., "--to", help="接手的同事（须持该步骤角色）"),
                   reason: str = REASON, as_json: bool = JSON) -> None:
    """转办：交给持同一角色的同事处理，由其决定。"""
    _op("transfer", step, as_staff, to, reason=reason, as_json=as_json)


@steps_app.command("delegate")
@command
def steps_delegate(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                   to: str = typer.Option(..., "--to", help="受托同事（员工编号）"),
                   reason: str = REASON, as_json: bool = JSON) -> None:
    """委派：同事代为处理，其答复作为建议交回您定夺。"""
    _op("delegate", step, as_staff, to, reason=reason, as_json=as_json)


@steps_app.command("add-signer")
@command
def steps_add_signer(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                     to: str = typer.Option(..., "--to", help="加签的同事（员工编号）"),
                     position: str = typer.Option(
                         "before", "--position", help="before 前加签（先于您）| after 后加签"),
                     reason: str = REASON, as_json: bool = JSON) -> None:
    """加签：before 由其先处理再回到您；after 您处理后还须其审批，流程才继续。"""
    _op("add_signer", step, as_staff, to, position=position, reason=reason, as_json=as_json)


@steps_app.command("cc")
@command
def steps_cc(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
             to: str = typer.Option(..., "--to", help="抄送人员工编号，逗号分隔，如 3,5"),
             reason: str = REASON, as_json: bool = JSON) -> None:
    """抄送：通知同事并允许其查看步骤和工单（只读，不能处理）。"""
    _op("cc", step, as_staff, to, reason=reason, as_json=as_json)


@steps_app.command("send-back")
@command
def steps_send_back(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
                    reason: str = typer.Option(..., "--reason", help="驳回原因（必填）"),
                    as_json: bool = JSON) -> None:
    """驳回：退回本工单上一个已处理的步骤，由原处理人重新处理后按流程回到这里。"""
    _op("send_back", step, as_staff, reason, as_json=as_json)


@steps_app.command("withdraw")
@command
def steps_withdraw(step: str = typer.Argument(..., help="步骤编号（您已处理的）"),
                   as_staff: str = AS, reason: str = REASON, as_json: bool = JSON) -> None:
    """撤回：下一步尚未处理时撤回您的决定，下一步取消，本步骤重新等待您处理。"""
    _op("withdraw", step, as_staff, reason=reason, as_json=as_json)


@steps_app.command("link")
@command
def steps_link(step: str = typer.Argument(..., help="步骤编号"), as_staff: str = AS,
               for_staff: str | None = typer.Option(None, "--for",
                                                    help="给该员工（省略则给业主）"),
               as_json: bool = JSON) -> None:
    """新的一键链接（业主答复页，或员工只开此步骤），由前台转发；只能用一次，会过期。"""
    _op("new_link", step, as_staff, for_staff, as_json=as_json)


@cases_app.command("list")
@command
def cases_list(as_json: bool = JSON) -> None:
    from propflow import actions as service

    rows = service.list_cases()
    if not as_json:
        for row in rows:
            row["run_state"] = row["run_state"] or "-"
    emit(rows, as_json, ["number", "status", "run_state", "unit", "category", "priority",
                         "assignee", "created_at"])


@cases_app.command("show")
@command
def cases_show(number: str, as_json: bool = JSON) -> None:
    """工单详情：状态和完整时间线。"""
    from propflow import actions as service

    data = service.show_case(number)
    if as_json:
        emit(data, True)
        return
    for key in ("number", "status", "outcome", "unit", "category", "priority", "paid",
                "reporter", "description", "flow_run_id"):
        print(f"{key}: {data[key]}")
    if data["run_state"]:
        restarts = data["run_restarts"]
        print(f"run_state: {data['run_state']}"
              f"{f' (自动重启 {restarts} 次 / restarted {restarts}x)' if restarts else ''}")
    for key, value in (data.get("details") or {}).items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
        print(f"{key}: {shown}")
    if data["status"] == CaseStatus.STUCK:
        print("流程停滞 (stuck)：按记录自动重启后仍未恢复，已通知公司客服中心；"
              "expected a person to read the run's log in the Prefect UI and act")
    print("\n步骤 steps:")
    for s in data["steps"]:
        print(f"  #{s['id']} {s['key']} {s['role']} level={s['level']} {s['status']} "
              f"due {s['due_at']}{' 超时' if s['breached'] else ''}")
        for e in s["escalations"]:
            print(f"     升级 escalation → L{e['level']} {e['to_role']} (lapsed {e['lapsed_at']})")
        if "decision" in s:
            print(f"     决定 by {s['decision']['by']}: {s['decision']['values']}")
    print("\n通知 notifications:")
    for n in data["notifications"]:
        print(f"  {n['created_at']} [{n['channel']}/{n['status']}] → {n['to']}: {n['subject']}")
    print("\n时间线 timeline:")
    for t in data["timeline"]:
        detail = json.dumps(t["detail"], ensure_ascii=False)
        print(f"  {t['at']} {t['actor']} {t['action']} {detail}")


@notes_app.command("list")
@command
def notifications_list(case: str | None = typer.Option(None, "--case"),
                       to: str | None = typer.Option(None, "--to", help="收件员工编号"),
                       as_json: bool = JSON) -> None:
    """通知发件箱：--case 一个工单的，--to 发给某位员工的。"""
    from propflow import actions as service

    emit(service.list_notifications(case, to=to), as_json,
         ["id", "created_at", "case", "event", "channel", "status", "to", "subject"])


@clock_app.command("show")
@command
def clock_show(as_json: bool = JSON) -> None:
    from core.clock import now
    from core.settings import get_settings
    from models.notices import local

    at = now()
    emit({"now": local(at), "utc": at.isoformat(), "mode": get_settings().mode}, as_json)


# "-1h" must reach the duration check, not be taken for an unknown option.
@clock_app.command("advance", context_settings={"ignore_unknown_options": True})
@command
def clock_advance(delta: str | None = typer.Argument(None, help="如 2h、30m、1d"),
                  to_next_due: bool = typer.Option(
                      False, "--to-next-due", help="拨到最早到期的待处理步骤刚过期时"),
                  as_json: bool = JSON) -> None:
    """培训模式：把模拟时钟向前拨（如 2h、30m、1d，或 --to-next-due），生成这段时间内到点的巡查，
    并立即跑一遍时限检查。"""
    from core import clock
    from models import simclock
    from models.notices import local
    from propflow import report, rounds, sla

    if (delta is None) == (not to_next_due):
        raise PropflowError("delta：给出一个时长（如 1h）或 --to-next-due，二者选一；"
                            "expected a duration such as 1h, or --to-next-due", field="delta")
    shown: dict[str, Any] = {}
    before = clock.now()
    if to_next_due:
        at, step_id = simclock.advance_to_next_due()
        shown["past_due_step"] = step_id
    else:
        at = clock.advance(delta or "")
    # The inspection plans' schedules over the span: their rounds, as Prefect would have.
    made = rounds.catch_up(before, at)
    if made:
        shown["rounds"] = len(made)
    # The residents' notices before rounds (pest control: two days before), as the daily
    # round_notice duty would have given them by now.
    from tasks.round_notice import announce_round_notices

    announced = announce_round_notices()
    if announced:
        shown["notices"] = [f"{n['community']} {n['plan']} {n['day']}" for n in announced]
    # The monthly report's schedule (the 1st, 08:00) too: last month's reports, PM told.
    reports = report.catch_up(before, at)
    if reports:
        shown["reports"] = [f"{r['community']} {r['month']}" for r in reports]
    result = sla.tick()
    emit({"now": local(at), **shown, "lapsed": result.lapsed, "warned": result.warned,
          "woken": result.woken}, as_json)


@db_app.command("upgrade")
@command
def db_upgrade(as_json: bool = JSON) -> None:
    """迁移数据库到最新版本。"""
    from core.settings import get_settings
    from models.db import safe_url

    emit({"database": safe_url(get_settings().db_url), "status": "up to date"}, as_json)


@app.command("check")
@command
def check(as_json: bool = JSON) -> None:
    """校验策略文件。"""
    from core.policy import load_policy
    from core.settings import get_settings

    path = get_settings().policy
    policy = load_policy(path)
    emit({"policy": str(path), "procedures": sorted(policy.procedures), "ok": True}, as_json)


users_app = typer.Typer(help="员工账号（网页登录）", no_args_is_help=True)
tokens_app = typer.Typer(help="API 令牌（集成用）", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


def os_user() -> str:
    """Who typed the command on this machine: recorded beside --as, which anyone can type."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


@users_app.command("set-password")
@command
def users_set_password(staff: str = typer.Argument(..., help="员工编号"),
                       login: str | None = typer.Option(
                           None, "--login", help="登录名（可用它代替员工编号登录）"),
                       password_stdin: bool = typer.Option(
                           False, "--password-stdin", help="从标准输入读一行作为密码"),
                       as_json: bool = JSON) -> None:
    """设置员工的网页登录密码（至少 8 个字符）；不带 --password-stdin 时提示输入两次。"""
    from propflow import accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("新密码 (new password)", hide_input=True,
                                confirmation_prompt="再输入一次 (repeat)")
    emit(accounts.set_password(staff, password, login=login, actor=f"cli:{os_user()}"),
         as_json)


@tokens_app.command("create")
@command
def tokens_create(staff: str = typer.Argument(..., help="员工编号"),
                  name: str = typer.Option("", "--name", help="用途，如 erp-sync"),
                  as_json: bool = JSON) -> None:
    """为员工创建 API 令牌；令牌只显示这一次。"""
    from propflow import accounts

    row = accounts.create_token(staff, name=name, actor=f"cli:{os_user()}")
    if as_json:
        emit(row, True)
        return
    print(f"令牌 {row['id']}（{row['staff_name']}，{row['name'] or '-'}）：")
    print(row["token"])
    print("只显示这一次，请妥善保存；用法 (use): Authorization: Bearer <token>", file=sys.stderr)


@tokens_app.command("list")
@command
def tokens_list(as_staff: str | None = typer.Option(None, "--as", help="只列此员工的令牌"),
                as_json: bool = JSON) -> None:
    """列出 API 令牌（不含令牌本身）。"""
    from propflow import accounts

    emit(accounts.list_tokens(as_staff), as_json,
         ["id", "staff", "staff_name", "name", "created_at", "last_used_at", "revoked_at"])


@tokens_app.command("revoke")
@command
def tokens_revoke(token: int = typer.Argument(..., help="令牌编号（tokens list）"),
                  as_json: bool = JSON) -> None:
    """撤销一个 API 令牌：此后用它的请求得到 401。"""
    from propflow import accounts

    emit(accounts.revoke_token(token, actor=f"cli:{os_user()}"), as_json)


report_app = typer.Typer(help="报表", no_args_is_help=True)
app.add_typer(report_app, name="report")
COMMUNITY = typer.Option(..., "--community", help="项目编号，如 YGHY；all 为全部项目")
MONTH = typer.Option(None, "--month", help="月份 YYYY-MM，如 2026-11；默认上个月")


@report_app.command("monthly")
@command
def report_monthly(community: str = COMMUNITY, month: str | None = MONTH,
                   out: str | None = typer.Option(
                       None, "--out", help="导出文件：report.html（含图表）或 report.xlsx"),
                   as_staff: str | None = typer.Option(
                       None, "--as", help="查看人员工编号（项目经理、客服主管/主任、公司客服）"),
                   as_json: bool = JSON) -> None:
    """月度报表：报修类别、完成率、各步骤按时率、解决时长、重复报修率与返修率、一次修复率、满意度、
    投诉类型、超时升级、巡查按时率、主管改进建议。--out 导出 HTML 或 XLSX（导出留审计记录）。"""
    from models.outbox import audit_extra
    from propflow import report

    asked = report.month_of(month)
    code = None if community == "all" else community
    actor = f"staff:{as_staff}" if as_staff else f"cli:{os_user()}"
    if out:
        report.format_of(out)
        with audit_extra(os_user=os_user()):
            emit(report.write(code, asked, out, actor=actor, viewer=as_staff), as_json)
        return
    found = report.figures(code, asked, viewer=as_staff)
    if as_json:
        emit(found.as_dict(), True)
    else:
        print(report.table(found))


@report_app.command("suggest")
@command
def report_suggest(community: str = typer.Option(..., "--community", help="项目编号，如 YGHY"),
                   month: str = typer.Option(..., "--month", help="月份 YYYY-MM，如 2026-11"),
                   text: str = typer.Option(..., "--text", help="主管改进建议"),
                   as_staff: str = typer.Option(..., "--as", help="填写人员工编号"),
                   as_json: bool = JSON) -> None:
    """填写或修改月度报表的主管改进建议（每个项目每月一条，修改留审计记录）。"""
    from models.outbox import audit_extra
    from propflow import report

    with audit_extra(os_user=os_user()):
        emit(report.suggest(community, report.month_of(month), text, as_staff), as_json)


inspections_app = typer.Typer(help="巡查的临时安排（暴雨检查）和住户通知", no_args_is_help=True)
app.add_typer(inspections_app, name="inspections")


@inspections_app.command("storm")
@command
def inspections_storm(community: str = typer.Option(..., "--community", help="项目编号，如 YGHY"),
                      when: str = typer.Option("before", "--when",
                                               help="before 暴雨前 | after 暴雨后"),
                      as_staff: str = typer.Option(
                          ..., "--as", help="下令人员工编号（客服主管、客服经理、项目经理）"),
                      as_json: bool = JSON) -> None:
    """暴雨前后立即安排空置房检查：每个片区一轮空置房巡查（同一小时内重复下令不重复生成），
    启动流程并通知管家；下令人留审计记录。"""
    from models.outbox import audit_extra
    from tasks.storm import order_storm_checks

    with audit_extra(os_user=os_user()):
        done = order_storm_checks(community, when, as_staff)
    if as_json:
        emit(done, True)
        return
    print(f"{done['community']} {done['label']}空置房检查：新生成 {done['made']} 轮，"
          f"已启动 {done['started']} 轮")
    if done["started"] < done["made"]:
        print("  Prefect 暂不可达：工单已保存，propflow serve 将在其恢复后启动流程")
    for r in done["rounds"]:
        print(f"  {r['number']} 片区 {r['area']} 截止 {r['due']}"
              f"{'' if r['made'] else '（本小时已下令，未重复生成）'}")


@inspections_app.command("notices")
@command
def inspections_notices(as_json: bool = JSON) -> None:
    """现在执行一次巡查住户通知（计划任务每天 08:00 执行）：如消杀前两天通知全体住户，
    每次只通知一遍。"""
    from tasks.round_notice import announce_round_notices

    told = announce_round_notices()
    if as_json:
        emit(told, True)
    elif not told:
        print("没有需要通知的巡查 (no plan's firing within its notice period, or told already)")
    for item in told:
        print(f"{item['community']}：{item['plan']} {item['day']} 已通知 "
              f"{item['households']} 户住户")


@app.command("serve")
@command
def serve(as_json: bool = JSON) -> None:
    """提供全部流程部署并运行时限时钟（SLA clock）和通知投递。"""
    from propflow.service import run

    run()


def main() -> None:
    # Before anything imports Prefect, which reads its settings once.
    from core import prefect_env

    prefect_env.configure()
    app()


if __name__ == "__main__":
    main()

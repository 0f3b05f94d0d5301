"""The command line a manager uses until the web door comes: their own steps, overdue ones,
a step's form and who may decide it, what was sent to them; a decision says whether the
run has it or when it will; the demo has a household in every unit."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.settings import reset_settings
from models import steps
from models.cases import Case
from models.db import unit_of_work
from models.org import Resident, Unit
from propflow import actions as service
from propflow import sla
from propflow.cli import app as cli
from tasks import runs

runner = CliRunner()


def cli_json(*args: str) -> Any:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def cli_text(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def refused(*args: str) -> dict:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stderr)


def open_case(unit: str, key: str, kind: str, role: str, now: Any,
              assignee: int | None = None, category: str = "public_area") -> dict[str, Any]:
    """A repair with one waiting step, as its run would open it (no Prefect needed here)."""
    case = service.open_repair(start_run=False, unit=unit, category=category, priority="medium",
                               reporter="张三", phone="13800138000", description="楼道灯不亮")
    with unit_of_work() as session:
        row = session.scalars(select(Case).where(Case.number == case["number"])).one()
        step = steps.open_step(session, case=row, key=key, kind=kind, role=role, now=now,
                               assignee_id=assignee)
        return {"number": case["number"], "step": step.id}


@pytest.fixture
def work(demo, clock) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """09:00 吴刚's accept opens (due 09:30); at 09:31 it has lapsed to the 客服主管; then
    郑浩's complete and an unassigned dispatch for the 技术主管 open."""
    staff = {p["name"]: p["id"] for p in demo["staff"]}
    late = open_case("1-2-301", "accept#1", "accept", "technician", clock.now(), staff["吴刚"])
    clock.advance(timedelta(minutes=31))
    assert sla.tick(start_pending=False).lapsed == 1
    fresh = open_case("2-1-201", "complete#1", "complete", "technician", clock.now(),
                      staff["郑浩"])
    dispatch = open_case("3-1-101", "dispatch#1", "dispatch", "tech_supervisor", clock.now(),
                         category="equipment")
    owner = open_case("3-2-202", "owner_acceptance#1", "owner_acceptance", "owner", clock.now())
    return {"staff": staff, "late": late, "fresh": fresh, "dispatch": dispatch, "owner": owner}


def ids(rows: list[dict[str, Any]]) -> set[int]:
    return {r["id"] for r in rows}


def test_mine_is_what_is_assigned_to_me_my_role_or_escalated_to_me(work):
    staff, late, fresh = work["staff"], work["late"]["step"], work["fresh"]["step"]
    mine = {name: ids(cli_json("steps", "list", "--mine", "--as", str(staff[name])))
            for name in ("吴刚", "郑浩", "何军", "陈静", "张伟", "朱红", "王芳")}
    assert mine["吴刚"] == {late}               # assigned to him, escalated or not
    assert mine["郑浩"] == {fresh}              # not his colleague's
    assert mine["何军"] == {work["dispatch"]["step"]}  # his role; not the technicians' work
    assert mine["陈静"] == {late}               # escalated to her level
    assert mine["王芳"] == {work["owner"]["step"]}  # the front desk records the owner's answer
    assert mine["张伟"] == set() and mine["朱红"] == set()


def test_mine_needs_to_know_who_is_asking(work):
    assert refused("steps", "list", "--mine")["field"] == "as"
    assert refused("steps", "list", "--mine", "--as", "9999")["field"] == "as"


def test_an_escalated_step_is_listed_under_the_role_it_reached(work):
    late = work["late"]["step"]
    assert ids(cli_json("steps", "list", "--role", "cs_supervisor")) == {late}
    assert ids(cli_json("steps", "list", "--role", "technician")) == {work["fresh"]["step"]}
    row = next(r for r in cli_json("steps", "list") if r["id"] == late)
    assert (row["role"], row["escalated_from"], row["level"]) == ("cs_supervisor", "technician", 1)


def test_overdue_lists_the_steps_past_their_window(work, clock):
    assert ids(cli_json("steps", "list", "--overdue")) == {work["late"]["step"]}
    clock.advance(timedelta(minutes=30))  # the dispatch is past due, no SLA pass yet
    assert ids(cli_json("steps", "list", "--overdue")) == {
        work["late"]["step"], work["dispatch"]["step"]}


def test_names_stand_beside_ids(work):
    staff = work["staff"]
    line = next(x for x in cli_text("steps", "list").splitlines()
                if x.startswith(f"{work['late']['step']}\t"))
    assert f"{staff['吴刚']} 吴刚" in line and "cs_supervisor" in line
    assert cli_json("steps", "list", "--case", work["late"]["number"])[0]["assignee_name"] == "吴刚"


def test_show_gives_the_form_window_level_and_who_may_decide(work):
    staff = work["staff"]
    shown = cli_json("steps", "show", str(work["fresh"]["step"]))
    fields = {f["name"]: f for f in shown["fields"]}
    assert fields["diagnosis"]["required"] and not fields["work_done"]["required"]
    assert fields["diagnosis"]["description"] == "故障诊断"
    assert shown["window"] == "24h 全天候 (24/7)"  # a completion promise: clock time
    assert (shown["level"], shown["chain"][0]) == (0, "cs_supervisor")
    deciders = {p["id"]: p["rule"] for p in shown["may_decide"]}
    assert deciders[staff["郑浩"]] == "assignee"
    assert deciders[staff["何军"]] == "stand_in"  # the technical supervisor may step in
    assert staff["吴刚"] not in deciders and staff["朱红"] not in deciders
    assert staff["陈静"] not in deciders  # not escalated to her yet

    text = cli_text("steps", "show", str(work["fresh"]["step"]))
    assert re.search(r"^\s+\* diagnosis\s", text, re.M)
    assert re.search(r"^\s+ {2}work_done\s", text, re.M)  # optional: no mark
    assert f"{staff['郑浩']} 郑浩" in text and "24h 全天候" in text


def test_show_an_escalated_step_names_its_level_and_the_supervisor(work):
    shown = cli_json("steps", "show", str(work["late"]["step"]))
    assert shown["level"] == 1 and shown["role"] == "cs_supervisor"
    assert [e["to_role"] for e in shown["escalations"]] == ["cs_supervisor"]
    assert shown["next_role"] == "project_manager"
    assert {p["id"]: p["rule"] for p in shown["may_decide"]}[work["staff"]["陈静"]] == "chain"
    assert refused("steps", "show", "9999")["field"] == "step"


def test_notifications_to_one_member_of_staff(work):
    staff = work["staff"]
    rows = cli_json("notifications", "list", "--to", str(staff["吴刚"]))
    assert rows and {r["to"] for r in rows} == {"吴刚"}
    assert {r["case"] for r in rows} == {work["late"]["number"]}  # not 郑浩's
    assert refused("notifications", "list", "--to", "9999")["field"] == "to"


def test_a_decision_the_run_has_not_read_says_queued_and_when(work, monkeypatch):
    monkeypatch.setenv("PROPFLOW_SLA_INTERVAL_SECONDS", "7")
    reset_settings()
    staff = work["staff"]
    text = cli_text("steps", "decide", str(work["fresh"]["step"]), "--as", str(staff["郑浩"]),
                    "--set", "diagnosis=灯管老化")
    assert "delivery: queued" in text and "False" not in text
    reason = next(x for x in text.splitlines() if x.startswith("reason:"))
    assert "every 7 s" in reason  # the SLA clock's interval, from the settings
    reset_settings()


def test_a_decision_reaching_a_run_still_suspending_says_it_is_read_within_seconds(
        work, monkeypatch):
    from prefect import flow_runs
    from prefect.exceptions import NotPausedError

    with unit_of_work() as session:
        session.scalars(select(Case).where(Case.number == work["late"]["number"])).one() \
            .flow_run_id = str(uuid4())

    def not_yet(*args: Any, **kwargs: Any) -> None:
        raise NotPausedError("Cannot resume a run that isn't paused!")

    monkeypatch.setattr(flow_runs, "resume_flow_run", not_yet)
    monkeypatch.setattr(runs, "_state", lambda run_id: "Running")
    result = cli_json("steps", "decide", str(work["late"]["step"]), "--as",
                      str(work["staff"]["吴刚"]), "--set", "note=马上到")
    assert result["delivery"] == "queued" and result["delivered"] is False
    assert "the run is Running, not waiting yet" in result["reason"]
    assert "within 5 s" in result["reason"]


def test_a_decision_delivered_says_so(work, monkeypatch):
    monkeypatch.setattr(runs, "wake", lambda run_id: runs.Wake(True))
    result = cli_json("steps", "decide", str(work["fresh"]["step"]), "--as",
                      str(work["staff"]["郑浩"]), "--set", "diagnosis=灯管老化")
    assert result["delivery"] == "delivered" and "reason" not in result


def test_a_decision_the_run_read_before_the_wake_says_delivered(work, monkeypatch):
    """The SLA clock woke the run between the store and the wake-up, and the run read the
    decision and went on to its end: the wake-up fails, yet the decision was delivered."""
    from models.cases import Decision

    def read_meanwhile(run_id: str | None) -> runs.Wake:
        with unit_of_work() as session:
            for decision in session.scalars(select(Decision)):
                decision.delivered_at = decision.created_at
        return runs.Wake(False, "流程尚未进入等待 (the run is Completed, not waiting yet)")

    monkeypatch.setattr(runs, "wake", read_meanwhile)
    result = cli_json("steps", "decide", str(work["fresh"]["step"]), "--as",
                      str(work["staff"]["郑浩"]), "--set", "diagnosis=灯管老化")
    assert result["delivery"] == "delivered" and result["delivered"] is True
    assert "reason" not in result


def test_the_demo_has_a_household_in_every_unit(demo):
    from propflow.demo import seed

    with unit_of_work() as session:
        units = list(session.scalars(select(Unit)))
        people = list(session.scalars(select(Resident)))
    housed = {p.unit_id for p in people}
    assert {u.id for u in units} <= housed
    assert all(p.name and re.fullmatch(r"1[3-9]\d{9}", p.phone) for p in people)
    assert len({p.phone for p in people}) == len(people)
    first = next(u for u in units if u.code == "1-1-101")
    assert [p.name for p in people if p.unit_id == first.id] == ["业主张三"]

    assert seed()["households"] == len(units)  # again: nobody added twice
    with unit_of_work() as session:
        assert session.scalar(select(func.count(Resident.id))) == len(people)


def test_a_building_notice_reaches_every_household_of_it(demo, clock):
    from models import broadcast
    from models.directory import case as load_case

    case = service.report_emergency(start_run=False, kind="water_outage", community="YGHY",
                                    location="1号楼", reporter="巡逻岗", buildings=["1"])
    with unit_of_work() as session:
        told = broadcast.to_residents(session, load_case(session, case["number"]), "activated",
                                      key="t", now=clock.now())
    assert told == 12  # 2 entrances x 3 floors x 2 rooms

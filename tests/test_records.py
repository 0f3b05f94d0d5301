"""Records a user relies on: case numbers, the append-only audit trail, messages in both
languages."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.render import LANGS, TEMPLATES, render
from models.db import unit_of_work
from models.outbox import AuditEvent, AuditIsAppendOnly
from propflow import actions

REPORT = dict(unit="1-1-101", category="public_area", priority="medium", reporter="业主张三",
              phone="13800138000", description="楼道灯不亮")


def test_case_numbers_are_per_day_gap_free_and_unique_under_concurrency(demo, clock):
    first = actions.open_repair(start_run=False, **REPORT)["number"]
    assert first == "BX-20261124-0001"
    numbers: list[str] = []

    def open_one() -> None:
        numbers.append(actions.open_repair(start_run=False, **REPORT)["number"])

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == [f"BX-20261124-{i:04d}" for i in range(2, 10)]
    clock.advance(timedelta(days=1))
    assert actions.open_repair(start_run=False, **REPORT)["number"] == "BX-20261125-0001"


def test_audit_trail_refuses_changes(demo, clock):
    actions.open_repair(start_run=False, **REPORT)
    with pytest.raises(AuditIsAppendOnly):
        with unit_of_work() as session:
            row = session.scalars(select(AuditEvent)).first()
            row.action = "tampered"
    with pytest.raises(AuditIsAppendOnly):
        with unit_of_work() as session:
            session.delete(session.scalars(select(AuditEvent)).first())
    with unit_of_work() as session:
        assert session.scalars(select(AuditEvent.action)).first() == "case_opened"


def test_safety_words_raise_priority_and_warranty_makes_repairs_free(demo, clock):
    leak = actions.open_repair(start_run=False, **REPORT | {"description": "厨房漏水", "category":
                                                          "in_unit"})
    assert leak["priority"] == "high" and leak["paid"] is True
    # Building 3 is still under the developer's warranty.
    free = actions.open_repair(start_run=False,
                               **REPORT | {"unit": "3-1-101", "category": "in_unit"})
    assert free["paid"] is False


CONTEXT = dict(
    number="BX-20261124-0001", procedure_label="报修", unit="1-2-301", summary="楼道灯不亮",
    reporter="张三", category_label="公共区域", priority_label="中", paid=True, step_id=7,
    step_label="接单", due="2026-11-24 09:30", calendar_label="工作时间", percent=80,
    next_role_label="客服主管", role_label="客服主管", level=1, lapsed="2026-11-24 09:30",
    assignee="吴刚", technician="吴刚", eta="10:00", diagnosis="灯管坏", charge="50",
    outcome_label="已完成", duty="关闭燃气总阀", first_responder="王芳", location="1号楼",
    resolution="减免", result="已处理", compensation="200", message="已恢复",
    run_state="Crashed", restarts=3, flow_run_id="7b7f890b-7dec-4e4f-ae27-23bce342c1ad",
    fee="840.00", count=2, repairs="BX-20261124-0002、BX-20261124-0003", over="水表 8 > 5",
    arrival_local="2026-11-26 10:00", steps=10, reason="时间不便", opinion="加装路灯",
    deadline="2026-11-27", done=True, day="2026-12-04", start="10:00", end="12:00",
    postponed=True, scheduled="2026-12-04", community_name="阳光花园",
    decider="张伟", decider_role="项目经理", decided_at="2026-11-24 09:05",
    reply_by="2026-11-27 09:00", operation_label="转办", operation_en="transfer",
    by_name="陈静", note="", note_en="",
    # rounds (巡查), storms, pest control and the monthly report
    month="2026-11", community="YGHY", completion_rate="83.3%",
    repeat_rate="3.0%", repeat_target="5%", satisfaction="86", satisfaction_target="90",
    complaints=2, page="http://127.0.0.1:8080/reports/monthly", html_path="/r/YGHY.html",
    xlsx_path="/r/YGHY.xlsx", storm_label="暴雨前", ordered_by="陈静", area_label="1-3号楼",
    notice="ZG-0001", shop="1-1-102", checkpoint="商铺消防", problem="灭火器过期",
    plan_label="消杀", vacant_unit="3-1-101",
)
# Messages about no one case: a month's report, a notice to every household of a community.
CASELESS = {"monthly_report", "pest_notice", "round_notice"}


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*/*.zh-CN.j2")), ids=lambda p: p.stem)
def test_every_message_renders_in_both_languages(path: Path):
    event = path.name.split(".")[0]
    for lang in LANGS:
        msg = render(path.parent.name, event, lang, **CONTEXT)
        assert msg.subject and msg.body
        if event not in CASELESS:
            assert "BX-20261124-0001" in msg.subject + msg.body
    # With every value in ASCII, the English template itself must carry no Chinese.
    ascii_ctx = {k: "x" if isinstance(v, str) else v for k, v in CONTEXT.items()}
    english = render(path.parent.name, event, "en", **ascii_ctx)
    text = english.subject + english.body
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in text), text


def test_policy_in_english_sends_english_messages(demo, clock, policy_with):
    policy_with(lang="en")
    case = actions.open_repair(start_run=False, **REPORT)
    subjects = [n["subject"] for n in actions.list_notifications(case["number"])]
    assert subjects == [f"Your repair request is registered: {case['number']}"]

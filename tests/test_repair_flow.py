"""The repair procedure through Prefect, every branch, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.flowkit import RepairRun

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_happy_path_closes_with_rating(demo, clock):
    run = RepairRun(demo, clock)
    run.decide("accept#1", "technician", eta="2026-11-24T10:00:00+08:00", note="马上到")
    run.decide("complete#1", "technician", diagnosis="灯管老化", work_done="更换灯管")
    run.decide("owner_acceptance#1", "csr", accepted=True)
    run.decide("callback#1", "csr", rating=5, comment="很快")
    assert run.finish() == "done"
    case = run.show()
    assert case["status"] == "closed" and case["outcome"] == "done"
    assert [s["key"] for s in case["steps"]] == [
        "accept#1", "complete#1", "owner_acceptance#1", "callback#1"]
    owner_subjects = [n["subject"] for n in case["notifications"]
                      if n["recipient"].startswith("owner:")]
    assert any("已受理" in s for s in owner_subjects)
    assert any("已关闭" in s for s in owner_subjects)

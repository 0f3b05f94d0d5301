"""Database tasks wait out a transient database error (Prefect retries with backoff);
a refusal is not retried."""

from __future__ import annotations

import pytest

from core.errors import PropflowError
from models.db import busy
from tests.flowkit import RepairRun


def _locked_once(monkeypatch, module, calls: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The module's first database read finds the database locked, as in a burst."""
    real = module.load

    def load(session, case_id):  # type: ignore[no-untyped-def]
        calls.append(module.__name__)
        if calls.count(module.__name__) == 1:
            raise busy(None, Exception("database is locked"))
        return real(session, case_id)

    monkeypatch.setattr(module, "load", load)


@pytest.mark.usefixtures("prefect_api")
def test_a_run_waits_out_a_lock_in_intake_and_dispatch(demo, clock, monkeypatch):
    import tasks.cases
    import tasks.repair

    calls: list[str] = []
    _locked_once(monkeypatch, tasks.cases, calls)  # intake
    _locked_once(monkeypatch, tasks.repair, calls)  # auto-dispatch
    run = RepairRun(demo, clock)
    step = run.step("accept#1")
    assert step["assignee"] is not None
    assert calls.count("tasks.cases") >= 2 and calls.count("tasks.repair") >= 2
    assert run.show()["status"] == "in_progress"


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.data = exc


def test_only_transient_database_errors_are_retried():
    from sqlalchemy.exc import OperationalError

    from tasks.retries import transient

    assert transient(None, None, _State(busy(None, Exception("database is locked"))))
    assert transient(None, None, _State(OperationalError("select 1", {}, Exception("gone"))))
    assert not transient(None, None, _State(PropflowError("technician：不是本项目的技师",
                                                          field="technician")))
    assert not transient(None, None, _State(AssertionError("case 7 missing")))

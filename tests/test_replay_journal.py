"""The run journal a resumed run replays from (tasks.replay): what it keeps and how it keys it.
Fast: no Prefect server; the served behaviour is in tests/test_warm_executor.py."""

from __future__ import annotations

import pytest

from tasks import replay
from tasks.steps import open_step, read_steps


def test_a_read_of_steps_by_id_comes_back_as_it_was_recorded() -> None:
    states = {12: {"status": "decided", "values": {"note": "好"}, "pending_escalations": [[3, 1]],
                   "settled_at": 1.5, "decision_id": 7, "decided_by": None}}
    assert replay._decode(replay._encode(states)) == states
    assert replay._decode(replay._encode({"number": "BX-1", "ids": (1, 2)})) == {
        "number": "BX-1", "ids": [1, 2]}


def test_a_result_that_is_not_plain_data_is_not_recorded() -> None:
    with pytest.raises(TypeError):
        replay._encode({"at": object()})


def test_the_same_call_again_is_another_entry_and_other_arguments_another_key() -> None:
    journal = replay.Journal(context=None)
    first = journal.key(open_step, (1, "accept#1", "accept", "technician", 5), {})
    again = journal.key(open_step, (1, "accept#1", "accept", "technician"),
                        {"assignee_id": 5})
    other = journal.key(open_step, (1, "complete#1", "complete", "technician", 5), {})
    assert first != again and first.rsplit(":", 1)[0] == again.rsplit(":", 1)[0]
    assert other.rsplit(":", 1)[0] != first.rsplit(":", 1)[0]
    # A fresh journal (the next execution of the run) finds the first call under its key.
    assert replay.Journal(context=None).key(
        open_step, (1, "accept#1", "accept", "technician", 5), {}) == first


def test_outside_a_served_run_every_task_runs_and_nothing_is_kept() -> None:
    ran = []
    assert replay.call(read_steps, ([1],), {}, lambda ids: ran.append(ids) or "live") == "live"
    assert ran == [[1]] and replay.current() is None

"""Thresholds a company tunes come from its policy file, which refuses impossible ones; the
words of the record are StrEnums equal to the strings stored; a flow reads a step's outcome
the same whether it was read live or replayed from the run's journal (plain JSON).

Fast tier: no Prefect server, no database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.errors import PropflowError
from core.policy import Policy, load_policy
from core.roles import STEP_ROLES
from core.settings import DEMO_POLICY
from core.vocabulary import SETTLED, CaseStatus, Role, StepStatus
from flows.outcome import StepOutcome
from models.complaint import investigator, needs_approval, opens_complaint


def policy(tmp_path: Path, **procedures: dict[str, object]) -> Path:
    """The demo policy with some keys of procedures.<name> replaced."""
    data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    for name, changes in procedures.items():
        data["procedures"][name].update(changes)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def tuned(tmp_path: Path, **procedures: dict[str, object]) -> Policy:
    return load_policy(policy(tmp_path, **procedures))


def refused(path: Path, key: str, *expected: str) -> None:
    with pytest.raises(PropflowError) as caught:
        load_policy(path)
    assert caught.value.field == key
    for part in (str(path), f"键 {key}：", "expected", *expected):
        assert part in caught.value.message, (part, caught.value.message)


# --- the callback rating that opens a complaint ------------------------------------------------

def test_the_demo_policy_opens_a_complaint_on_a_rating_of_two_or_less():
    demo = load_policy(DEMO_POLICY)
    assert demo.procedures["repair"].complaint_rating == 2  # (seed)
    assert [opens_complaint(r, demo) for r in (1, 2, 3, 4, 5)] == [True, True, False, False,
                                                                   False]
    assert not opens_complaint(None, demo)  # not reached: no rating, no complaint


def test_a_company_that_counts_three_as_unhappy_opens_a_complaint_on_a_three(tmp_path):
    strict = tuned(tmp_path, repair={"complaint_rating": 3})
    assert opens_complaint(3, strict)
    assert not opens_complaint(4, strict)


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_a_rating_threshold_outside_one_to_five_is_refused(tmp_path, rating):
    refused(policy(tmp_path, repair={"complaint_rating": rating}),
            "procedures.repair.complaint_rating", "expected a rating from 1 to 5")


def test_a_rating_threshold_that_is_not_a_number_is_refused(tmp_path):
    with pytest.raises(PropflowError) as caught:
        load_policy(policy(tmp_path, repair={"complaint_rating": "low"}))
    assert caught.value.field == "procedures.repair.complaint_rating"


# --- who reinvestigates a refused result -------------------------------------------------------

def test_a_refused_result_climbs_the_demo_ladder():
    demo = load_policy(DEMO_POLICY)
    assert [investigator("security", level, demo) for level in range(4)] == [
        "security", "cs_supervisor", "project_manager", "project_manager"]
    # The responsible department is not asked twice when it is on the ladder itself.
    assert [investigator("cs_supervisor", level, demo) for level in range(3)] == [
        "cs_supervisor", "project_manager", "project_manager"]


def test_reopen_levels_come_from_the_policy(tmp_path):
    own = tuned(tmp_path, complaint={"reopen_levels": ["cs_director", "company_cs"]})
    assert [investigator("security", level, own) for level in range(3)] == [
        "security", "cs_director", "company_cs"]


def test_an_unknown_role_on_the_reopen_ladder_is_refused(tmp_path):
    refused(policy(tmp_path, complaint={"reopen_levels": ["cs_supervisor", "boss"]}),
            "procedures.complaint.reopen_levels[1]", "'boss'")


def test_an_empty_reopen_ladder_is_refused(tmp_path):
    refused(policy(tmp_path, complaint={"reopen_levels": []}),
            "procedures.complaint.reopen_levels", "at least one role")


# --- which compensation needs the project manager ----------------------------------------------

def test_any_compensation_needs_approval_in_the_demo_policy():
    demo = load_policy(DEMO_POLICY)
    assert needs_approval({"compensation": "50"}, demo)
    assert not needs_approval({"compensation": "0"}, demo)
    assert not needs_approval({}, demo)
    assert needs_approval({"exception": True}, demo)


def test_a_compensation_up_to_the_threshold_needs_no_approval(tmp_path):
    own = tuned(tmp_path, complaint={"approval_above": 200})
    assert not needs_approval({"compensation": "200"}, own)
    assert needs_approval({"compensation": "200.01"}, own)
    assert needs_approval({"compensation": "0", "exception": True}, own)


def test_an_approval_threshold_above_what_a_form_accepts_is_refused(tmp_path):
    refused(policy(tmp_path, complaint={"approval_above": 200000}),
            "procedures.complaint.approval_above", "limits.money_max")


def test_a_negative_approval_threshold_is_refused(tmp_path):
    with pytest.raises(PropflowError) as caught:
        load_policy(policy(tmp_path, complaint={"approval_above": -1}))
    assert caught.value.field == "procedures.complaint.approval_above"


# --- the words of the record -------------------------------------------------------------------

def test_statuses_and_roles_are_the_strings_stored():
    assert CaseStatus.IN_PROGRESS == "in_progress"
    assert json.dumps({"status": StepStatus.LAPSED}) == '{"status": "lapsed"}'
    assert f"{Role.TECH_SUPERVISOR}" == "tech_supervisor"
    assert set(STEP_ROLES) == {r.value for r in Role}  # every role has a label
    assert "decided" in SETTLED and "waiting" not in SETTLED  # as read back from JSON


# --- a step's outcome, live or replayed --------------------------------------------------------

STATE = {"key": "callback#1", "form": "repair.callback", "status": StepStatus.DECIDED,
         "values": {"reached": True, "rating": 2, "comment": None}, "decided_by": 7,
         "settled_at": 1_795_000_000.0, "decision_id": 3, "pending_escalations": []}


def test_an_outcome_reads_the_same_live_and_from_the_journal():
    live = StepOutcome.from_state(11, STATE)
    replayed = StepOutcome.from_state(11, json.loads(json.dumps(STATE)))
    assert live == replayed
    assert replayed.status is StepStatus.DECIDED and replayed.decided
    assert (replayed.key, replayed.decided_by) == ("callback#1", 7)
    assert replayed.number("rating") == 2 and replayed.flag("reached")
    assert replayed.text("comment") == ""  # left empty reads as no text, not "None"


def test_a_lapsed_step_answered_nothing():
    lapsed = StepOutcome.from_state(12, {**STATE, "status": "lapsed"})
    assert lapsed.lapsed and not lapsed.decided and not lapsed.cancelled
    assert lapsed.values == {} and lapsed.decided_by is None
    assert lapsed.number("rating") is None
    assert lapsed.flag("reached", default=True)  # the flow's default, not the stale answer

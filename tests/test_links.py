"""One-tap links (models/links.py, propflow/web/links.py, propflow/web/owner.py): a staff
member's link opens their step alone, once, until it expires; an owner answers from theirs
with no account, and the answer is theirs (channel owner_link) and wakes the run."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import now
from core.vocabulary import Role, StepStatus
from models import directory, steps
from models.cases import Decision, Escalation, Step
from models.db import unit_of_work
from models.links import Link, LinkGone
from models.outbox import AuditEvent, Notification
from propflow import actions
from tasks import runs
from tests.flowkit import REPAIR
from tests.webkit import web_client  # noqa: F401

PHONE = "13800138000"
LINK = re.compile(r"http://127\.0\.0\.1:8080/([lo])/([A-Za-z0-9_-]+)")


def open_step(number: str, key: str, kind: str, role: str, assignee: int | None = None) -> int:
    with unit_of_work() as session:
        case = directory.case(session, number)
        return steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=now()).id


def links_to(recipient: str, event: str = "step_opened") -> list[tuple[str, str]]:
    """(kind, token) of each link in the in-app messages to the recipient."""
    with unit_of_work() as session:
        bodies = session.scalars(select(Notification.body).where(
            Notification.recipient == recipient, Notification.event == event,
            Notification.channel == "inbox").order_by(Notification.id))
        return [m.groups() for body in bodies for m in LINK.finditer(body)]


@pytest.fixture
def repair(demo: dict[str, Any]) -> str:
    number: str = actions.open_repair(start_run=False, **REPAIR | {"phone": PHONE})["number"]
    return number


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """runs.wake, faked: Prefect is not the point here; the runs it was asked to wake."""
    calls: list[str | None] = []

    def wake(run_id: str | None) -> runs.Wake:
        calls.append(run_id)
        return runs.Wake(True)

    monkeypatch.setattr(runs, "wake", wake)
    return calls


# --- staff ---------------------------------------------------------------------------------

def test_a_staff_link_opens_its_step_and_nothing_else(web_client, demo, repair):  # noqa: F811
    supervisor = demo["by_role"]["tech_supervisor"]
    step_id = open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    other = open_step(repair, "reinspection#1", "reinspection", Role.TECH_SUPERVISOR)
    [(kind, token), *_] = links_to(f"staff:{supervisor}")
    assert kind == "l"

    opened = web_client.get(f"/l/{token}")
    assert opened.status_code == 303 and opened.headers["location"] == f"/steps/{step_id}"
    page = web_client.get(f"/steps/{step_id}")
    assert page.status_code == 200, page.text
    # The link's session is the supervisor's for that step alone.
    assert web_client.get(f"/steps/{other}").status_code == 403
    assert web_client.get(f"/cases/{repair}").status_code == 403
    assert web_client.get("/api/cases").status_code == 403
    inbox = web_client.get("/")
    assert inbox.status_code == 303 and inbox.headers["location"] == f"/steps/{step_id}"
    with unit_of_work() as session:  # the timeline says who came in by a link
        used = session.scalars(select(AuditEvent).where(AuditEvent.action == "link_used")).one()
        assert used.actor == f"staff:{supervisor}" and used.detail == {"step": "dispatch#1"}


def test_each_person_gets_their_own_link_a_group_none(web_client, demo, repair,  # noqa: F811
                                                      policy_with):
    policy_with(channels={"ops": {"kind": "wecom", "url": "http://127.0.0.1:9/send?key=k"}},
                routes={"step_opened": ["ops"]})
    open_step(repair, "complete#1", "complete", Role.TECHNICIAN, demo["by_role"]["technician"])
    open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    technician = links_to(f"staff:{demo['by_role']['technician']}")
    supervisor = links_to(f"staff:{demo['by_role']['tech_supervisor']}")
    assert len(technician) == len(supervisor) == 1 and technician != supervisor
    with unit_of_work() as session:
        group = session.scalars(select(Notification.body).where(
            Notification.recipient == "group:ops")).all()
        assert len(group) == 2 and not any(LINK.search(body) for body in group)
        assert session.scalar(select(Link.staff_id).where(
            Link.token_hash == _digest(technician[0][1]))) == demo["by_role"]["technician"]


def test_an_expired_link_is_refused_and_changes_nothing(web_client, demo, repair, clock):  # noqa: F811
    open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    [(_, token)] = links_to(f"staff:{demo['by_role']['tech_supervisor']}")
    clock.advance(timedelta(hours=72, seconds=1))  # the policy's staff_ttl is 72 h

    refused = web_client.get(f"/l/{token}")
    assert refused.status_code == 410
    assert "已过期" in refused.text and 'href="/login"' in refused.text
    assert "propflow_session" not in refused.headers.get("set-cookie", "")
    with unit_of_work() as session:
        assert session.scalars(select(Link.used_at)).all() == [None]


def test_a_used_link_is_refused(web_client, demo, repair):  # noqa: F811
    step_id = open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    [(_, token)] = links_to(f"staff:{demo['by_role']['tech_supervisor']}")
    assert web_client.get(f"/l/{token}").status_code == 303
    # A second tap in the browser it signed in goes back to the step: nothing new is opened.
    second = web_client.get(f"/l/{token}")
    assert second.status_code == 303 and second.headers["location"] == f"/steps/{step_id}"
    web_client.cookies.clear()

    again = web_client.get(f"/l/{token}")
    assert again.status_code == 410 and "已使用过" in again.text
    assert "propflow_session" not in again.headers.get("set-cookie", "")
    assert web_client.get("/l/not-a-token-at-all").status_code == 404


def test_of_concurrent_uses_of_one_link_exactly_one_wins(demo, repair):
    open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    [(_, token)] = links_to(f"staff:{demo['by_role']['tech_supervisor']}")
    start = threading.Barrier(6)
    won: list[dict[str, Any]] = []
    refused: list[str] = []

    def use() -> None:
        start.wait()
        try:
            won.append(actions.open_staff_link(token))
        except LinkGone as exc:
            refused.append(exc.reason)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and refused == ["used"] * 5


def test_an_escalation_carries_a_link_for_the_level_told(web_client, demo, repair, clock):  # noqa: F811
    step_id = open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    clock.advance(timedelta(hours=3))
    with unit_of_work() as session:  # what the SLA clock and the case's run do
        [lapse] = steps.claim_lapses(session, now(), "test", [step_id])
    with unit_of_work() as session:
        steps.record_escalation(session, session.get(Escalation, lapse.escalation_id), now())
    [(kind, token)] = links_to(f"staff:{demo['by_role']['cs_supervisor']}", "escalated")
    opened = web_client.get(f"/{kind}/{token}")
    assert opened.status_code == 303 and opened.headers["location"] == f"/steps/{step_id}"
    assert web_client.get(f"/steps/{step_id}").status_code == 200


def test_a_warning_carries_a_link_of_its_own(web_client, demo, repair, clock):  # noqa: F811
    supervisor = demo["by_role"]["tech_supervisor"]
    step_id = open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    clock.advance(timedelta(minutes=25))  # 80 % of its 30 minutes
    with unit_of_work() as session:  # what the SLA clock does, a batch at a time
        assert steps.claim_warnings(session, now(), "test", steps.warn_ids(session, now())) == 1
    [opened] = links_to(f"staff:{supervisor}")
    [(kind, token)] = links_to(f"staff:{supervisor}", "warning")
    assert token != opened[1]
    first = web_client.get(f"/{kind}/{token}")
    assert first.status_code == 303 and first.headers["location"] == f"/steps/{step_id}"


# --- owners --------------------------------------------------------------------------------

def owner_link(step_id: int) -> str:
    [(kind, token)] = links_to(f"owner:{PHONE}")
    assert kind == "o"
    return token


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_an_owner_rates_the_repair_through_their_link(web_client, demo, repair, woken):  # noqa: F811
    step_id = open_step(repair, "callback#1", "callback", Role.OWNER)
    token = owner_link(step_id)

    page = web_client.get(f"/o/{token}")
    assert page.status_code == 200
    assert repair in page.text and 'name="rating"' in page.text and 'id="rating-5"' in page.text
    assert PHONE not in page.text and "138****8000" not in page.text

    done = web_client.post(f"/o/{token}", data={"rating": "4", "comment": "师傅很准时",
                                                "csrf": form_token(page.text)})
    assert done.status_code == 200 and 'data-testid="owner-state"' in done.text
    assert "谢谢" in done.text and "4" in done.text
    with unit_of_work() as session:
        decision = session.scalars(select(Decision).where(Decision.step_id == step_id)).one()
        assert decision.channel == "owner_link" and decision.decided_by is None
        assert decision.values == {"reached": True, "rating": 4, "comment": "师傅很准时"}
        assert session.get(Step, step_id).status == StepStatus.DECIDED
        actors = session.scalars(select(AuditEvent.actor).where(
            AuditEvent.action == "decided")).all()
        assert actors == ["owner"]
        run_id = directory.case(session, repair).flow_run_id
    assert woken == [run_id]

    # The link is spent: it shows the answer, not the form, and a second post changes nothing.
    again = web_client.get(f"/o/{token}")
    assert again.status_code == 410 and 'name="rating"' not in again.text
    assert "已使用过" in again.text and "4" in again.text
    web_client.post(f"/o/{token}", data={"rating": "1", "csrf": form_token(page.text)})
    with unit_of_work() as session:
        assert session.scalars(select(Decision.values)).all() == [decision.values]
    assert len(woken) == 1


def test_an_owner_refusing_the_work_must_say_why(web_client, demo, repair, woken):  # noqa: F811
    step_id = open_step(repair, "owner_acceptance#1", "owner_acceptance", Role.OWNER)
    token = owner_link(step_id)
    csrf = form_token(web_client.get(f"/o/{token}").text)

    refused = web_client.post(f"/o/{token}", data={"accepted": "false", "csrf": csrf})
    assert refused.status_code == 422 and "请填写原因" in refused.text
    assert 'name="accepted"' in refused.text  # the form again, the link still usable
    with unit_of_work() as session:
        assert session.scalars(select(Link.used_at).where(Link.audience == "owner")).all() == [None]
        assert session.get(Step, step_id).status == StepStatus.WAITING
    assert woken == []

    done = web_client.post(f"/o/{token}", data={"accepted": "false", "reason": "还在漏水",
                                                "csrf": csrf})
    assert done.status_code == 200 and "还在漏水" in done.text
    with unit_of_work() as session:
        decision = session.scalars(select(Decision)).one()
        assert decision.values == {"accepted": False, "reason": "还在漏水"}


def test_an_owners_form_without_its_token_is_refused(web_client, demo, repair, woken):  # noqa: F811
    step_id = open_step(repair, "quote#1", "quote", Role.OWNER)
    token = owner_link(step_id)
    for data in ({"accepted": "true"}, {"accepted": "true", "csrf": "forged"}):
        refused = web_client.post(f"/o/{token}", data=data)
        assert refused.status_code == 403
    with unit_of_work() as session:
        assert session.scalars(select(Decision)).all() == []
        assert session.scalars(select(Link.used_at).where(Link.audience == "owner")).all() == [None]
    assert woken == []


def test_an_expired_owner_link_shows_the_state_not_the_form(web_client, demo, repair, clock):  # noqa: F811
    step_id = open_step(repair, "quote#1", "quote", Role.OWNER)
    token = owner_link(step_id)
    clock.advance(timedelta(days=7, seconds=1))
    page = web_client.get(f"/o/{token}")
    assert page.status_code == 410 and "已过期" in page.text and 'name="accepted"' not in page.text
    assert web_client.post(f"/o/{token}", data={"accepted": "true"}).status_code == 410
    with unit_of_work() as session:
        assert session.scalars(select(Decision)).all() == []


def test_an_answer_the_front_desk_recorded_shows(web_client, demo, repair, woken):  # noqa: F811
    step_id = open_step(repair, "callback#1", "callback", Role.OWNER)
    token = owner_link(step_id)
    actions.decide(step_id, demo["by_role"]["csr"], {"rating": 5})
    page = web_client.get(f"/o/{token}")
    assert page.status_code == 200 and 'name="rating"' not in page.text
    assert "由客服中心记录" in page.text


def _digest(token: str) -> str:
    from models.links import digest

    return digest(token)


@pytest.mark.usefixtures("prefect_api")
def test_an_owner_answers_a_running_repair_from_their_links(web_client, demo, clock):  # noqa: F811
    """Prefect is the point here: the owner's answers reach the waiting run, which goes on."""
    from tests.flowkit import RepairRun

    run = RepairRun(demo, clock, phone=PHONE)
    run.decide("accept#1", "technician")
    run.decide("complete#1", "technician", diagnosis="灯管老化", work_done="更换灯管")
    for key, answer in (("owner_acceptance#1", {"accepted": "true"}),
                        ("callback#1", {"rating": "5", "comment": "很满意"})):
        step = run.step(key)
        [(_, token), *_] = [link for link in links_to(f"owner:{PHONE}")
                            if _step_of(link[1]) == step["id"]]
        page = web_client.get(f"/o/{token}")
        assert "灯管老化" in page.text  # what was done, in the owner's words
        done = web_client.post(f"/o/{token}", data=answer | {"csrf": form_token(page.text)})
        assert done.status_code == 200 and "谢谢" in done.text
    assert run.finish() == "done"
    case = run.show()
    assert case["status"] == "closed"
    answers = [s["decision"] for s in case["steps"] if s["key"] in ("owner_acceptance#1",
                                                                      "callback#1")]
    assert [(d["by"], d["channel"]) for d in answers] == [(None, "owner_link")] * 2
    assert answers[1]["values"]["rating"] == 5


def _step_of(token: str) -> int:
    with unit_of_work() as session:
        step_id: int = session.scalars(select(Link.step_id).where(
            Link.token_hash == _digest(token))).one()
        return step_id


def test_the_front_desk_makes_a_new_link_when_one_expired(web_client, demo, repair, clock):  # noqa: F811
    import json

    from typer.testing import CliRunner

    from propflow.cli import app as cli

    step_id = open_step(repair, "quote#1", "quote", Role.OWNER)
    clock.advance(timedelta(days=8))
    old = owner_link(step_id)
    assert web_client.get(f"/o/{old}").status_code == 410
    runner = CliRunner()
    csr, technician = demo["by_role"]["csr"], demo["by_role"]["technician"]

    made = runner.invoke(cli, ["steps", "link", str(step_id), "--as", str(csr), "--json"])
    assert made.exit_code == 0, made.stderr
    url = json.loads(made.stdout)["url"]
    kind, token = LINK.fullmatch(url).groups()  # type: ignore[union-attr]
    assert kind == "o" and 'name="accepted"' in web_client.get(f"/o/{token}").text

    # Whoever cannot record the owner's answer cannot hand out a link to it either.
    refused = runner.invoke(cli, ["steps", "link", str(step_id), "--as", str(technician)])
    assert refused.exit_code == 2 and "as：" in refused.stderr
    dispatch = open_step(repair, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR)
    refused = runner.invoke(cli, ["steps", "link", str(dispatch), "--as", str(csr),
                                  "--for", str(technician)])
    assert refused.exit_code == 2 and "for：" in refused.stderr
    made = runner.invoke(cli, ["steps", "link", str(dispatch), "--as", str(csr), "--for",
                               str(demo["by_role"]["tech_supervisor"]), "--json"])
    kind, token = LINK.fullmatch(json.loads(made.stdout)["url"]).groups()  # type: ignore[union-attr]
    opened = web_client.get(f"/{kind}/{token}")
    assert opened.status_code == 303 and opened.headers["location"] == f"/steps/{dispatch}"
    with unit_of_work() as session:
        assert len(session.scalars(select(AuditEvent).where(
            AuditEvent.action == "link_created")).all()) == 2


def test_links_start_at_the_web_doors_own_address_when_no_public_url_is_set(monkeypatch):
    """A service on another port (scripts/run with PROPFLOW_WEB_PORT=8090) sends links people
    can open, not links to a port nothing listens on."""
    from core.settings import reset_settings
    monkeypatch.delenv("PROPFLOW_PUBLIC_URL")
    monkeypatch.setenv("PROPFLOW_WEB_PORT", "8090")
    reset_settings()
    try:
        from models.links import url
        assert url("abc", "staff") == "http://127.0.0.1:8090/l/abc"
        monkeypatch.setenv("PROPFLOW_PUBLIC_URL", "https://wy.example.cn/")
        reset_settings()
        assert url("abc", "owner") == "https://wy.example.cn/o/abc"
    finally:
        monkeypatch.undo()
        reset_settings()

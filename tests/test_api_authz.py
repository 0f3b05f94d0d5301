"""Who may call what: every endpoint of /api/openapi.json, read from the app itself so a new
endpoint is covered as soon as it exists, called with no credentials, by staff of the case's
community holding a role the rules do not allow, and by staff of another community; each
refusal is problem+json and leaves the database as it was.

The rules (propflow/web/api.py): reading is scoped by community (models.scope) — any staff
of a community may read its cases, and a case of another community answers 404 as one that
does not exist; acting on a step is decided by models.authority (403 naming the rule);
opening a case takes a role in the case's community (403 otherwise: the caller named the
place), and any role will do — whoever receives a report owns it (首问责任制).
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import Response

from core.procedures import PROCEDURES
from models.intake import example, model_of
from propflow import actions
from propflow.web import auth
from tests.apikit import (
    OTHER,
    app_client,
    bearer,
    counts,
    first_step,
    no_prefect,  # noqa: F401
    open_repair,
    second_community,
)

PROBLEM = "application/problem+json"


def endpoints() -> list[tuple[str, str]]:
    """(method, path template) of every operation /api/openapi.json lists."""
    from propflow.web.app import create_app

    paths = create_app().openapi()["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items()
                  if path.startswith("/api/") for method in operations)


# Signing in is the one thing done without being signed in.
PUBLIC = [("POST", "/api/session")]
SIGNED_IN = [e for e in endpoints() if e not in PUBLIC]


def test_the_matrix_covers_every_door_of_the_api():
    paths = {p for _, p in SIGNED_IN}
    assert {"/api/cases", "/api/cases/{number}", "/api/steps", "/api/steps/{id}",
            "/api/steps/{id}/decision", "/api/notifications",
            "/api/notifications/{id}/read"} <= paths
    assert {f"/api/cases/{name}" for name in PROCEDURES} <= paths


@pytest.fixture
def world(demo: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """A repair of 阳光花园 with 吴刚's accept waiting and his notification of it; 清溪园's
    own staff; tokens for everyone the matrix calls as. Runs find Prefect away."""
    request.getfixturevalue("no_prefect")
    staff = {p["name"]: p["id"] for p in demo["staff"]}
    other = second_community()
    number = open_repair(unit="1-2-301")
    step = first_step(number)
    # For the operations that need one: an unassigned step to claim (the 技术主管's
    # dispatch of a lift repair), and one decided, to withdraw.
    unassigned = first_step(open_repair(unit="3-1-101", category="equipment",
                                        description="电梯异响"))
    decided = first_step(open_repair(unit="2-2-302"))
    actions.decide(decided, actions.show_step(decided)["assignee"], {})
    with app_client() as client:
        wu = bearer(staff["吴刚"])
        notification = client.get("/api/notifications", headers=wu).json()[0]["id"]
    return {
        "number": number, "step": step, "notification": notification, "staff": staff,
        "steps": {"claim": unassigned, "withdraw": decided},
        "as": {"none": {}, "wrong_role": bearer(staff["朱红"]),  # 保洁 of 阳光花园
               "other_community": bearer(other["tech_supervisor"]),  # 清溪园's 技术主管
               "other_supervisor": bearer(other["cs_supervisor"])},
    }


def request_for(method: str, path: str, world: dict[str, Any]) -> tuple[str, Any]:
    """The path filled in with the world's case, step or notification, and a body that is
    valid for whoever may call it: a refusal is then the rules', not the input's."""
    zheng = world["staff"]["郑浩"]
    step = world["steps"].get(path.rsplit("/", 1)[-1], world["step"])
    filled = (path.replace("{number}", world["number"])
              .replace("/api/steps/{id}", f"/api/steps/{step}")
              .replace("/api/notifications/{id}", f"/api/notifications/{world['notification']}"))
    assert "{" not in filled, f"{method} {path}: tell request_for what to put in its path"
    procedure = path.removeprefix("/api/cases/")
    if method == "POST" and path.startswith("/api/cases/") and "{" not in path:
        fields = example(procedure)
        if "community" in model_of(procedure).model_fields:
            fields["community"] = "YGHY"
        return filled, fields
    bodies: dict[str, Any] = {
        "decision": {"values": {}}, "transfer": {"to": zheng}, "delegate": {"to": zheng},
        "add_signer": {"to": zheng, "position": "before"}, "cc": {"to": [zheng]},
        "send_back": {"reason": "资料不全"}, "withdraw": {"reason": "填错了"},
    }
    return filled, bodies.get(path.rsplit("/", 1)[-1]) if method == "POST" else None


def call(client: Any, method: str, path: str, world: dict[str, Any],
         headers: dict[str, str]) -> Any:
    url, body = request_for(method, path, world)
    return client.request(method, url, headers=headers,
                          **({"json": body} if body is not None else {}))


def is_open(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/api/cases/") and "{" not in path


def is_self(path: str) -> bool:
    return path == "/api/session"


def test_every_endpoint_refuses_without_credentials_a_wrong_role_and_another_community(world):
    """One world, every endpoint in turn (a world per endpoint would cost a demo seed each);
    every endpoint that fails is named."""
    failed = []
    with app_client() as client:
        for method, path in SIGNED_IN:
            try:
                check(client, world, method, path)
            except AssertionError as exc:
                failed.append(f"{method} {path}: {exc}")
    assert not failed, "\n".join(failed)


def check(client: Any, world: dict[str, Any], method: str, path: str) -> None:
    before = counts()
    answer = call(client, method, path, world, world["as"]["none"])
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["www-authenticate"].startswith("Bearer")
    bad = call(client, method, path, world, {"Authorization": "Bearer pft_forged"})
    assert bad.status_code == 401, bad.text
    assert counts() == before

    for who in ("other_community", "other_supervisor"):
        answer = call(client, method, path, world, world["as"][who])
        if is_self(path):
            assert answer.status_code < 300, answer.text
        elif "{" in path:  # someone else's community: as if it did not exist
            assert answer.status_code == 404, (who, answer.text)
            assert answer.headers["content-type"] == PROBLEM
        elif is_open(method, path):  # they named a place that is not theirs
            assert answer.status_code == 403, (who, answer.text)
            assert answer.json()["field"] in ("unit", "community")
        else:  # a list: theirs alone, none of 阳光花园's
            assert answer.status_code == 200, (who, answer.text)
            text = answer.text
            assert world["number"] not in text
            assert f'"id":{world["step"]},' not in text.replace(" ", "")
        assert counts() == before, who

    answer = call(client, method, path, world, world["as"]["wrong_role"])
    if method == "GET" or is_self(path) or is_open(method, path):
        # Reading is by community; any of its staff may receive a case (首问责任制).
        assert answer.status_code < 300, answer.text
    else:
        assert answer.status_code in (403, 404), answer.text
        assert answer.headers["content-type"] == PROBLEM
        if path.startswith("/api/steps/"):  # the rule refusing them is named
            assert answer.status_code == 403 and "规则" in answer.json()["detail"], \
                answer.text
        assert counts() == before


def test_a_company_level_role_sees_every_community_of_its_company(world):
    other = second_community_case(world)
    with app_client() as client:
        company_cs = bearer(world["staff"]["孙丽"])  # 公司客服中心: no community of her own
        listed = {c["number"] for c in client.get("/api/cases", headers=company_cs).json()[
            "items"]}
        assert {world["number"], other} <= listed
        supervisor = bearer(world["staff"]["陈静"])  # 阳光花园's 客服主管
        listed = {c["number"] for c in client.get("/api/cases", headers=supervisor).json()[
            "items"]}
        assert world["number"] in listed and other not in listed
        assert client.get(f"/api/cases/{other}", headers=supervisor).status_code == 404
        assert client.get(f"/api/cases/{other}", headers=company_cs).status_code == 200


def second_community_case(world: dict[str, Any]) -> str:
    return open_repair(unit="1-1-101", community=OTHER)


def test_a_one_tap_link_opens_its_own_step_and_nothing_else(world, demo):
    other_step = first_step(open_repair(unit="2-1-101"))
    cookie = Response()
    auth.start_session(cookie, world["staff"]["吴刚"], step_id=world["step"])
    name, _, rest = cookie.headers["set-cookie"].partition("=")
    with app_client() as client:
        client.cookies.set(name, rest.split(";", 1)[0])
        assert client.get(f"/api/steps/{world['step']}").status_code == 200
        for path in (f"/api/steps/{other_step}", "/api/cases", f"/api/cases/{world['number']}",
                     "/api/notifications"):
            answer = client.get(path)
            assert answer.status_code == 403, (path, answer.text)
            assert answer.headers["content-type"] == PROBLEM

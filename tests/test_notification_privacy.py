"""An owner is told things at their phone number (`owner:<phone>`); what staff are shown of
the outbox never gives the number: `notifications list` and `cases show` mask it."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from models.db import unit_of_work
from models.outbox import Notification
from propflow import actions
from propflow.cli import app as cli
from tests.flowkit import REPAIR

runner = CliRunner()
PHONE = "13800138000"


def test_the_owners_phone_is_masked_in_the_outbox_staff_see(demo):
    number = actions.open_repair(start_run=False, **REPAIR | {"phone": PHONE})["number"]
    with unit_of_work() as session:  # a delivery that failed, its error naming the number
        told = session.scalars(select(Notification).where(
            Notification.recipient == f"owner:{PHONE}")).first()
        assert told is not None  # the owner was told "已受理"
        told.last_error = f"SMS gateway refused {PHONE}"

    for args in (["notifications", "list", "--case", number, "--json"],
                 ["cases", "show", number, "--json"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert PHONE not in result.stdout
        data = json.loads(result.stdout)
        rows = data if isinstance(data, list) else data["notifications"]
        owner = [r for r in rows if r["recipient"].startswith("owner:")]
        assert [r["recipient"] for r in owner] == ["owner:138****8000"]
        assert owner[0]["error"] == "SMS gateway refused 138****8000"

"""A broadcast to every household of a community: written to the outbox in one transaction,
then delivered by e-mail to a real local SMTP server with bounded concurrency.

    .venv/bin/python bench/broadcast.py [--households 5000] [--concurrency 8] [--pg]
"""

from __future__ import annotations

import argparse
import time

from common import Bench, free_port

parser = argparse.ArgumentParser()
parser.add_argument("--households", type=int, default=5000)
parser.add_argument("--concurrency", type=int, default=8)
parser.add_argument("--pg", action="store_true")
args = parser.parse_args()

with Bench("broadcast", args.pg, mode="normal") as bench:
    import sys

    import yaml

    # A real SMTP server in its own process, as a mail relay would be (aiosmtpd's Sink).
    port = free_port()
    bench.spawn([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                 "-c", "aiosmtpd.handlers.Sink"], "smtp.log")
    time.sleep(1.0)  # the relay binds its port
    from core.settings import DEMO_POLICY

    policy = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    policy["channels"] = {"email": {"kind": "email", "host": "127.0.0.1", "port": port,
                                    "sender": "kf@demo.propflow.local"}}
    policy["routes"]["broadcast"] = ["email"]
    path = bench.tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    import os

    os.environ["PROPFLOW_POLICY"] = str(path)

    bench.prepare()
    from sqlalchemy import insert, select

    from models import broadcast
    from models.db import unit_of_work
    from models.org import Resident, Unit
    from notifications.delivery import deliver_due
    from propflow import actions

    with unit_of_work() as session:
        units = list(session.scalars(select(Unit.id)))
        session.execute(insert(Resident), [
            {"unit_id": units[i % len(units)], "name": f"住户{i}", "phone": f"137{i:08d}",
             "email": f"r{i}@residents.local", "is_owner": True}
            for i in range(args.households)])
    case = actions.report_emergency(start_run=False, kind="water_outage", community="YGHY",
                                    location="全小区", reporter="工程部", buildings=[])
    print(f"{args.households} households with e-mail; case {case['number']}")

    t0 = time.perf_counter()
    with unit_of_work() as session:
        from core.clock import now
        from models.directory import case as load_case

        told = broadcast.to_residents(session, load_case(session, case["number"]), "activated",
                                      key="bench:activated", now=now())
    write = time.perf_counter() - t0
    print(f"write: {told} households, {2 * told + 1} outbox rows in one transaction: "
          f"{write:.2f}s ({2 * told / write:,.0f} rows/s)")

    t0, sent = time.perf_counter(), 0
    while True:
        counts = deliver_due(limit=500, concurrency=args.concurrency)
        if not any(counts.values()):
            break
        sent += counts["sent"]
        print(f"  delivered {sent}/{told} ({counts})", flush=True)
    deliver = time.perf_counter() - t0
    print(f"deliver: {sent} e-mails over SMTP with concurrency {args.concurrency}: "
          f"{deliver:.2f}s ({sent / deliver:,.0f} messages/s)")

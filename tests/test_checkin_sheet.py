"""The checkpoints' printed codes: each a signed link that a tampered copy does not pass,
drawn by segno on a PNG sheet and on A4 PDF pages, and read back here with a real QR decoder
(zxing-cpp) as a phone's camera would read the printout."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select
from typer.testing import CliRunner

from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow import checkpoints
from propflow.checkpoints import Checkpoint
from propflow.cli import app
from propflow.sheets import MODULE_PX, QUIET_ZONE, qr
from tests.apikit import OTHER, second_community
from tests.webkit import sign_in
from tests.webpages import session_cookie

runner = CliRunner()
PLAN = "public_facilities"
LOBBY = Checkpoint("YGHY", PLAN, "lobby")


def plan_links(plan: str = PLAN) -> dict[str, str]:
    """checkpoint key -> the link its code must hold."""
    return {key: checkpoints.url(Checkpoint("YGHY", plan, key))
            for key in checkpoints.plan(plan).checkpoints}


def decoded(image: Image.Image) -> list[str]:
    return [code.text for code in zxingcpp.read_barcodes(image)
            if code.format == zxingcpp.BarcodeFormat.QRCode]


def print_sheet(tmp_path: Path, name: str, *args: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / name
    result = runner.invoke(app, ["inspection", "sheet", "--community", "YGHY", *args,
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return out, json.loads(result.stdout)


def as_staff(client: TestClient, staff_id: int) -> None:
    """Signed in as someone without a password (the second community's staff)."""
    client.cookies.set("propflow_session", session_cookie(staff_id)[0])


# --- the link ---------------------------------------------------------------------------

def test_a_checkpoints_link_names_its_place_and_is_signed(env: Any) -> None:
    link = checkpoints.url(LOBBY)
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:8080"  # PROPFLOW_PUBLIC_URL
    *place, sig = parts.path.split("/")[2:]
    assert place == ["YGHY", PLAN, "lobby"]
    assert checkpoints.genuine(LOBBY, sig)
    # Another checkpoint, plan or community under the same signature is refused,
    assert not checkpoints.genuine(Checkpoint("YGHY", PLAN, "rooftop"), sig)
    assert not checkpoints.genuine(Checkpoint("YGHY", "grounds", "lobby"), sig)
    assert not checkpoints.genuine(Checkpoint("XXXX", PLAN, "lobby"), sig)
    # as is the signature with a character changed, or the one under another secret key.
    assert not checkpoints.genuine(LOBBY, sig[:-1] + ("A" if sig[-1] != "A" else "B"))
    env("PROPFLOW_SECRET_KEY", "another key")
    assert not checkpoints.genuine(LOBBY, sig)
    # The public address is the one the settings give.
    env("PROPFLOW_PUBLIC_URL", "https://wuye.example.cn/")
    assert checkpoints.url(LOBBY).startswith("https://wuye.example.cn/checkin/YGHY/")


def test_a_tampered_or_cut_link_is_refused_with_a_page_and_records_nothing(
        web_client: TestClient, demo: dict[str, Any]) -> None:
    path = checkpoints.path(LOBBY)
    sig = path.rsplit("/", 1)[1]
    sign_in(web_client, demo["by_role"]["steward"])
    tampered = [path.replace("/lobby/", "/rooftop/"),      # another checkpoint, same signature
                path.replace(f"/{PLAN}/", "/grounds/"),  # another plan
                path[:-2] + ("xx" if not path.endswith("xx") else "yy"),  # signature changed
                path.rsplit("/", 1)[0],                  # signature cut off
                f"/checkin/YGHY/{PLAN}/lobby/{sig}/more"]
    for bad in tampered:
        page = web_client.get(bad)
        assert page.status_code == 404, bad
        assert page.headers["content-type"].startswith("text/html")
        assert 'data-reason="invalid"' in page.text and "签到二维码无效" in page.text
        assert "没有记录任何签到" in page.text and "Traceback" not in page.text
    with unit_of_work(write=False) as session:
        assert not session.scalars(select(AuditEvent).where(
            AuditEvent.action == "checked_in")).all()


def test_a_tampered_link_is_refused_before_asking_to_sign_in(
        web_client: TestClient, demo: dict[str, Any]) -> None:
    path = checkpoints.path(LOBBY)
    assert web_client.get(path.replace("/lobby/", "/rooftop/")).status_code == 404
    good = web_client.get(path)  # a genuine one: sign in, then back to it
    assert good.status_code == 303
    assert good.headers["location"].startswith("/login?next=%2Fcheckin%2FYGHY%2F")


def test_a_genuine_link_to_a_checkpoint_the_plan_no_longer_has_says_so(
        web_client: TestClient, demo: dict[str, Any]) -> None:
    sign_in(web_client, demo["by_role"]["steward"])
    gone = web_client.get(checkpoints.path(Checkpoint("YGHY", PLAN, "old_gate")))
    assert gone.status_code == 404
    assert 'data-reason="unknown"' in gone.text and "检查点不存在" in gone.text
    assert "old_gate" in gone.text  # which one, so the steward can report it


# --- the sheets -------------------------------------------------------------------------

def test_the_png_sheet_reads_back_as_each_checkpoints_link(
        demo: dict[str, Any], tmp_path: Path) -> None:
    out, told = print_sheet(tmp_path, "sheet.png", "--plan", PLAN)
    assert told["checkpoints"] == ["lobby", "fire_exit", "rooftop"]
    image = Image.open(out)
    assert image.format == "PNG"
    assert sorted(decoded(image)) == sorted(plan_links().values())


def test_each_code_drawn_is_segnos_code_for_its_link(demo: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """The modules on the sheet are segno's matrix for the link, module for module."""
    out, _ = print_sheet(tmp_path, "sheet.png", "--plan", PLAN)
    sheet = Image.open(out).convert("L")
    for found in zxingcpp.read_barcodes(sheet):
        matrix = [list(row) for row in qr(found.text).matrix]
        corner = found.position.top_left
        size = len(matrix) * MODULE_PX
        code = sheet.crop((corner.x, corner.y, corner.x + size, corner.y + size))
        drawn = [[code.getpixel((c * MODULE_PX + MODULE_PX // 2, r * MODULE_PX + MODULE_PX // 2))
                  < 128 for c in range(len(matrix))] for r in range(len(matrix))]
        assert drawn == [[bool(m) for m in row] for row in matrix], found.text
    assert QUIET_ZONE == 4


def test_the_pdf_sheet_has_a4_pages_with_one_code_per_checkpoint(
        demo: dict[str, Any], tmp_path: Path, policy_with: Any) -> None:
    def seven_checkpoints(data: dict[str, Any]) -> None:
        points = data["procedures"]["inspection"]["plans"][PLAN]["checkpoints"]
        for i in range(4):
            points[f"stair_{i}"] = {"label": f"{i + 1}号楼楼梯间", "items": ["照明", "杂物"]}

    policy_with(seven_checkpoints)
    out, told = print_sheet(tmp_path, "sheet.pdf", "--plan", PLAN)
    assert len(told["checkpoints"]) == 7
    reader = PdfReader(out)
    assert [(round(p.mediabox.width), round(p.mediabox.height)) for p in reader.pages] == \
        [(595, 842), (595, 842)]  # A4 in points, six codes to a page
    assert [len(p.images) for p in reader.pages] == [6, 1]
    links = plan_links()
    read = [text for p in reader.pages for image in p.images for text in decoded(image.image)]
    assert sorted(read) == sorted(links.values())
    # Each name is printed (in Chinese, through the CID font), in the plan's order.
    text = "".join(p.extract_text() for p in reader.pages)
    labels = [point.label for point in checkpoints.plan(PLAN).checkpoints.values()]
    assert [text.index(label) for label in labels] == sorted(text.index(x) for x in labels)
    assert "阳光花园 · 公共设施巡查" in text


def test_printing_a_sheet_refuses_what_it_cannot_do(demo: dict[str, Any],
                                                    tmp_path: Path) -> None:
    for args, field in (
            (["--plan", "nope", "--out", str(tmp_path / "a.pdf")], "plan"),
            (["--plan", PLAN, "--out", str(tmp_path / "a.docx")], "out"),
            (["--plan", PLAN, "--out", str(tmp_path / "missing" / "a.pdf")], "out")):
        result = runner.invoke(app, ["inspection", "sheet", "--community", "YGHY", *args])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"错误：{field}："), result.stderr
        assert "expected" in result.stderr and "Traceback" not in result.output
    wrong = runner.invoke(app, ["inspection", "sheet", "--community", "NOPE", "--plan", PLAN,
                                "--out", str(tmp_path / "a.pdf")])
    assert wrong.exit_code == 2 and wrong.stderr.startswith("错误：community：")


def test_staff_download_the_sheet_from_the_web_door(web_client: TestClient,
                                                    demo: dict[str, Any]) -> None:
    query = f"/inspections/sheet?community=YGHY&plan={PLAN}"
    assert web_client.get(query).status_code == 303  # sign in first
    steward = demo["by_role"]["steward"]
    sign_in(web_client, steward)
    listing = web_client.get("/inspections/sheets")
    assert listing.status_code == 200
    assert f'data-plan="{PLAN}"' in listing.text and "大堂及电梯厅" in listing.text
    pdf = web_client.get(query + "&format=pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    reader = PdfReader(io.BytesIO(pdf.content))
    assert sorted(t for p in reader.pages for i in p.images for t in decoded(i.image)) == \
        sorted(plan_links().values())
    png = web_client.get(query + "&format=png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert sorted(decoded(Image.open(io.BytesIO(png.content)))) == sorted(plan_links().values())
    bad = web_client.get(query + "&format=docx")
    assert bad.status_code == 422 and "format" in bad.text and "Traceback" not in bad.text
    with unit_of_work(write=False) as session:
        printed = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "checkpoint_sheet").order_by(AuditEvent.id)).all()
    assert [(e.actor, e.detail["format"]) for e in printed] == \
        [(f"staff:{steward}", "pdf"), (f"staff:{steward}", "png")]


def test_a_sheet_is_for_staff_of_the_community(web_client: TestClient,
                                               demo: dict[str, Any]) -> None:
    """Staff of another community get the same page as for one that does not exist."""
    other = second_community()
    as_staff(web_client, other["csr"])
    refused = web_client.get(f"/inspections/sheet?community=YGHY&plan={PLAN}&format=pdf")
    assert refused.status_code == 404 and refused.headers["content-type"].startswith("text/html")
    assert "community" in refused.text and "%PDF" not in refused.text
    assert "YGHY" not in web_client.get("/inspections/sheets").text
    assert web_client.get(f"/inspections/sheet?community={OTHER}&plan={PLAN}").status_code == 200


def test_without_a_chinese_font_the_png_is_refused_and_the_pdf_still_printed(
        demo: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> None:
    from propflow import sheets

    monkeypatch.setattr(sheets, "cjk_font_file", lambda: None)
    refused = runner.invoke(app, ["inspection", "sheet", "--community", "YGHY", "--plan", PLAN,
                                  "--out", str(tmp_path / "sheet.png")])
    assert refused.exit_code == 2 and refused.stderr.startswith("错误：format：")
    assert "fonts-noto-cjk" in refused.stderr and not (tmp_path / "sheet.png").exists()
    out, _ = print_sheet(tmp_path, "sheet.pdf", "--plan", PLAN)  # its CID font needs no file
    assert len(PdfReader(out).pages[0].images) == 3

"""The printable sheet of an inspection plan's checkpoint codes: one QR code per checkpoint
(its signed link, propflow/checkpoints.py) with the checkpoint's name underneath, to cut
out and post where the round passes.

The codes are segno's. PDF: A4 pages drawn by reportlab, six codes a page; the names use
reportlab's built-in CID font STSong-Light, so no font file is needed (a PDF reader supplies
the Song face). Each code is placed as a lossless bitmap of segno's modules at 10 px each,
so it prints sharp at its 60 mm. PNG: one image of all the codes, drawn with Pillow; the
names need a Chinese font installed (fonts-noto-cjk on Debian), found through fontconfig.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from core.errors import PropflowError

if TYPE_CHECKING:
    import segno
    from PIL import ImageFont

Format = Literal["pdf", "png"]
FORMATS: tuple[Format, ...] = ("pdf", "png")
ERROR_LEVEL = "M"  # 15 % of a code may be scuffed or dirty and it still reads
MODULE_PX = 10  # pixels per module in the bitmaps drawn
QUIET_ZONE = 4  # modules of white around a code, as the QR standard asks


@dataclass(frozen=True)
class Code:
    label: str  # the checkpoint's name, printed under its code
    url: str  # what the code holds
    note: str = ""  # a second, smaller line (the checkpoint's key)


def qr(url: str) -> segno.QRCode:
    """The code for a URL: what is drawn, and what a test compares a decoded sheet with."""
    import segno

    return segno.make_qr(url, error=ERROR_LEVEL, boost_error=False)


def _bitmap(url: str) -> bytes:
    out = io.BytesIO()
    qr(url).save(out, kind="png", scale=MODULE_PX, border=QUIET_ZONE)
    return out.getvalue()


def check_format(fmt: str, field: str = "format") -> Format:
    if fmt not in FORMATS:
        raise PropflowError(f"{field}：不支持的格式 {fmt!r}；expected one of {list(FORMATS)}",
                            field=field)
    return fmt


def draw(title: str, codes: Sequence[Code], fmt: Format) -> bytes:
    if not codes:
        raise PropflowError("plan：该巡查计划没有检查点；expected a plan with checkpoints",
                            field="plan")
    return _pdf(title, codes) if fmt == "pdf" else _png(title, codes)


# --- PDF ------------------------------------------------------------------------------

PDF_FONT = "STSong-Light"
COLUMNS, ROWS = 2, 3  # six codes to an A4 page


def _pdf(title: str, codes: Sequence[Code]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    page.setTitle(title)
    page.setCreator("propflow")
    width, height = A4
    margin, header = 15 * mm, 18 * mm
    cell_w = (width - 2 * margin) / COLUMNS
    cell_h = (height - 2 * margin - header) / ROWS
    side = 60 * mm  # the code with its quiet zone
    per_page = COLUMNS * ROWS
    pages = (len(codes) + per_page - 1) // per_page
    for number in range(pages):
        page.setFont(PDF_FONT, 14)
        page.drawString(margin, height - margin - 6 * mm, title)
        page.setFont(PDF_FONT, 9)
        page.drawString(margin, height - margin - 12 * mm,
                        "巡查签到：到达检查点后用手机扫码，登录后自动记录签到人和时间。")
        page.drawRightString(width - margin, height - margin - 6 * mm,
                             f"第 {number + 1}/{pages} 页")
        for i, code in enumerate(codes[number * per_page:(number + 1) * per_page]):
            column, row = i % COLUMNS, i // COLUMNS
            left = margin + column * cell_w
            top = height - margin - header - row * cell_h
            x = left + (cell_w - side) / 2
            page.drawImage(ImageReader(io.BytesIO(_bitmap(code.url))), x, top - side,
                           width=side, height=side)
            page.setFont(PDF_FONT, 13)
            page.drawCentredString(left + cell_w / 2, top - side - 7 * mm, code.label)
            if code.note:
                page.setFont(PDF_FONT, 8)
                page.drawCentredString(left + cell_w / 2, top - side - 12 * mm, code.note)
            # a thin cutting line around each cell
            page.setStrokeGray(0.8)
            page.setDash(2, 2)
            page.rect(left, top - cell_h, cell_w, cell_h, stroke=1, fill=0)
            page.setDash()
        page.showPage()
    page.save()
    return out.getvalue()


# --- PNG ------------------------------------------------------------------------------

PNG_COLUMNS = 3
# Where Debian, Fedora and Alpine put a Chinese face, tried when fontconfig is not there.
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
)


@lru_cache
def cjk_font_file() -> str | None:
    """A font file with Chinese glyphs (a regular sans face first), or None."""
    import os

    found: list[str] = []
    if shutil.which("fc-list"):  # lists only the faces that cover the language
        try:
            listed = subprocess.run(["fc-list", ":lang=zh-cn", "file"], capture_output=True,
                                    text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        found = sorted(line.strip().rstrip(":") for line in listed.splitlines() if line.strip())
        found.sort(key=lambda f: ("Sans" not in f, "Regular" not in f))
    return next((f for f in [*found, *CJK_FONTS] if os.path.exists(f)), None)


def _font(size: int) -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    path = cjk_font_file()
    if path is None:
        raise PropflowError("format：生成 PNG 需要系统安装中文字体（如 Debian 的 fonts-noto-cjk）；"
                            "expected a Chinese font installed, or the PDF (--out sheet.pdf), "
                            "which needs none", field="format")
    return ImageFont.truetype(path, size)


def _png(title: str, codes: Sequence[Code]) -> bytes:
    from PIL import Image, ImageDraw

    bitmaps = [Image.open(io.BytesIO(_bitmap(code.url))).convert("L") for code in codes]
    side = max(b.width for b in bitmaps)
    big, small, head = _font(30), _font(18), _font(36)
    pad, label_h, header = 30, 90, 110
    cell_w, cell_h = side + 2 * pad, side + label_h + pad
    columns = min(PNG_COLUMNS, len(codes))
    rows = (len(codes) + columns - 1) // columns
    sheet = Image.new("L", (columns * cell_w, header + rows * cell_h), 255)
    pen = ImageDraw.Draw(sheet)
    pen.text((pad, 25), title, font=head, fill=0)
    pen.text((pad, 72), "巡查签到：到达检查点后用手机扫码，登录后自动记录签到人和时间。",
             font=small, fill=0)
    for i, (code, bitmap) in enumerate(zip(codes, bitmaps, strict=True)):
        left = (i % columns) * cell_w
        top = header + (i // columns) * cell_h
        sheet.paste(bitmap, (left + (cell_w - bitmap.width) // 2, top + pad // 2))
        centre = left + cell_w // 2
        pen.text((centre, top + pad // 2 + side + 10), code.label, font=big, fill=0,
                 anchor="ma")
        if code.note:
            pen.text((centre, top + pad // 2 + side + 50), code.note, font=small, fill=90,
                     anchor="ma")
        pen.rectangle((left, top, left + cell_w - 1, top + cell_h - 1), outline=200)
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()

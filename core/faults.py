"""Our own faults: a reference for the user, the traceback in a log, personal numbers masked."""

from __future__ import annotations

import os
import re
import sys
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path

# 18-digit resident ID numbers first, so that a phone-like run inside one is not half-masked.
_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
# Mainland mobiles as people type them: 13800138000, 138-0013-8000, +86 138 0013 8000.
_PHONE = re.compile(r"(?<!\d)((?:\+?86[\s-]?)?1[3-9]\d)[\s-]?\d{4}[\s-]?(\d{4})(?!\d)")


def mask(text: str) -> str:
    text = _ID.sub(lambda m: m.group(0)[:4] + "*" * 10 + m.group(0)[-4:], text)
    return _PHONE.sub(r"\1****\2", text)


def log_path() -> Path:
    # Not through the settings: a fault may come from reading them.
    try:
        from core.settings import get_settings

        home = get_settings().home
    except Exception:  # noqa: BLE001 - any home will do to keep the record
        home = Path(os.environ.get("PROPFLOW_HOME", ".propflow"))
    return home / "logs" / "propflow.log"


def record(exc: BaseException) -> tuple[str, Path | None]:
    """Write the fault with a fresh reference; None for the path when it could not be written."""
    reference = uuid.uuid4().hex[:8].upper()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"=== {at} 参考编号 reference {reference}",
             f"command: {' '.join(sys.argv)}",
             *traceback.format_exception(exc)]
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(mask("\n".join(line.rstrip("\n") for line in lines)) + "\n\n")
    except OSError:
        return reference, None
    return reference, path.resolve()


def message(exc: BaseException, reference: str, path: Path | None) -> str:
    where = f"详情已记入 {path}" if path else "详情未能写入日志（PROPFLOW_HOME 不可写）"
    return (f"内部错误（参考编号 {reference}，{type(exc).__name__}）：这是 propflow 自身的问题，"
            f"不是输入错误，请求可能未完成；{where}，请把参考编号交给管理员；"
            "expected no error: please report the reference")

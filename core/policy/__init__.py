"""The policy file (core/policy/file.py): windows, calendars, escalation chains, channels.

Its rules are pydantic models, and importing them was the largest part of a read command's
start-up (bench/cli_startup.py). So this package loads them on first use: `get_policy()`,
`load_policy()` or one of their names. A command checks the file with `ensure_valid()`,
which remembers a file found valid by its digest and does not validate it again.
"""

from __future__ import annotations

import hashlib
import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import get_settings

# Other modules annotate with these; any other name loads through __getattr__.
__all__ = ["Policy", "Procedure", "ReceptionDay", "Sms", "ensure_valid", "get_policy",
           "load_policy"]

if TYPE_CHECKING:
    from core.policy.file import Policy, Procedure, ReceptionDay, Sms

_CODE = Path(__file__).resolve().parents[1]  # core/: the rules a file is validated by


def _file() -> Any:
    # import_module, not `from core.policy import file`: that asks this module's
    # __getattr__ for `file` before the submodule is loaded.
    return import_module("core.policy.file")


def get_policy() -> Policy:
    """The policy file as it is now; a running process re-reads it when it changes."""
    policy: Policy = _file().get_policy()
    return policy


def load_policy(path: Path | str) -> Policy:
    policy: Policy = _file().load_policy(path)
    return policy


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name == "file":
        raise AttributeError(name)
    return getattr(_file(), name)


def ensure_valid() -> None:
    """Refuse a broken policy file before a command acts, as get_policy() would.

    A file is known valid by a marker named for its digest and for the code of core/ that
    checked it (PROPFLOW_HOME/cache/policy/); a marker is written only after a validation
    passed, so a broken file is validated, and refused, each time.
    """
    path = Path(get_settings().policy)
    try:
        data = path.read_bytes()
    except OSError:
        get_policy()  # names the missing file the way every other refusal does
        return
    marker = get_settings().home / "cache" / "policy" / _key(path, data)
    if marker.exists():
        return
    get_policy()
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only home validates each time; nothing is wrong with the file


def _key(path: Path, data: bytes) -> str:
    digest = hashlib.sha256(data)
    digest.update(str(path.resolve()).encode())  # a refusal names the file
    for folder in (_CODE, _CODE / "policy"):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                st = entry.stat()
                digest.update(f"{entry.name}:{st.st_mtime_ns}:{st.st_size}".encode())
    return digest.hexdigest()

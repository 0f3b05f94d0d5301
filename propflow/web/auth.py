"""Who is asking: a signed session cookie (browsers), a bearer token (integrations), or a
one-tap link (one step, or one owner's case). Every route takes its Principal from here.

Contract for the routes (kept stable while it is filled in):
- `api_principal` (FastAPI dependency): the Principal of a bearer token or a session;
  no credentials -> Problem 401 (problem+json).
- `page_principal`: the same for pages; no session -> 303 redirect to /login?next=<path>.
- `csrf_check` (dependency for form posts): 403 Problem when the form's `csrf` field does not
  match the session's token.
- Principal.staff_id is None only for an owner's link (owner pages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Principal:
    staff_id: int | None  # None: an owner through their link
    name: str
    via: Literal["session", "token", "link"]
    step_id: int | None = None  # a one-tap link opens this step alone
    case_id: int | None = None  # an owner's link: this case alone

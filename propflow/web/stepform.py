"""A step's HTML form, generated from its form's JSON schema (models/forms.py via
actions.show_step_as), and the posted strings turned back into the values it validates.

Required fields are marked; a field a rule requires only sometimes (a reason when the answer
is no, a rating when the owner was reached) says so and the page's script makes it required
as soon as that answer is chosen. The form model still checks everything on the server.
"""

from __future__ import annotations

from typing import Any

from core.errors import PropflowError
from models import forms as step_forms

# Fields without a description of their own.
NAMES: dict[str, tuple[str, str]] = {
    "reason": ("原因", "reason"), "work_done": ("处理内容", "work done"),
    "comment": ("说明", "comment"), "note": ("备注", "note"),
}
LONG_TEXT = 1000  # a Short note is a text box from here on; a Long report a bigger one


def _conditions(procedure: str, kind: str) -> dict[str, tuple[str, str]]:
    """field -> (other field, value of it that makes the field required)."""
    form = step_forms.FORMS[step_forms.form_key(procedure, kind)]
    out: dict[str, tuple[str, str]] = {}
    if issubclass(form, step_forms.AnswerForm):
        out["reason"] = (form.answer, "false")
    if issubclass(form, step_forms.CallbackForm):
        out["rating"] = ("reached", "true")
    return out


def _kind(prop: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The input a JSON-schema property becomes, and its own constraints."""
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    types = {o.get("type") for o in options}
    first = options[0] if options else {}
    if "boolean" in types:
        return "bool", first
    if types == {"integer"}:
        return "int", first
    if "number" in types:
        return "money", first
    if first.get("format") == "date-time":
        return "datetime", first
    return "text", first


def fields(step: dict[str, Any]) -> list[dict[str, Any]]:
    schema = step["form_schema"]
    required = set(schema.get("required", []))
    when = _conditions(step["procedure"], step["step"])
    out = []
    for name, prop in schema.get("properties", {}).items():
        kind, own = _kind(prop)
        zh, en = NAMES.get(name, (prop.get("description") or prop.get("title") or name,
                                  prop.get("title") or name))
        default = prop.get("default")
        out.append({
            "name": name, "kind": kind, "label_zh": zh, "label_en": en,
            "required": name in required, "when": when.get(name),
            "default": "" if default is None else str(default).lower() if kind == "bool"
            else str(default),
            "min": own.get("minimum"), "max": own.get("maximum"),
            "maxlength": own.get("maxLength"),
            "long": (own.get("maxLength") or 0) > LONG_TEXT,
        })
    labels = {f["name"]: (f["label_zh"], f["label_en"]) for f in out}
    for f in out:  # "required when <the other question's label> is no"
        if f["when"]:
            f["when_zh"], f["when_en"] = labels.get(f["when"][0], (f["when"][0],) * 2)
    return out


def values(form: list[dict[str, Any]], posted: dict[str, Any]) -> dict[str, Any]:
    """The posted strings as the form's values: an empty optional field is left out, so its
    default applies; a number that is not one is refused naming the field."""
    out: dict[str, Any] = {}
    for f in form:
        raw = str(posted.get(f["name"], "")).strip()
        if raw == "":
            continue
        if f["kind"] == "bool":
            if raw not in ("true", "false"):
                raise PropflowError(f"{f['name']}：应为 是/否；expected true or false",
                                    field=f["name"])
            out[f["name"]] = raw == "true"
        elif f["kind"] == "int":
            try:
                out[f["name"]] = int(raw)
            except ValueError:
                raise PropflowError(f"{f['name']}：{raw[:20]!r} 不是整数；expected an integer",
                                    field=f["name"]) from None
        else:  # text, money (Decimal from its text), datetime: the form model parses them
            out[f["name"]] = raw
    return out

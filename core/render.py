"""Messages from Jinja2 templates: templates/<procedure>/<event>.<lang>.j2, first line the subject.

Rendering is kept apart from sending so it can be tested on its own text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
)

from core import procedures

TEMPLATES = Path(__file__).parent / "templates"
LANGS = ("zh-CN", "en")

_env = Environment(
    loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES))]),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def render(procedure: str, event: str, lang: str, **context: Any) -> Rendered:
    return render_with(template_for(procedure, event, lang), context)


def template_for(procedure: str, event: str, lang: str) -> Template:
    """The procedure's own template for the event, else the common one. A batch looks it up
    once: a miss in the procedure's folder is a filesystem search every time."""
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r} is not supported; expected one of {LANGS}")
    declared = procedures.PROCEDURES.get(procedure)
    own = declared.templates_folder if declared else procedure
    for folder in (own, "common"):
        try:
            return _env.get_template(f"{folder}/{event}.{lang}.j2")
        except TemplateNotFound:
            continue
    raise LookupError(f"no template for {procedure}/{event}.{lang}")


def render_with(template: Template, context: dict[str, Any]) -> Rendered:
    subject, _, body = template.render(**context).strip().partition("\n")
    return Rendered(subject=subject.strip(), body=body.strip())


def events() -> set[str]:
    """Every event some template renders (what the policy's sms.templates may name)."""
    return {path.name.split(".", 1)[0] for path in TEMPLATES.glob("*/*.j2")}

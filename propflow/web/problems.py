"""RFC 9457 problem details: every refusal names the field and what was expected."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import Conflict, Forbidden, NotFound, PropflowError

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP refusal raised by our own routes (401 no sign-in, 403, 429, ...)."""

    def __init__(self, status: int, title: str, detail: str = "", *, field: str | None = None,
                 code: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail or title
        self.field, self.code, self.headers = field, code, headers or {}


def problem(status: int, title: str, detail: str, *, field: str | None = None, code: str = "",
            instance: str = "", headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{code or status}", "title": title,
                            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409}


def status_of(exc: PropflowError) -> int:
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            return status
    return 422


def install(app: FastAPI) -> None:
    """Our errors, FastAPI's validation errors and HTTP errors all answer as problem+json;
    an unexpected fault answers 500 with a log reference, never a traceback."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, field=exc.field, code=exc.code,
                       instance=request.url.path, headers=exc.headers)

    @app.exception_handler(PropflowError)
    async def _refused(request: Request, exc: PropflowError) -> JSONResponse:
        return problem(status_of(exc), "请求被拒绝 (request refused)", exc.message,
                       field=exc.field, code=exc.code, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query",
                                                                           "path")),
                   "expected": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "expected": ""}
        return problem(422, "输入无效 (invalid input)",
                       f"{first['field']}：{first['expected']}", field=first["field"] or None,
                       code="invalid", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail),
                       instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        from core import faults

        reference, _ = faults.record(exc)
        return problem(500, "内部错误 (internal error)",
                       f"内部错误（参考编号 {reference}）", code="internal",
                       instance=request.url.path, reference=reference)

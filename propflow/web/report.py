"""The monthly report page (/reports/monthly): the same report as `propflow report monthly`,
for the roles models.kpi.READERS names, with a month picker, the HTML and XLSX downloads
and the supervisor's improvement suggestion. Every view and download is audited."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from core.errors import PropflowError
from propflow import report
from propflow.web import auth
from propflow.web.auth import Principal
from propflow.web.pages import whole_session
from propflow.web.problems import status_of
from propflow.web.templating import render

router = APIRouter(include_in_schema=False)
Page = Annotated[Principal, Depends(auth.page_principal)]


def _asked(request: Request, choices: list[dict[str, str]]) -> tuple[str, str]:
    community = request.query_params.get("community") or (
        next((c["code"] for c in choices if c["code"] != "all"), None) or
        (choices[0]["code"] if choices else ""))
    month = request.query_params.get("month") or str(report.month_of(None))
    return community, month


@router.get("/reports/monthly", response_class=HTMLResponse)
async def monthly(request: Request, principal: Page) -> Response:
    staff_id = whole_session(principal)
    choices = await run_in_threadpool(report.readable, staff_id)
    community, month = _asked(request, choices)
    context = {"principal": principal, "choices": choices, "community": community,
               "month": month, "saved": request.query_params.get("saved") == "1"}
    if not choices:
        return render(request, "report_monthly.html", {
            **context, "error": {"field": "as", "message": "你没有可查看月度报表的岗位（项目经理、"
                                 "客服主管、客服主任、公司客服中心）"}}, status=403)
    try:
        found, body = await run_in_threadpool(
            report.view, None if community == "all" else community,
            report.month_of(month), staff_id)
    except PropflowError as exc:
        return render(request, "report_monthly.html", {
            **context, "error": {"field": exc.field, "message": exc.message}},
            status=status_of(exc))
    query = urlencode({"community": community, "month": month})
    return render(request, "report_monthly.html", {
        **context, "figures": found, "body": body, "query": query})


async def _download(request: Request, principal: Principal, fmt: str) -> Response:
    staff_id = whole_session(principal)
    community = request.query_params.get("community", "")
    month = report.month_of(request.query_params.get("month"))
    made = await run_in_threadpool(lambda: report.export(
        None if community == "all" else community, month, fmt, actor=f"staff:{staff_id}",
        viewer=staff_id, channel="web"))
    return Response(made.content, media_type=report.FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"'})


@router.get("/reports/monthly.html")
async def download_html(request: Request, principal: Page) -> Response:
    return await _download(request, principal, "html")


@router.get("/reports/monthly.xlsx")
async def download_xlsx(request: Request, principal: Page) -> Response:
    return await _download(request, principal, "xlsx")


@router.post("/reports/monthly/suggestion", response_class=HTMLResponse,
             dependencies=[Depends(auth.csrf_check)])
async def suggestion(request: Request, principal: Page) -> Response:
    staff_id = whole_session(principal)
    posted = dict((await request.form()).items())
    community, month = str(posted.get("community", "")), str(posted.get("month", ""))
    try:
        await run_in_threadpool(report.suggest, community, report.month_of(month),
                                str(posted.get("suggestion", "")), staff_id, "web")
    except PropflowError as exc:
        choices = await run_in_threadpool(report.readable, staff_id)
        return render(request, "report_monthly.html", {
            "principal": principal, "choices": choices, "community": community,
            "month": month, "error": {"field": exc.field, "message": exc.message}},
            status=status_of(exc))
    query = urlencode({"community": community, "month": month, "saved": "1"})
    return RedirectResponse(f"/reports/monthly?{query}", status_code=303)

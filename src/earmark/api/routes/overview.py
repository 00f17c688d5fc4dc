"""One read of what an operator watches during a launch (scope `read`): holds live and
about to expire, the durable record's lag, the webhook backlog and the health checks.
The console's overview polls it; a script may too."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from earmark.api.deps import Reading
from earmark.api.responses import model_response, problem_responses
from earmark.api.routes.health import check_backlog, check_store
from earmark.api.routes.webhooks import store_of
from earmark.errors import LedgerUnavailable
from earmark.models import Check, DurableBacklog, HoldCounts, Overview, WebhookBacklog

router = APIRouter(prefix="/v1/overview", tags=["overview"])

EXPIRING_WINDOW_SECONDS = 60.0


@router.get(
    "",
    response_model=Overview,
    responses=problem_responses(),
    summary="Holds, durable lag, webhook backlog and health in one read",
)
async def overview(request: Request, ctx: Reading) -> Response:
    engine = ctx.engine
    checks = await check_store(engine)
    counts = await engine.hold_counts()
    expiring = await engine.holds_expiring(EXPIRING_WINDOW_SECONDS)
    lag = await engine.durable_lag()
    checks["backlog"] = await check_backlog(engine)
    webhooks = None
    durable = request.app.state.durable
    if durable is not None:
        up, detail = await durable.database_check()
        checks["database"] = Check(ok=up, detail=detail, required=False)
        if up:
            try:
                backlog = await (await store_of(request)).backlog()
            except LedgerUnavailable as error:
                checks["database"] = Check(ok=False, detail=str(error), required=False)
            else:
                webhooks = WebhookBacklog(
                    pending_messages=backlog.messages, dispatch_behind=backlog.dispatch_behind
                )
    figures = Overview(
        holds=HoldCounts(
            live=sum(live for live, _ in counts),
            overdue=sum(overdue for _, overdue in counts),
            expiring_next_minute=expiring,
        ),
        durable=DurableBacklog(
            waiting_events=lag.events, oldest_age_seconds=lag.oldest_age_seconds
        ),
        webhooks=webhooks,
        checks=checks,
    )
    return model_response(figures)

"""/metrics: the Prometheus text exposition, for the monitoring system only.

It answers only with `Authorization: Bearer <METRICS_TOKEN>` (compared in constant
time); without a configured token it does not exist (404), so it is never public
by accident. The job queue's depth and age are read from the database at each
scrape, so they are the same whichever process answers.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from domain.enums import AnalysisStatus
from runtime import metrics
from storage.models import Model3D

WAITING = (AnalysisStatus.PENDING,)


async def metrics_endpoint(request: Request) -> Response:
    expected = request.app.state.settings.metrics_token
    if not expected:
        return PlainTextResponse("Not Found", status_code=404)
    offered = request.headers.get("authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {expected}".encode()):
        return PlainTextResponse("Unauthorized", status_code=401)
    depth, oldest = await _queue()
    body = metrics.render(metrics.queue_families(depth, oldest))
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def _queue() -> tuple[int, float]:
    waiting = Model3D.filter(analysis_status__in=WAITING)
    depth = await waiting.count()
    first = await waiting.order_by("created_at").first()
    oldest = (datetime.now(UTC) - first.created_at).total_seconds() if first else 0.0
    return depth, max(0.0, oldest)

"""Prometheus metrics (prometheus-client): what the service counts, and their rendering.

Several processes (API servers, job workers) on one host share their counters when
PROMETHEUS_MULTIPROC_DIR names a directory writable by all of them:
prometheus-client then keeps each process's values in files there, and /metrics
(web/endpoints/metrics.py), whichever process answers it, adds them all up
(`MultiProcessCollector`). The variable must be set before the first import of
prometheus_client, which is why the CLI exports it from the settings before it
imports the app (web/cli.py); a process that exits marks its gauges dead.
Without it each process counts alone (the embedded default: one process).

Labels take values from closed sets only (schema field names, error codes, rule
names), never from what a client sends, so no client can grow the series.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUESTS = Counter(
    "pv_graphql_requests_total", "GraphQL operations answered, by operation", ["operation"]
)
LATENCY = Histogram(
    "pv_graphql_request_seconds",
    "Time to answer a GraphQL operation, by operation",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
ERRORS = Counter("pv_graphql_errors_total", "GraphQL errors answered, by code", ["code"])
DENIALS = Counter(
    "pv_permission_denials_total",
    "Answers refused by the policy (FORBIDDEN, NOT_FOUND for objects out of reach)",
    ["code"],
)
RATE_LIMITED = Counter("pv_rate_limited_total", "Attempts refused by a rate limit", ["rule"])
LOGIN_FAILURES = Counter(
    "pv_login_failures_total", "Failed log-ins, by the factor that failed", ["factor"]
)
ANALYSIS = Histogram(
    "pv_analysis_seconds", "Analysis jobs, claim to end, by outcome", ["outcome"],
    buckets=_JOB_BUCKETS,
)  # fmt: skip
PREVIEW = Histogram(
    "pv_preview_seconds", "Preview rendering jobs, by outcome", ["outcome"],
    buckets=_JOB_BUCKETS,
)  # fmt: skip

DENIAL_CODES = frozenset({"FORBIDDEN", "NOT_FOUND"})


def count_errors(codes: list[str]) -> None:
    for code in codes:
        ERRORS.labels(code).inc()
        if code in DENIAL_CODES:
            DENIALS.labels(code).inc()


@contextmanager
def timed(histogram: Histogram, outcome_holder: list[str]) -> Iterator[None]:
    """Observe the block's duration under the outcome the block leaves in outcome_holder[0]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(outcome_holder[0]).observe(time.perf_counter() - started)


def queue_families(depth: int, oldest_seconds: float) -> list[GaugeMetricFamily]:
    """The job queue as the database sees it (shared by every process: no aggregation)."""
    return [
        GaugeMetricFamily("pv_job_queue_depth", "Models waiting for their analysis", depth),
        GaugeMetricFamily(
            "pv_job_queue_oldest_seconds",
            "Age of the oldest model waiting for its analysis",
            oldest_seconds,
        ),
    ]


class _Fixed:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def render(extra: list[GaugeMetricFamily]) -> bytes:
    """The text exposition: every process's counters (multiprocess) or this one's, plus extra."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry  # this process's own metrics
    text = generate_latest(registry)
    if extra:
        fixed = CollectorRegistry()
        fixed.register(_Fixed(extra))
        text += generate_latest(fixed)
    return text


def process_exited() -> None:
    """Drop this process's live gauges from the shared directory (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(os.getpid())

"""Logging: one JSON object a line (python-json-logger), each with the request id.

The request id lives in a context variable set by web/middleware/request_id.py for
the duration of a request (and copied into the tasks that request starts), so every
line logged while answering it carries it, in whatever module it is logged.
What goes into a log line is chosen by the code that logs: ids, codes, counts and
durations, never an e-mail, name, address, phone, password, token or file content
(tests/test_observability.py greps the logs of a real server's full scenario).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    """The root logger's one handler (stderr), replacing any configured before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"})
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Loggers configured by uvicorn propagate to the root; its own handlers would
    # print the same lines again in another shape.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

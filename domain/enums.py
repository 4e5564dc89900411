"""The platform's named values: roles, company kinds, analysis states.

They are domain vocabulary, so they live here; storage/models.py stores them
and the GraphQL types expose them. Migrations keep their own frozen copies:
a migration describes the schema as it was, not as the code is today.
`OrderStatus` lives with its transitions in domain/order_states.py, so that a new
status is one edit.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "CUSTOMER"
    PROVIDER = "PROVIDER"
    STAFF = "STAFF"


class CompanyKind(StrEnum):
    CUSTOMER = "CUSTOMER"
    PRINT_SERVICE = "PRINT_SERVICE"


class AnalysisStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"

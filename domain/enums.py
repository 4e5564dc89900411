"""The platform's named values: roles, company kinds, order and analysis states.

They are domain vocabulary, so they live here; storage/models.py stores them
and the GraphQL types expose them. Migrations keep their own frozen copies:
a migration describes the schema as it was, not as the code is today.
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


class OrderStatus(StrEnum):
    """A new status also needs its transitions in domain/order_states.py."""

    REQUESTED = "REQUESTED"
    ASSIGNED = "ASSIGNED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    IN_PRODUCTION = "IN_PRODUCTION"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"

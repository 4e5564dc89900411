"""The root types: each domain slice's Query and Mutation fields, merged.

A new operation goes into its slice's operations.py (schema/<slice>/), never here.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from schema.accounts import operations as accounts
from schema.audit import operations as audit
from schema.materials import operations as materials
from schema.models import operations as models
from schema.orders import operations as orders
from schema.webhooks import operations as webhooks

SLICES = (accounts, models, orders, audit, materials, webhooks)

Query = merge_types("Query", tuple(s.Query for s in SLICES if hasattr(s, "Query")))
Mutation = merge_types("Mutation", tuple(s.Mutation for s in SLICES if hasattr(s, "Mutation")))
Subscription = merge_types(
    "Subscription", tuple(s.Subscription for s in SLICES if hasattr(s, "Subscription"))
)

"""The order state machine, as data: every allowed step, who may take it, and how.

    REQUESTED --assign--> ASSIGNED --> ACCEPTED --> IN_PRODUCTION --> SHIPPED --> DELIVERED
                 DECLINED <--'  ^          (reassign: ASSIGNED --assign--> ASSIGNED)
                     `--assign--'
    REQUESTED, ASSIGNED, ACCEPTED, DECLINED --> CANCELLED   (before production only)

A step is taken either by `assignOrder` (the steps into ASSIGNED: they need a
provider) or by `updateOrderStatus` (all others). Staff may take every step;
the assigned provider only the forward steps of its own orders; the customer
only cancels. Anything not listed here is INVALID_TRANSITION: nothing else in
the code decides which status may follow which.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import InvalidTransition


class OrderStatus(StrEnum):
    """Every status an order can have; the steps between them are STEPS below. A status
    in which the assigned provider holds the order also goes into
    policy.PROVIDER_ACTIVE_STATUSES (who reaches what is the policy's business)."""

    REQUESTED = "REQUESTED"
    ASSIGNED = "ASSIGNED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    IN_PRODUCTION = "IN_PRODUCTION"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


S = OrderStatus


class Actor(StrEnum):
    """The caller's part in an order (from domain/policy.py's relations)."""

    CUSTOMER = "customer"  # a customer of the company that ordered
    PROVIDER = "provider"  # a member of the provider assigned to it
    STAFF = "staff"


class Via(StrEnum):
    ASSIGN = "assignOrder"
    UPDATE = "updateOrderStatus"


@dataclass(frozen=True)
class Step:
    source: S
    target: S
    by: frozenset[Actor]
    via: Via = Via.UPDATE


_C, _P, _ST = Actor.CUSTOMER, Actor.PROVIDER, Actor.STAFF


def _by(*actors: Actor) -> frozenset[Actor]:
    return frozenset(actors)


STEPS: tuple[Step, ...] = (
    # Staff hand the request to a print service, or to another one.
    Step(S.REQUESTED, S.ASSIGNED, _by(_ST), Via.ASSIGN),
    Step(S.ASSIGNED, S.ASSIGNED, _by(_ST), Via.ASSIGN),
    Step(S.DECLINED, S.ASSIGNED, _by(_ST), Via.ASSIGN),
    # The provider answers, then reports progress.
    Step(S.ASSIGNED, S.ACCEPTED, _by(_P, _ST)),
    Step(S.ASSIGNED, S.DECLINED, _by(_P, _ST)),
    Step(S.ACCEPTED, S.IN_PRODUCTION, _by(_P, _ST)),
    Step(S.IN_PRODUCTION, S.SHIPPED, _by(_P, _ST)),
    Step(S.SHIPPED, S.DELIVERED, _by(_P, _ST)),
    # The customer may withdraw until production starts; after that material is spent.
    Step(S.REQUESTED, S.CANCELLED, _by(_C, _ST)),
    Step(S.ASSIGNED, S.CANCELLED, _by(_C, _ST)),
    Step(S.ACCEPTED, S.CANCELLED, _by(_C, _ST)),
    Step(S.DECLINED, S.CANCELLED, _by(_C, _ST)),
)

_INDEX: dict[tuple[S, S, Via], Step] = {(s.source, s.target, s.via): s for s in STEPS}

# Where an order ends: no step leaves these.
FINAL = frozenset({S.DELIVERED, S.CANCELLED})


def allowed(source: S, target: S, actor: Actor, via: Via = Via.UPDATE) -> bool:
    step = _INDEX.get((S(source), S(target), via))
    return step is not None and actor in step.by


def check(source: S, target: S, actor: Actor, via: Via = Via.UPDATE) -> None:
    """Raise INVALID_TRANSITION unless `actor` may take this step this way."""
    if allowed(source, target, actor, via):
        return
    if via is Via.UPDATE and _INDEX.get((S(source), S(target), Via.ASSIGN)):
        raise InvalidTransition(
            f"{source} -> {target} is done with assignOrder.",
            source=str(source),
            target=str(target),
        )
    raise InvalidTransition(
        f"An order in {source} cannot be moved to {target} by you.",
        source=str(source),
        target=str(target),
    )


def next_steps(source: S, actor: Actor) -> list[S]:
    """What this actor may move an order to with updateOrderStatus (for clients' menus)."""
    return [s.target for s in STEPS if s.source == source and s.via is Via.UPDATE and actor in s.by]

"""Per-request DataLoaders: a list of N objects costs one query per relation, not N."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from uuid import UUID

from strawberry.dataloader import DataLoader

from domain.policy import held_orders
from storage.models import Company, Model3D, ModelMetadata, Order, OrderEvent, User


def _by_id(rows: Iterable, keys: list[UUID]) -> list:
    found = {row.id: row for row in rows}
    return [found.get(key) for key in keys]


async def _users(keys: list[UUID]) -> list[User | None]:
    return _by_id(await User.filter(id__in=keys), keys)


async def _companies(keys: list[UUID]) -> list[Company | None]:
    return _by_id(await Company.filter(id__in=keys), keys)


async def _members(keys: list[UUID]) -> list[list[User]]:
    grouped: dict[UUID, list[User]] = defaultdict(list)
    for user in await User.filter(company_id__in=keys, deleted_at=None).order_by("created_at"):
        if user.company_id is not None:
            grouped[user.company_id].append(user)
    return [grouped[key] for key in keys]


async def _providers_of_models(keys: list[UUID]) -> list[frozenset[UUID]]:
    grouped: dict[UUID, set[UUID]] = defaultdict(set)
    rows = await Order.filter(held_orders(), model_id__in=keys).values_list(
        "model_id", "provider_id"
    )
    for model_id, provider_id in rows:
        grouped[model_id].add(provider_id)
    return [frozenset(grouped[key]) for key in keys]


async def _models(keys: list[UUID]) -> list[Model3D | None]:
    return _by_id(await Model3D.filter(id__in=keys), keys)


async def _orders_of_models(keys: list[UUID]) -> list[list[Order]]:
    grouped: dict[UUID, list[Order]] = defaultdict(list)
    for order in await Order.filter(model_id__in=keys).order_by("-created_at", "-id"):
        if order.model_id is not None:
            grouped[order.model_id].append(order)
    return [grouped[key] for key in keys]


async def _order_events(keys: list[UUID]) -> list[list[OrderEvent]]:
    grouped: dict[UUID, list[OrderEvent]] = defaultdict(list)
    for event in await OrderEvent.filter(order_id__in=keys).order_by("id"):
        grouped[event.order_id].append(event)
    return [grouped[key] for key in keys]


async def _metadata(keys: list[UUID]) -> list[ModelMetadata | None]:
    found = {row.model_id: row for row in await ModelMetadata.filter(model_id__in=keys)}
    return [found.get(key) for key in keys]


class Loaders:
    def __init__(self) -> None:
        self.user = DataLoader(load_fn=_users)
        self.company = DataLoader(load_fn=_companies)
        self.members = DataLoader(load_fn=_members)
        self.providers_of_model = DataLoader(load_fn=_providers_of_models)
        self.metadata = DataLoader(load_fn=_metadata)
        self.model = DataLoader(load_fn=_models)
        self.orders_of_model = DataLoader(load_fn=_orders_of_models)
        self.order_events = DataLoader(load_fn=_order_events)

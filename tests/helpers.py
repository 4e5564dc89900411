"""Test helpers: a GraphQL client over the ASGI app and factories for callers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp

from domain import accounts, auth
from domain.passwords import hash_password
from domain.settings import Settings
from storage.models import Company, CompanyKind, Role, User

PASSWORD = "correct horse battery staple 42"
ADDRESS = {"line1": "Hauptstr. 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}
ADDRESS_DICT = {
    "line1": "Hauptstr. 1",
    "line2": None,
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
}


@dataclass
class Caller:
    user: User
    token: str
    totp_secret: str | None = None


def email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


class Api:
    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        """Run and insist on success; returns `data`."""
        body = await self.gql(query, variables, token)
        assert not body.get("errors"), body
        return body["data"]

    async def error_code(
        self, query: str, variables: dict | None = None, token: str | None = None
    ) -> str:
        body = await self.gql(query, variables, token)
        assert body.get("errors"), body
        return body["errors"][0]["extensions"]["code"]

    # --- factories (through the domain: fast, and the API is tested elsewhere) ---

    async def customer(self, company: Company | None = None, admin: bool = True) -> Caller:
        """A customer; with no company given, the admin of a new customer company."""
        if company is None:
            company = await Company.create(
                name="Acme GmbH", kind=CompanyKind.CUSTOMER, address=ADDRESS_DICT
            )
        return await self.member(company, Role.CUSTOMER, admin)

    async def member(self, company: Company, role: Role, admin: bool = False) -> Caller:
        user = await User.create(
            email=email(role.lower()),
            first_name="Max",
            last_name="Member",
            role=role,
            company=company,
            is_company_admin=admin,
            password_hash=await _password_hash(),
            address=ADDRESS_DICT,
        )
        issued = await auth.start_session(self.settings, user, "198.51.100.2")
        return Caller(user, issued.token)

    async def provider(self, company: Company | None = None, admin: bool = False) -> Caller:
        company = company or await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
        return await self.member(company, Role.PROVIDER, admin)

    async def staff(self) -> Caller:
        user, uri = await accounts.create_staff(
            self.settings, email("staff"), PASSWORD, "Stella", "Staff"
        )
        secret = pyotp.parse_uri(uri).secret
        issued = await auth.start_session(self.settings, user, "198.51.100.3")
        return Caller(user, issued.token, totp_secret=secret)


_HASHES: list[str] = []


async def _password_hash() -> str:
    """PASSWORD hashed once per run: Argon2id is slow on purpose, factories need not be."""
    if not _HASHES:
        _HASHES.append(await hash_password(PASSWORD))
    return _HASHES[0]


def current_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def next_step_code(secret: str) -> str:
    """The code of the next time step: valid (drift) and never yet used."""
    generator = pyotp.TOTP(secret)
    return generator.generate_otp(int(time.time()) // generator.interval + 1)

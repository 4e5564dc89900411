"""Test helpers: a GraphQL client over the ASGI app and factories for callers."""

from __future__ import annotations

import json
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp

from domain import accounts, auth
from domain.passwords import hash_password
from runtime.settings import Settings
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
    def __init__(self, client: httpx.AsyncClient, settings: Settings, services=None) -> None:
        self.client = client
        self.settings = settings
        self.services = services

    async def upload(
        self,
        content: bytes,
        file_name: str = "part.stl",
        token: str | None = None,
        name: str | None = None,
        preflight: bool = True,
    ) -> httpx.Response:
        """uploadModel as a GraphQL multipart request (the spec's operations, map, file)."""
        operations = {
            "query": "mutation($f: Upload!, $n: String) { uploadModel(file: $f, name: $n) "
            "{ id name fileName analysisStatus } }",
            "variables": {"f": None, "n": name},
        }
        headers = {"Apollo-Require-Preflight": "true"} if preflight else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        files = {
            "operations": (None, json.dumps(operations), "application/json"),
            "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
            "0": (file_name, content, "application/octet-stream"),
        }
        return await self.client.post("/graphql", files=files, headers=headers)

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


def box_stl(x: float = 10.0, y: float = 20.0, z: float = 30.0, header: bytes = b"box") -> bytes:
    """A closed, outward-facing box as binary STL: volume x*y*z, area 2(xy+yz+zx)."""
    v = [(0, 0, 0), (x, 0, 0), (x, y, 0), (0, y, 0), (0, 0, z), (x, 0, z), (x, y, z), (0, y, z)]
    faces = [
        (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
        (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
    ]
    body = b"".join(
        struct.pack("<12fH", 0, 0, 0, *v[a], *v[b], *v[c], 0) for a, b, c in faces
    )
    return header.ljust(80, b" ") + struct.pack("<I", len(faces)) + body

"""Test helpers: a GraphQL client over the ASGI app and factories for callers."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pyotp

from domain import accounts, auth
from domain.analysis.report import Dimensions, MeshReport, Printability
from domain.analysis_job import _metadata_fields
from domain.hull_summary import summarise_hull
from domain.manufacturability import WallProfile
from domain.part_facts import sealed_fields
from domain.passwords import hash_password
from runtime.settings import Settings
from storage.crypto import KeyRing, new_data_key
from storage.models import (
    AnalysisStatus,
    Company,
    CompanyKind,
    Model3D,
    ModelMetadata,
    ProviderMaterial,
    Role,
    User,
)
from storage.models import Material as MaterialRow

PASSWORD = "correct horse battery staple 42"
ADDRESS = {"line1": "Hauptstr. 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}
ADDRESS_DICT = {
    "line1": "Hauptstr. 1",
    "line2": None,
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
}


# The Redis the tests use. `make test` runs the SQLite and PostgreSQL runs at once, each
# with a database number of its own (keys are per database; pub/sub channels are not,
# so tests also use channel names no other run can pick: random prefixes and UUIDs).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_database(offset: int) -> str:
    """A Redis database of this run's own, `offset` above REDIS_URL's (a job stream that
    a test empties must not be another run's)."""
    base, number = REDIS_URL.rsplit("/", 1)
    return f"{base}/{int(number or 0) + offset}"


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


# --- materials and quotes (issue 9) ---------------------------------------------------------


async def analysed_model(
    keyring: KeyRing,
    company_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    size: tuple[float, float, float] = (10.0, 20.0, 30.0),
    thinnest_wall_mm: float | None = None,
    **fields: Any,
) -> Model3D:
    """A model row as a DONE analysis of a solid box of `size` leaves it: metadata with
    the hull and the wall profile sealed under the model's own data key. With
    `thinnest_wall_mm`, every wall ray meets the far side at that thickness."""
    _key, wrapped = new_data_key(keyring)
    model = await Model3D.create(
        company_id=company_id,
        owner_id=owner_id,
        name=fields.pop("name", "bracket"),
        file_name="bracket.stl",
        format="stl",
        object_key=f"models/{uuid.uuid4().hex}",
        wrapped_key=wrapped.to_str(),
        analysis_status=AnalysisStatus.DONE,
        **fields,
    )
    x, y, z = size
    corners = np.array([[i * x, j * y, k * z] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    rays = 200
    wall = min(size) if thinnest_wall_mm is None else thinnest_wall_mm
    distance = np.full(rays, wall, dtype=np.float64)
    report = MeshReport(
        file_name="bracket.stl",
        file_size=684,
        format="stl",
        dimensions=Dimensions(x, y, z),
        volume=x * y * z,
        surface_area=2 * (x * y + y * z + z * x),
        triangle_count=12,
        body_count=1,
        is_watertight=True,
        printability=Printability(printable=True, issues=()),
        hull=summarise_hull(corners).to_dict(),
        walls=WallProfile.from_rays(distance, np.arange(rays) < rays // 2).to_dict(),
    )
    await ModelMetadata.create(
        model_id=model.id, **_metadata_fields(report), **sealed_fields(report, keyring, model)
    )
    return model


async def offer_every_material(company_id: uuid.UUID) -> None:
    """Let a print service offer the whole active catalogue (as setProviderMaterials would)."""
    for material in await MaterialRow.filter(active=True):
        await ProviderMaterial.get_or_create(company_id=company_id, material_id=material.id)


async def wait_analysed(model_id: object, within_s: float = 30.0) -> Model3D:
    """Poll the row until the background analysis has finished (FAILED, or DONE with
    every check: the wall check may end after DONE)."""
    deadline = time.monotonic() + within_s
    while True:
        model = await Model3D.get(id=model_id)
        if model.analysis_status == AnalysisStatus.FAILED:
            return model
        if model.analysis_status == AnalysisStatus.DONE and not await ModelMetadata.exists(
            model_id=model_id, pending_checks__gt=""
        ):
            return model
        if time.monotonic() > deadline:
            raise AssertionError(f"model {model_id} stayed {model.analysis_status}")
        await asyncio.sleep(0.05)

"""What a quote reads of a model's analysis: its issues, hull summary and wall profile.

The hull points outline an unreleased design and the wall profile sketches its
inside, so both are customer data: the analysis job seals them with the model's
own data key (the key of its file; associated data = model id + purpose, so a
blob cannot be moved to another model or swapped between purposes) and they are
opened only in memory, while a quote is computed. Analyses made before quotes
existed have neither: the hull falls back to the bounding box and the walls to
"not measured", which the material check refuses (fail safe) until the model is
analysed again.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from domain.analysis.report import Issue, MeshReport
from domain.hull_summary import HullSummary
from domain.manufacturability import PartFacts, WallProfile
from storage.crypto import KeyRing, WrappedKey, decrypt_bytes, encrypt_bytes, unwrap
from storage.models import Model3D, ModelMetadata

HULL, WALLS = "hull", "walls"


def _associated(model_id: UUID, purpose: str) -> bytes:
    return f"model:{model_id}:{purpose}".encode()


def _seal(value: dict[str, Any] | None, key: bytes, model_id: UUID, purpose: str) -> bytes | None:
    if value is None:
        return None
    plain = json.dumps(value, separators=(",", ":")).encode()
    return encrypt_bytes(plain, key, _associated(model_id, purpose))


def _open(sealed: bytes | None, key: bytes, model_id: UUID, purpose: str) -> dict[str, Any] | None:
    if sealed is None:
        return None
    value = json.loads(decrypt_bytes(bytes(sealed), key, _associated(model_id, purpose)))
    return value if isinstance(value, dict) else None


def sealed_fields(report: MeshReport, keyring: KeyRing, model: Model3D) -> dict[str, bytes | None]:
    """The ModelMetadata columns holding the report's hull and walls, sealed."""
    key = unwrap(keyring, WrappedKey.from_str(model.wrapped_key))
    return {
        "hull_sealed": _seal(report.hull, key, model.id, HULL),
        "walls_sealed": _seal(report.walls, key, model.id, WALLS),
    }


def part_facts(keyring: KeyRing, model: Model3D, metadata: ModelMetadata) -> PartFacts:
    """The stored analysis as the material checks read it (decrypted in memory only)."""
    key = unwrap(keyring, WrappedKey.from_str(model.wrapped_key))
    hull = _open(metadata.hull_sealed, key, model.id, HULL)
    walls = _open(metadata.walls_sealed, key, model.id, WALLS)
    issues = tuple(
        Issue(code=i["code"], severity=i["severity"], message=i["message"]) for i in metadata.issues
    )
    return PartFacts(
        issues=issues,
        hull=HullSummary.from_dict(hull)
        if hull is not None
        else HullSummary.from_dimensions(metadata.size_x, metadata.size_y, metadata.size_z),
        walls=WallProfile.from_dict(walls) if walls is not None else None,
    )

"""Previews on the job engine and in storage, on SQLite and PostgreSQL: made after DONE
(through the app, its in-process job engine and the confined child), sealed under the
model's data key (so key rotation covers them), found again by the sweep when their
job was lost, a failed preview stored as a reason, orphans removed by the clean-up."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.timezone import now

from domain import key_rotation, maintenance
from domain.preview_job import PreviewJob, PreviewOutcome, without_preview
from storage.crypto import IntegrityError, KeyRing, WrappedKey, decrypt_bytes, unwrap
from storage.models import AuditEvent, Model3D, ModelMetadata, ModelPreview
from storage.objects.local import LocalObjectStore
from storage.sealed_fields import SealingKeys, install_keys
from tests.conftest import serving
from tests.helpers import Api, Caller, box_stl

PREVIEW = "query($id: ID!) { model(id: $id) { analysisStatus preview { glbUrl pngUrl } } }"


async def _with_preview(api: Api, caller: Caller, content: bytes) -> tuple[str, dict]:
    body = (await api.upload(content, "part.stl", caller.token)).json()
    model_id = body["data"]["uploadModel"]["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        model = (await api.ok(PREVIEW, {"id": model_id}, caller.token))["model"]
        if model["preview"] or await ModelPreview.exists(model_id=model_id):
            return model_id, model
        await asyncio.sleep(0.1)
    raise AssertionError("no preview row")


@pytest.fixture
async def api(database: str, settings, tmp_path: Path):
    """The app of conftest with previews on (the suite's default app has them off)."""
    on = replace(settings, previews=True, storage_url=f"file://{tmp_path / 'objects'}")
    async with serving(on) as api:
        yield api


async def test_preview_after_done_sealed_under_the_model_key(api: Api, customer: Caller) -> None:
    model_id, model = await _with_preview(api, customer, box_stl(10, 20, 30))
    assert model["analysisStatus"] == "DONE" and model["preview"], model
    row = await ModelPreview.get(model_id=model_id)
    owner = await Model3D.get(id=model_id)
    ring = api.services.keyring
    data_key = unwrap(ring, WrappedKey.from_str(owner.wrapped_key))
    sealed = b"".join([c async for c in api.services.store.get(row.png_key)])
    assert decrypt_bytes(sealed, data_key, row.png_key.encode()).startswith(b"\x89PNG")
    # Bound to its own key: the PNG cannot be passed off as the GLB (or another object).
    with pytest.raises(IntegrityError):
        decrypt_bytes(sealed, data_key, row.glb_key.encode())
    answer = await api.client.get(model["preview"]["glbUrl"])
    assert answer.status_code == 200 and answer.content.startswith(b"glTF")
    views = await AuditEvent.filter(kind="preview.viewed", model_id=model_id)
    assert [v.detail["preview"] for v in views] == ["glb"]
    assert not await AuditEvent.filter(kind="download").exists()


async def test_rotation_covers_previews(database: str, settings, tmp_path: Path) -> None:
    old = {"old": secrets.token_bytes(32)}
    first = replace(
        settings, master_keys=old, storage_url=f"file://{tmp_path / 'objects'}", previews=True
    )
    async with serving(first) as api:
        caller = await api.customer()
        model_id, _ = await _with_preview(api, caller, box_stl(5, 5, 5))
    new_keys = {"new": secrets.token_bytes(32), **old}
    # As `server.py rotate-keys` does: the sealed columns open with the same ring.
    install_keys(SealingKeys(KeyRing(new_keys, "new"), settings.secret_key))
    assert await key_rotation.rotate_keys(KeyRing(new_keys, "new")) >= 1  # + sealed values
    assert WrappedKey.from_str((await Model3D.get(id=model_id)).wrapped_key).key_id == "new"
    # The old key is gone: the previews still open, under the model's re-wrapped key.
    only_new = replace(first, master_keys={"new": new_keys["new"]})
    async with serving(only_new) as api:
        model = (await api.ok(PREVIEW, {"id": model_id}, caller.token))["model"]
        answer = await api.client.get(model["preview"]["pngUrl"])
    assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")


async def test_a_failed_preview_is_a_reason_and_a_null(api: Api, customer: Caller) -> None:
    # Analysed DONE, but its stored file is then damaged: the preview job fails
    # cleanly (the analysis is not touched), stores why, and Model.preview is null.
    model_id, _ = await _with_preview(api, customer, box_stl())
    await ModelPreview.filter(model_id=model_id).delete()
    await Model3D.filter(id=model_id).update(object_key="models/missing")
    job = PreviewJob(api.settings, api.services.store, api.services.keyring)
    assert await job.run(model_id) is PreviewOutcome.FAILED
    row = await ModelPreview.get(model_id=model_id)
    assert row.glb_key is None and row.reason == "The preview could not be made."
    model = (await api.ok(PREVIEW, {"id": model_id}, customer.token))["model"]
    assert model == {"analysisStatus": "DONE", "preview": None}
    # Once there is a row, a second run does nothing.
    assert await job.run(model_id) is PreviewOutcome.DROPPED


async def test_sweep_finds_models_without_preview(api: Api, customer: Caller) -> None:
    model_id, _ = await _with_preview(api, customer, box_stl())
    later = now() + timedelta(hours=1)
    assert await without_preview(later, 60, 10) == []
    await ModelPreview.filter(model_id=model_id).delete()
    assert [str(m) for m in await without_preview(later, 60, 10)] == [model_id]
    # Not yet: its analysis finished less than a lease ago.
    assert await without_preview(now(), 3600, 10) == []
    await ModelMetadata.filter(model_id=model_id).update(analysed_at=later)
    assert await without_preview(later, 60, 10) == []


async def test_orphan_sweep_removes_unreferenced_previews(
    api: Api, customer: Caller, tmp_path: Path
) -> None:
    model_id, _ = await _with_preview(api, customer, box_stl())
    row = await ModelPreview.get(model_id=model_id)
    store = api.services.store
    assert isinstance(store, LocalObjectStore)
    orphan = f"previews/{secrets.token_hex(16)}/png-{secrets.token_hex(8)}"
    await store.put(orphan, _chunks(b"sealed bytes"))
    root = store.root  # the test ages the files on disk
    past = time.time() - 7200
    for key in (orphan, row.glb_key, row.png_key):
        os.utime(root / key, (past, past))
    quick = replace(api.settings, orphan_grace_seconds=60)
    removed = await maintenance.remove_abandoned_objects(quick, store, api.services.keyring)
    assert removed == 1
    assert not await store.exists(orphan)
    assert await store.exists(row.glb_key) and await store.exists(row.png_key)


async def _chunks(data: bytes):
    yield data


def _options():
    from domain.analysis.options import AnalysisOptions

    return AnalysisOptions()


def test_the_preview_child_is_bounded_in_time() -> None:
    from domain.previews import PreviewError
    from domain.previews.sandbox import run_previews
    from tests import meshes_gen

    data = meshes_gen.binary_stl(meshes_gen.icosphere(6))
    started = time.monotonic()
    with pytest.raises(PreviewError, match=r"longer than 0\.2 seconds"):
        run_previews(data, "stl", _options(), 0.2, 4 << 30)
    assert time.monotonic() - started < 10  # killed, not waited for


def test_the_preview_child_is_bounded_in_memory() -> None:
    from domain.previews import PreviewError
    from domain.previews.sandbox import run_previews
    from tests import meshes_gen

    data = meshes_gen.binary_stl(meshes_gen.icosphere(7))  # 327,680 triangles
    with pytest.raises(PreviewError, match="memory limit of 200 MB"):
        run_previews(data, "stl", _options(), 120, 200 << 20)


async def test_a_store_outage_postpones_the_preview(api: Api, customer: Caller) -> None:
    from storage.objects import StoreUnavailable

    model_id, _ = await _with_preview(api, customer, box_stl())
    await ModelPreview.filter(model_id=model_id).delete()

    class Down(LocalObjectStore):
        def get(self, key: str):
            raise StoreUnavailable("down")

    store = api.services.store
    job = PreviewJob(api.settings, Down(store.root), api.services.keyring)
    assert await job.run(model_id) is PreviewOutcome.DROPPED
    assert not await ModelPreview.exists(model_id=model_id)  # the sweep tries again later
    # Back up: the next run makes it.
    job = PreviewJob(api.settings, store, api.services.keyring)
    assert await job.run(model_id) is PreviewOutcome.READY


SHARED = Path(__file__).resolve().parents[2] / "shared" / "meshes"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared meshes not found at {SHARED}")
@pytest.mark.parametrize(
    ("name", "fmt"),
    [("featuretype.STEP", "step"), ("counterXP.3MF", "3mf"), ("bunny.ply", "ply"),
     ("admesh-fill-holes-bad.stl", "stl")],
)  # fmt: skip
def test_real_files_in_the_confined_child(name: str, fmt: str) -> None:
    """STEP (OpenCASCADE under Landlock), 3MF, PLY and an open STL: the child's loaders
    are the analysis' own, so every supported format gets a preview."""
    import io

    from PIL import Image

    from domain.previews.sandbox import run_previews

    previews = run_previews((SHARED / name).read_bytes(), fmt, _options(), 120, 4 << 30)
    assert Image.open(io.BytesIO(previews.png)).size == (512, 512)
    assert previews.glb.startswith(b"glTF") and 0 < previews.triangles <= 200_000


def test_the_preview_child_writes_no_file(tmp_path: Path) -> None:
    """The proof of the analysis child, for the preview child: traced with strace -f,
    fed as run_previews feeds it, no call creates or writes anything reachable by a
    path (the PNG and GLB are built in memory and leave through the pipe)."""
    import json
    import shutil
    import subprocess
    import sys

    from domain.analysis.sandbox import child_environment
    from domain.previews.result import Previews
    from tests.test_analysis_child import _TRACED, FILES, ROOT, _writes

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    for kind in ("step", "stl-binary"):
        make, fmt = FILES[kind]
        data = make()
        header = {"format": fmt, "size": len(data), "options": _options().to_dict(),
                  "memory_bytes": 4 << 30, "cpu_seconds": 60}  # fmt: skip
        log = tmp_path / f"{kind}.trace"  # paths only, never file content
        result = subprocess.run(
            ["strace", "-f", "-qq", "-e", f"trace={_TRACED}", "-o", str(log),
             sys.executable, "-m", "domain.previews.child"],
            input=json.dumps(header).encode() + b"\n" + data,
            capture_output=True, cwd=ROOT, env=child_environment(), timeout=120, check=False,
        )  # fmt: skip
        previews = Previews.unpack(result.stdout)  # a whole frame: the child succeeded
        assert previews.png.startswith(b"\x89PNG")
        trace = log.read_text()
        assert "openat" in trace
        assert _writes(trace) == [], kind

"""rotate-keys re-wraps data keys without touching the files; old keys can then go."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from domain import key_rotation
from storage.crypto import KeyRing, WrappedKey
from storage.models import Model3D
from tests.conftest import serving
from tests.helpers import box_stl

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_rotation_rewraps_and_the_old_key_can_go(database: str, settings, tmp_path) -> None:
    old = {"old": secrets.token_bytes(32)}
    store = tmp_path / "objects"
    first = replace(settings, master_keys=old, storage_url=f"file://{store}")
    content = box_stl(5, 5, 5)
    async with serving(first) as api:
        caller = await api.customer()
        body = (await api.upload(content, "cube.stl", caller.token)).json()
        model_id = body["data"]["uploadModel"]["id"]
    before = _files(store)

    new_keys = {"new": secrets.token_bytes(32), **old}
    rotated = await key_rotation.rotate_keys(KeyRing(new_keys, "new"))
    assert rotated == 1
    assert WrappedKey.from_str((await Model3D.get(id=model_id)).wrapped_key).key_id == "new"
    assert await key_rotation.keys_in_use() == {"new": 1}
    assert _files(store) == before  # the file itself was not re-encrypted
    assert await key_rotation.rotate_keys(KeyRing(new_keys, "new")) == 0

    only_new = replace(first, master_keys={"new": new_keys["new"]})
    async with serving(only_new) as api:
        link = await api.ok(
            "mutation($m: ID!) { requestDownload(modelId: $m) { url } }",
            {"m": model_id},
            caller.token,
        )
        response = await api.client.get(link["requestDownload"]["url"])
    assert response.content == content


def test_rotate_keys_command(_connected: str, tmp_path: Path) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": _connected,
        "MASTER_KEYS": f"k9:{key}",
    }
    result = subprocess.run(
        [sys.executable, "server.py", "rotate-keys"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "re-wrapped 0 data keys under k9" in result.stdout
    assert key not in result.stdout + result.stderr

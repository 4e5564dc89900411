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
from storage.crypto import KeyRing, UnknownKeyError, WrappedKey
from storage.models import AuditEvent, Model3D, User
from storage.sealed_fields import SealingKeys, install_keys, sealed_columns
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

    # Personal data was sealed under "old" too: e-mail, address, IPs.
    sealed_before = await _sealed_values()
    assert sealed_before and all(value.startswith("pvf1:old:") for value in sealed_before)

    new_keys = {"new": secrets.token_bytes(32), **old}
    install_keys(SealingKeys(KeyRing(new_keys, "new"), settings.secret_key))
    rotated = await key_rotation.rotate_keys(KeyRing(new_keys, "new"))
    assert rotated == 1 + len(sealed_before)
    assert WrappedKey.from_str((await Model3D.get(id=model_id)).wrapped_key).key_id == "new"
    assert await key_rotation.keys_in_use() == {"new": 1 + len(sealed_before)}
    assert _files(store) == before  # the file itself was not re-encrypted
    assert await key_rotation.rotate_keys(KeyRing(new_keys, "new")) == 0
    # Only the wrapped data keys changed: each value's ciphertext is the same.
    assert sorted(v.rsplit(":", 1)[1] for v in await _sealed_values()) == sorted(
        v.rsplit(":", 1)[1] for v in sealed_before
    )

    # Without the old key the sealed columns still open; with only the old one they do not.
    install_keys(SealingKeys(KeyRing({"new": new_keys["new"]}, "new"), settings.secret_key))
    user = await User.get(id=caller.user.id)
    assert user.email == caller.user.email and user.address == caller.user.address
    assert all(event.ip for event in await AuditEvent.filter(actor_id=user.id))
    install_keys(SealingKeys(KeyRing(old, "old"), settings.secret_key))
    try:
        await User.get(id=caller.user.id)
        raise AssertionError("opened a value re-wrapped under a key the ring lacks")
    except UnknownKeyError:
        pass

    only_new = replace(first, master_keys={"new": new_keys["new"]})
    async with serving(only_new) as api:
        link = await api.ok(
            "mutation($m: ID!) { requestDownload(modelId: $m) { url } }",
            {"m": model_id},
            caller.token,
        )
        response = await api.client.get(link["requestDownload"]["url"])
    assert response.content == content


async def _sealed_values() -> list[str]:
    values = []
    for model, column in sealed_columns():
        values += [str(v) for v in await model.all().values_list(column, flat=True) if v]
    return values


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

"""Previews through the production path: the real server process (`server.py serve`,
embedded default), an upload over HTTP, the job engine, the analysis child, DONE,
then the preview job and its confined child; the PNG and the GLB fetched through
their signed links, decoded; refused links answered 404 and audited.

The audit rows and the stored objects are read from the server's own DATA_DIR
(its SQLite file and its object directory): that is where they are kept.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
from joserfc import jwt
from joserfc.jwk import OctKey
from PIL import Image

from domain.secrets_box import derive_key
from tests import meshes_gen as gen
from tests.helpers import PASSWORD, box_stl
from tests.server_process import start_server

SIGN_UP = """mutation($e: String!, $p: String!, $c: String!) { signUp(input: {email: $e,
  password: $p, firstName: "Ada", lastName: "Lovelace", companyName: $c,
  address: {line1: "Hauptstr. 1", postalCode: "10115", city: "Berlin", country: "DE"}})
  { token } }"""
MODEL = """query($id: ID!) { model(id: $id) { analysisStatus analysisError
  preview { glbUrl pngUrl expiresAt } } }"""
DELETE = "mutation($id: ID!) { deleteModel(id: $id) }"


class Server:
    def __init__(self, data_dir: Path, secret: bytes) -> None:
        self.data_dir = data_dir
        self.secret = secret
        env = {
            **os.environ,
            "APP_ENV": "development",
            "DATA_DIR": str(data_dir),
            "SECRET_KEY": base64.b64encode(secret).decode(),
            "BACKUP_PERIOD_SECONDS": "0",
        }
        for name in ("DATABASE_URL", "STORAGE_URL", "JOB_BROKER_URL", "REDIS_URL"):
            env.pop(name, None)
        self.log = data_dir.parent / "server.log"
        self.process, port = start_server(env, self.log, timeout=90)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except Exception:
            self.process.kill()
            self.process.wait(timeout=10)

    def gql(self, query: str, variables: dict, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        return answer.json()

    def customer(self) -> str:
        variables = {
            "e": f"ada-{secrets.token_hex(4)}@example.com",
            "p": PASSWORD,
            "c": f"Engines {secrets.token_hex(3)}",
        }
        body = self.gql(SIGN_UP, variables)
        assert not body.get("errors"), body
        return body["data"]["signUp"]["token"]

    def upload(self, token: str, content: bytes, name: str = "part.stl") -> str:
        operations = {
            "query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
            "variables": {"f": None},
        }
        files = {
            "operations": (None, json.dumps(operations), "application/json"),
            "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
            "0": (name, content, "application/octet-stream"),
        }
        headers = {"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"}
        body = self.client.post("/graphql", files=files, headers=headers).json()
        assert not body.get("errors"), body
        return body["data"]["uploadModel"]["id"]

    def settled(self, token: str, model_id: str, timeout: float = 180) -> dict:
        """The model once analysed and, if DONE, once its preview job has run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.gql(MODEL, {"id": model_id}, token)["data"]["model"]
            if model["analysisStatus"] == "FAILED":
                return model
            if model["analysisStatus"] == "DONE" and (
                model["preview"] or self.preview_row(model_id) is not None
            ):
                return model
            time.sleep(0.1)
        raise AssertionError(f"model {model_id} not settled:\n{self.log.read_text()[-3000:]}")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "printvault.sqlite3")

    def preview_row(self, model_id: str) -> tuple | None:
        with self.db() as db:
            return db.execute(
                "SELECT glb_key, png_key, reason FROM model_preview WHERE replace(model_id, '-', '') = ?",
                (model_id.replace("-", ""),),
            ).fetchone()

    def audit(self, kind: str) -> list[tuple]:
        with self.db() as db:
            return db.execute(
                "SELECT actor_id, model_id, ip, detail FROM audit_event WHERE kind = ? ORDER BY id",
                (kind,),
            ).fetchall()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="pv-preview-") as tmp:
        running = Server(Path(tmp) / "data", secrets.token_bytes(32))
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def ready(server: Server) -> tuple[str, str, dict]:
    """A customer, their box (10 x 20 x 30 mm) analysed, its preview made."""
    token = server.customer()
    model_id = server.upload(token, box_stl(10, 20, 30))
    model = server.settled(token, model_id)
    assert model["analysisStatus"] == "DONE", model
    assert model["preview"], (model, server.preview_row(model_id))
    return token, model_id, model["preview"]


def test_png_thumbnail_through_its_link(server: Server, ready: tuple[str, str, dict]) -> None:
    _, _model_id, preview = ready
    answer = server.client.get(preview["pngUrl"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(answer.content))
    assert image.format == "PNG" and image.size == (512, 512)
    alpha = np.asarray(image.convert("RGBA"))[:, :, 3]
    # The box is drawn (opaque pixels) on a transparent background.
    assert 0.02 < (alpha > 0).mean() < 0.9
    views = server.audit("preview.viewed")
    assert any(json.loads(d)["preview"] == "png" for *_, d in views), views


def test_glb_through_its_link_reloads_in_metres(server: Server, ready: tuple[str, str, dict]) -> None:
    _, _, preview = ready
    answer = server.client.get(preview["glbUrl"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "model/gltf-binary"
    scene = trimesh.load(io.BytesIO(answer.content), file_type="glb")
    mesh = scene.to_geometry() if isinstance(scene, trimesh.Scene) else scene
    # glTF is in metres, +Y up: the 10 x 20 x 30 mm box has these extents in some order.
    assert sorted(mesh.extents) == pytest.approx([0.01, 0.02, 0.03], rel=1e-4)
    assert np.allclose(mesh.bounds.mean(axis=0), 0, atol=1e-6)  # centred
    assert server.audit("preview.viewed"), "a view is audited"
    assert not server.audit("download"), "a preview is not a download"


def test_previews_are_encrypted_at_rest(server: Server, ready: tuple[str, str, dict]) -> None:
    _, model_id, _ = ready
    glb_key, png_key, reason = server.preview_row(model_id)
    assert reason is None
    for key in (glb_key, png_key):
        stored = (server.data_dir / "objects" / key).read_bytes()
        assert b"glTF" not in stored[:64] and b"\x89PNG" not in stored
        assert b"IHDR" not in stored and b"JSON" not in stored


def test_tampered_link_is_refused_and_audited(server: Server, ready: tuple[str, str, dict]) -> None:
    _, _, preview = ready
    url = preview["pngUrl"]
    before = len(server.audit("preview.link_refused"))
    flipped = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
    for bad in (flipped, "/previews/not-a-token", url.replace("/previews/", "/previews/x")):
        answer = server.client.get(bad)
        assert answer.status_code == 404, bad
        assert answer.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    refused = server.audit("preview.link_refused")
    assert len(refused) == before + 3
    assert all(json.loads(detail)["reason"] == "invalid" for *_, detail in refused[before:])


def test_expired_link_is_refused_and_audited(server: Server, ready: tuple[str, str, dict]) -> None:
    token, model_id, _preview = ready
    me = server.gql("{ me { id } }", {}, token)["data"]["me"]["id"]
    key = OctKey.import_key(derive_key(server.secret, b"preview-link"))
    claims = {
        "sub": model_id, "uid": me, "knd": "png", "aud": "printvault-preview",
        "exp": int(time.time()) - 5, "jti": secrets.token_hex(8),
    }
    expired = jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
    assert server.client.get(f"/previews/{expired}").status_code == 404
    claims["exp"] = int(time.time()) + 60  # the same link, still valid: served
    fresh = jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
    assert server.client.get(f"/previews/{fresh}").status_code == 200
    actor, model, _, detail = server.audit("preview.link_refused")[-1]
    assert json.loads(detail)["reason"] == "expired"
    assert str(actor).replace("-", "") == me.replace("-", "")
    assert str(model).replace("-", "") == model_id.replace("-", "")


def test_another_company_cannot_use_or_get_a_link(server: Server, ready: tuple[str, str, dict]) -> None:
    _, model_id, _preview = ready
    other = server.customer()
    body = server.gql(MODEL, {"id": model_id}, other)
    assert body["data"]["model"] is None  # out of reach: it does not exist for them
    # A link is bound to its user: one of theirs naming this model is refused at fetch.
    me = server.gql("{ me { id } }", {}, other)["data"]["me"]["id"]
    key = OctKey.import_key(derive_key(server.secret, b"preview-link"))
    claims = {
        "sub": model_id, "uid": me, "knd": "glb", "aud": "printvault-preview",
        "exp": int(time.time()) + 60, "jti": secrets.token_hex(8),
    }
    theirs = jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
    assert server.client.get(f"/previews/{theirs}").status_code == 404
    actor, _, _, detail = server.audit("preview.link_refused")[-1]
    assert json.loads(detail)["reason"] == "not_allowed"
    assert str(actor).replace("-", "") == me.replace("-", "")


def _one_triangle() -> bytes:
    return gen.binary_stl((np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], float), np.array([[0, 1, 2]])))


def _degenerate() -> bytes:
    # Every triangle collapsed onto a line: no area anywhere.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)
    return gen.binary_stl((vertices, np.array([[0, 1, 2], [1, 2, 3], [0, 2, 3]])))


BAD = {
    "one_triangle.stl": _one_triangle,
    "open_scan.stl": lambda: gen.binary_stl(gen.without_faces(gen.icosphere(3), [0, 1, 2, 3])),
    "degenerate.stl": _degenerate,
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_models_get_a_preview_or_a_clean_reason(server: Server, name: str) -> None:
    token = server.customer()
    model_id = server.upload(token, BAD[name](), name)
    model = server.settled(token, model_id)
    if model["analysisStatus"] == "FAILED":
        assert model["preview"] is None  # nothing analysed, nothing previewed
        return
    row = server.preview_row(model_id)
    if model["preview"] is None:
        assert row is not None and row[2], row  # a clean null, with its reason stored
        assert "Traceback" not in row[2] and "/" not in row[2]
    else:
        png = server.client.get(model["preview"]["pngUrl"])
        assert Image.open(io.BytesIO(png.content)).size == (512, 512)
    assert server.client.get("/healthz").status_code == 200


def test_deleting_the_model_removes_its_previews(server: Server) -> None:
    token = server.customer()
    model_id = server.upload(token, box_stl(5, 5, 5))
    model = server.settled(token, model_id)
    assert model["preview"]
    glb_key, png_key, _ = server.preview_row(model_id)
    body = server.gql(DELETE, {"id": model_id}, token)
    assert not body.get("errors"), body
    assert server.preview_row(model_id) is None
    assert not (server.data_dir / "objects" / glb_key).exists()
    assert not (server.data_dir / "objects" / png_key).exists()
    # The link issued before the deletion is dead.
    assert server.client.get(model["preview"]["pngUrl"]).status_code == 404

"""The upload and download paths with S3 as the object store (a moto server over HTTP)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from storage.models import Model3D
from tests.conftest import serving
from tests.helpers import box_stl

pytest_plugins = ["tests.s3_server"]


async def test_upload_to_s3_with_sse_and_download_back(database: str, settings, moto_s3) -> None:
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    s3_settings = replace(
        settings,
        storage_url=f"s3://{moto_s3.bucket}/{prefix}",
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_sse="AES256",
    )
    content = box_stl(3, 4, 5, header=b"S3-PLAINTEXT-MARKER")
    async with serving(s3_settings) as api:
        caller = await api.customer()
        body = (await api.upload(content, "part.stl", caller.token)).json()
        model_id = body["data"]["uploadModel"]["id"]
        row = await Model3D.get(id=model_id)
        stored = moto_s3.client().get_object(Bucket=moto_s3.bucket, Key=f"{prefix}/{row.object_key}")
        assert stored["ServerSideEncryption"] == "AES256"
        assert b"S3-PLAINTEXT-MARKER" not in stored["Body"].read()
        assert "part.stl" not in row.object_key  # keys are internal ids, never file names
        link = await api.ok(
            "mutation($m: ID!) { requestDownload(modelId: $m) { url } }", {"m": model_id}, caller.token
        )
        response = await api.client.get(link["requestDownload"]["url"])
        assert response.content == content
        assert (await api.client.get("/healthz")).json()["storage"] is True


async def test_dead_object_store_refuses_uploads_cleanly(database: str, settings) -> None:
    dead = replace(
        settings, storage_url="s3://nowhere/x", s3_endpoint_url="http://127.0.0.1:9"
    )
    async with serving(dead) as api:
        caller = await api.customer()
        response = await api.upload(box_stl(), "part.stl", caller.token)
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
        assert "127.0.0.1" not in str(body) and "Traceback" not in str(body)
        assert await Model3D.all().count() == 0
        health = await api.client.get("/healthz")
        assert health.status_code == 503 and health.json()["storage"] is False

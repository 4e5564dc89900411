"""A real S3 endpoint for tests: moto's server on a free loopback port.

Use it from a test module with `pytest_plugins = ["tests.s3_server"]` (or once
in tests/conftest.py) and ask for the `moto_s3` fixture. The server starts on
first use and serves the whole session; each test should use its own key
prefix. Fake credentials are set for the session and restored afterwards, so
no real AWS configuration is ever read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
BUCKET = "printvault-test"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Point away from any real profile on the machine.
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str
    region: str = REGION

    def client(self) -> Any:
        """A plain synchronous boto3 client, for tests to inspect the bucket."""
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    def kms_key_id(self) -> str:
        kms = boto3.client("kms", endpoint_url=self.endpoint_url, region_name=self.region)
        return kms.create_key(Description="printvault test key")["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("AWS_PROFILE", raising=False)
        for name, value in FAKE_ENV.items():
            env.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            s3 = MotoS3(endpoint_url=f"http://{host}:{port}", bucket=BUCKET)
            s3.client().create_bucket(Bucket=BUCKET)
            yield s3
        finally:
            server.stop()

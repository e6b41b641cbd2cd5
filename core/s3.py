"""The blob store in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph RGW, R2, ...): the only module
that imports boto3.

Same layout as the local folder, below the URL's prefix: ``<prefix>/<collection id>/<sha[:2]>/<sha>``.

- **No reader sees a partial object.** S3 makes an object visible only when its PUT has
  received every byte, and a multipart upload only when it is completed; so a file goes up in
  one PUT, or (above ``multipart_threshold``) in parts that become the object at once. A failed
  multipart upload is aborted, leaving nothing behind.
- **Integrity.** Each PUT (and each part) carries its Content-MD5, so the store refuses a body
  damaged on the way; a read is checked against the sha256 the object is named by.
- **Errors.** A missing object is ``NotFound``; an unreachable store, refused credentials or a
  missing bucket are ``BlobStoreUnavailable`` (a 503 with the reason; a worker retries it), never
  a raw botocore error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from core.blobs import blob_name, namespace_prefix, sha256_hex
from core.errors import BlobStoreUnavailable, NotFound
from core.settings import BlobSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# A single PUT may carry up to 5 GiB; above this, parts (each at least 5 MiB but the last) are
# retried one by one instead of the whole file.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``; no prefix -> ``""``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3BlobStore:
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        where: str = "",
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.where = where or f"s3://{bucket}/{prefix}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    @classmethod
    def from_settings(cls, settings: BlobSettings) -> S3BlobStore:
        if settings.url is None:
            raise ValueError("blobs.url names no bucket")
        bucket, prefix = parse_url(settings.url)
        config = Config(
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=32,  # the API's thread pool shares one client
            s3={"addressing_style": "path" if settings.path_style else "virtual"},
            # Integrity comes from Content-MD5 and the sha256 names; botocore's newer default
            # checksums are not implemented by every S3-compatible server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session per store: boto3's default session is not thread-safe to create clients from.
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key or None,
            config=config,
        )
        where = settings.url + (f" at {settings.endpoint_url}" if settings.endpoint_url else "")
        return cls(client, bucket, prefix, where=where)

    def _key(self, namespace: str, sha256: str) -> str:
        return self.prefix + blob_name(namespace, sha256)

    # ------------------------------------------------------------------ the BlobStore protocol

    def put(self, namespace: str, data: bytes) -> str:
        digest = sha256_hex(data)
        key = self._key(namespace, digest)
        if self._head(key):
            return digest
        try:
            if len(data) <= self.multipart_threshold:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=_md5(data))
            else:
                self._put_in_parts(key, data)
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, f"storing blob {digest}")
        return digest

    def get(self, namespace: str, sha256: str) -> bytes:
        key = self._key(namespace, sha256)
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFound(f"blob {sha256} is missing from the blob store") from None
            self._fail(exc, f"reading blob {sha256}")
        except BotoCoreError as exc:
            self._fail(exc, f"reading blob {sha256}")
        if sha256_hex(data) != sha256:
            raise BlobStoreUnavailable(f"blob {sha256} read from {self.where} does not match its sha256")
        return data

    def exists(self, namespace: str, sha256: str) -> bool:
        return self._head(self._key(namespace, sha256))

    def delete_namespace(self, namespace: str) -> None:
        prefix = self.prefix + namespace_prefix(namespace)
        try:
            self._abort_uploads(prefix)
            for keys in self._pages(prefix):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
                if errors := answer.get("Errors"):
                    first = errors[0]
                    raise BlobStoreUnavailable(
                        f"{self.where} did not delete {len(errors)} blobs of {namespace} "
                        f"({first.get('Code')}: {first.get('Message')} for {first.get('Key')})"
                    )
        except (BotoCoreError, ClientError) as exc:
            self._fail(exc, f"deleting the blobs of {namespace}")

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _MISSING:  # HEAD has no body: a bare 404 is the missing bucket
                raise BlobStoreUnavailable(f"object store {self.where}: bucket {self.bucket!r} does not exist") from exc
            self._fail(exc, "checking the bucket")
        except BotoCoreError as exc:
            self._fail(exc, "checking the bucket")

    # ------------------------------------------------------------------ helpers

    def _head(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            self._fail(exc, f"looking up {key}")
        except BotoCoreError as exc:
            self._fail(exc, f"looking up {key}")
        return True

    def _put_in_parts(self, key: str, data: bytes) -> None:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            view = memoryview(data)
            parts: list[CompletedPartTypeDef] = []
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                chunk = view[start : start + self.part_size]
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk.tobytes(),
                    ContentMD5=_md5(chunk),
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            # The object appears here, whole: until now readers get 404.
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # The store is failing already: the first error is the one to report.
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _pages(self, prefix: str) -> Iterator[list[str]]:
        """The keys under ``prefix``, at most 1,000 at a time (DeleteObjects' limit)."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            if keys := [item["Key"] for item in page.get("Contents", [])]:
                yield keys

    def _abort_uploads(self, prefix: str) -> None:
        """Multipart uploads under ``prefix`` still open: their parts would outlive the collection."""
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def _fail(self, exc: BotoCoreError | ClientError, action: str) -> NoReturn:
        if isinstance(exc, NoCredentialsError):
            why = "no credentials: set RAGKEEP_BLOBS__ACCESS_KEY_ID and RAGKEEP_BLOBS__SECRET_ACCESS_KEY"
        elif isinstance(exc, ClientError):
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            if code in _REFUSED:
                why = f"it refused ragkeep's credentials ({code} {message}".rstrip() + ")"
            elif code == "NoSuchBucket":
                why = f"bucket {self.bucket!r} does not exist"
            else:
                why = f"it answered {code} {message}".rstrip()
        else:
            why = f"it is unreachable ({type(exc).__name__}: {exc})"
        raise BlobStoreUnavailable(f"object store {self.where}: {action} failed: {why}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

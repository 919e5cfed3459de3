"""Helpers of the object-storage tests: credentials in the environment, buckets, uploads.

Uploads go through boto3 directly (the test's own client, not the server's): what the server
reads is what any S3 client wrote.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.seaweedfs_server import ACCESS_KEY, SECRET_KEY, SeaweedFS

_counter = itertools.count()


def use_store(monkeypatch: pytest.MonkeyPatch, server: SeaweedFS, *, secret: str = SECRET_KEY) -> None:
    """The standard variables boto3 resolves, pointing at ``server``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    # No profile of the machine running the tests may take part.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def s3_client(server: SeaweedFS) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


BUCKET = "iiif-tests"


@dataclass(frozen=True, slots=True)
class Place:
    """A fresh prefix of the tests' one bucket (SeaweedFS gives each bucket volumes of its own:
    one bucket per test would run out of them)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def new_place(server: SeaweedFS) -> Place:
    client = s3_client(server)
    try:
        client.head_bucket(Bucket=BUCKET)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=BUCKET)
    return Place(BUCKET, f"run-{next(_counter)}-{os.getpid()}/scans")


def put(server: SeaweedFS, bucket: str, key: str, body: bytes) -> None:
    s3_client(server).put_object(Bucket=bucket, Key=key, Body=body)

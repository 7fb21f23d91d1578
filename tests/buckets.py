"""The S3-compatible server of the tests (``conftest.s3_server``, moto's on 127.0.0.1), read with boto3."""

from __future__ import annotations


def s3_client(aws: dict[str, str]):
    """A boto3 S3 client of the ``s3_server`` fixture's server."""
    import boto3

    return boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"], region_name=aws["AWS_REGION"])  # fmt: skip


def bucket_keys(aws: dict[str, str]) -> list[str]:
    """Every object's key in the ``s3_server`` fixture's bucket."""
    pages = s3_client(aws).get_paginator("list_objects_v2").paginate(Bucket="ovatune")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def bucket_bytes(aws: dict[str, str], key: str) -> bytes:
    """The bytes of the object ``key`` in the ``s3_server`` fixture's bucket."""
    return s3_client(aws).get_object(Bucket="ovatune", Key=key)["Body"].read()

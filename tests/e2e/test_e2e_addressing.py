"""Virtual-hosted-style addressing by base domain, path style always working, and the
reserved service paths (s3-api.md §2.1, §2.2)."""

from __future__ import annotations

from typing import Any

from support.raw import send


def test_virtual_hosted_and_path_style_reach_the_same_object(server: Any, s3: Any,
                                                             bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"vhost")
    host = f"{bucket}.localhost:{server.port}"
    resp = send(server.endpoint, "GET", "/a/b.txt", host=host)
    assert resp.status == 200, resp.body
    assert resp.body == b"vhost"
    path = send(server.endpoint, "GET", f"/{bucket}/a/b.txt")
    assert path.body == b"vhost"


def test_virtual_hosted_bucket_listing_and_bad_name(server: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k1", Body=b"1")
    resp = send(server.endpoint, "GET", "/?list-type=2", host=f"{bucket}.localhost:{server.port}")
    assert resp.status == 200
    assert b"<Key>k1</Key>" in resp.body
    assert f"<Name>{bucket}</Name>".encode() in resp.body
    bad = send(server.endpoint, "GET", "/", host=f"Bad_Bucket.localhost:{server.port}")
    assert bad.status == 400
    assert b"<Code>InvalidBucketName</Code>" in bad.body


def test_host_equal_to_domain_or_ip_is_path_style(server: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"p")
    resp = send(server.endpoint, "GET", f"/{bucket}/k", host=f"localhost:{server.port}")
    assert resp.body == b"p"


def test_service_paths_unauthenticated_but_bucket_when_signed(server: Any, s3: Any) -> None:
    health = send(server.endpoint, "GET", "/health", sign=False)
    assert health.status == 200
    assert b'"status": "ok"' in health.body
    assert "x-amz-request-id" in health.headers
    s3.create_bucket(Bucket="health")
    s3.put_object(Bucket="health", Key="x", Body=b"bucket named health")
    signed = send(server.endpoint, "GET", "/health?list-type=2")
    assert signed.status == 200
    assert b"<Key>x</Key>" in signed.body


def test_unknown_subresource_is_not_implemented(server: Any, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "GET", f"/{bucket}?website")
    assert resp.status == 501
    assert b"<Code>NotImplemented</Code>" in resp.body
    s3.put_object(Bucket=bucket, Key="k", Body=b"keep me")
    resp = send(server.endpoint, "DELETE", f"/{bucket}/k?acl")
    assert resp.status == 405
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep me"


def test_errors_carry_request_ids_and_no_body_on_head(server: Any, s3: Any) -> None:
    resp = send(server.endpoint, "GET", "/no-such-bucket-here/key")
    assert resp.status == 404
    rid = resp.headers["x-amz-request-id"]
    assert len(rid) == 16 and rid.upper() == rid
    assert f"<RequestId>{rid}</RequestId>".encode() in resp.body
    assert resp.headers["content-type"] == "application/xml"
    head = send(server.endpoint, "HEAD", "/no-such-bucket-here/key")
    assert head.status == 404
    assert head.body == b""
    assert resp.headers["server"] == "BleepStore"


def test_presigned_url_for_a_1024_byte_key(server: Any, s3: Any, bucket: str) -> None:
    """The longest key, all multi-byte characters, as a presigned URL: ~3 KiB of encoded
    path plus the query fit gunicorn's request line (and the shipped nginx site)."""
    import urllib.request

    key = "é" * 512  # 1024 bytes of UTF-8, 3072 characters once percent-encoded
    s3.put_object(Bucket=bucket, Key=key, Body=b"long key")
    disposition = 'attachment; filename="' + "n" * 700 + '.bin"'
    url = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": key, "ResponseContentDisposition": disposition},
        ExpiresIn=300)
    assert len(url.split("/", 3)[3]) > 4094  # past gunicorn's default request-line limit
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"long key"
        assert resp.headers["Content-Disposition"] == disposition

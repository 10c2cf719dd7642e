"""kcat (librdkafka's command-line client, from Debian): produce keyed lines with headers, read
them back from the beginning, and list metadata."""

import json

import pytest

import harness

pytestmark = pytest.mark.client("kcat")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
FORMAT = r"%k|%s|%h|%p|%o\n"


def kcat(bootstrap: str, *args: str, input: bytes | None = None) -> str:
    binary = harness.require_tool("kcat")
    cmd = [binary, "-b", bootstrap, "-m", "15",
           "-X", "socket.timeout.ms=10000", "-X", "message.timeout.ms=30000", *args]
    return harness.run(cmd, input=input).stdout.decode()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_keyed_lines_with_headers(backend, proxy, codec):
    topic = harness.unique_name(f"kcat-{codec}")
    lines = [f"key-{i}:value {i} via {codec}" for i in range(25)]
    # The topic does not exist: kcat's Metadata request auto-creates it (1 partition by default).
    kcat(proxy, "-P", "-t", topic, "-K:", "-z", codec, "-H", "source=kcat", "-H", f"codec={codec}",
         input=("\n".join(lines) + "\n").encode())

    out = kcat(proxy, "-C", "-t", topic, "-o", "beginning", "-e", "-f", FORMAT)
    expected = [f"key-{i}|value {i} via {codec}|source=kcat,codec={codec}|0|{i}" for i in range(25)]
    assert out.splitlines() == expected


def test_metadata_listing(backend, proxy):
    topic = harness.unique_name("kcat-meta")
    kcat(proxy, "-P", "-t", topic, "-K:", input=b"k:v\n")

    meta = json.loads(kcat(proxy, "-L", "-J", "-t", topic))
    host, port = proxy.rsplit(":", 1)
    assert [(b["id"], b["name"]) for b in meta["brokers"]] == [(0, f"{host}:{port}")]
    [entry] = meta["topics"]
    assert entry["topic"] == topic
    assert entry.get("error") in (None, "")
    assert [p["partition"] for p in entry["partitions"]] == [0]
    assert entry["partitions"][0]["leader"] == 0

    listing = kcat(proxy, "-L")
    assert f'topic "{topic}" with 1 partitions' in listing

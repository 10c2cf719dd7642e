"""Listener security with real clients: TLS, mTLS, SASL PLAIN (users file, and passthrough to
Iggy users) and SCRAM-SHA-256/512, with confluent-kafka (librdkafka), kafka-python, kcat and the
Python ssl module; wrong passwords, unknown users, untrusted and expired certificates fail with
each client's authentication error; certificates rotate without a restart.

Certificates are made with the openssl command line (Debian's openssl), SCRAM users with the
proxy's own `scram-credential` subcommand."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import harness

pytestmark = pytest.mark.client("security")

PASSWORD = "alice-secret"


# ----------------------------------------------------------------------------- certificates


def openssl(*args: str, cwd: Path) -> None:
    harness.require_tool("openssl")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d: Path, ca: str, name: str, cn: str, *, expired: bool = False) -> None:
    """A certificate for `cn` (and localhost/127.0.0.1) signed by `ca`; `expired` ones ended
    yesterday (`openssl ca` takes explicit dates)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/O=example/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    if not expired:
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
                cwd=d)
        return
    db = d / f"{ca}-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    conf = d / f"{ca}-ca.conf"
    conf.write_text(f"""[ca]
default_ca = test
[test]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
certificate = {d}/{ca}.crt
private_key = {d}/{ca}.key
default_md = sha256
policy = anything
x509_extensions = leaf
[leaf]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost
[anything]
commonName = supplied
organizationName = optional
""")
    openssl("ca", "-batch", "-config", str(conf), "-in", f"{name}.csr", "-out", f"{name}.crt",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", "localhost")
    make_cert(d, "ca", "server2", "rotated.localhost")
    # The client certificate's CN is the Iggy user the connection acts as: Iggy's root user.
    make_cert(d, "ca", "client", harness.IGGY_USERNAME)
    make_cert(d, "other-ca", "mallory", "mallory")
    make_cert(d, "ca", "expired", "expired", expired=True)
    return d


@pytest.fixture(scope="module")
def users_file(proxy_bin, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("users")
    (d / "password").write_text(PASSWORD + "\n")
    out = subprocess.run([str(proxy_bin), "scram-credential", "--mechanism", "SCRAM-SHA-256",
                          "--mechanism", "SCRAM-SHA-512", "--user", "alice",
                          "--password-file", str(d / "password")],
                         check=True, capture_output=True).stdout.decode()
    assert PASSWORD not in out
    # On real Iggy, alice acts as Iggy's root user (the proxy's own): her permissions decide.
    out = out.replace("  alice:\n", f"  alice:\n    iggy_user: {harness.IGGY_USERNAME}\n", 1)
    path = d / "users.yaml"
    path.write_text(out)
    return path


def tls_args(certs: Path, *, mtls: bool = False) -> list[str]:
    args = ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key")]
    if mtls:
        args += ["--tls-client-ca-file", str(certs / "ca.crt")]
    return args


def sasl_args(mechanisms: str, users: str | Path) -> list[str]:
    return ["--sasl-mechanisms", mechanisms, "--sasl-users", str(users)]


# ----------------------------------------------------------------------------- clients


def ck_security(certs: Path | None, protocol: str, mechanism: str | None = None,
                user: str = "alice", password: str = PASSWORD, client_cert: str | None = None) -> dict:
    config = {"security.protocol": protocol}
    if certs is not None:
        config["ssl.ca.location"] = str(certs / "ca.crt")
    if client_cert:
        config["ssl.certificate.location"] = str(certs / f"{client_cert}.crt")
        config["ssl.key.location"] = str(certs / f"{client_cert}.key")
    if mechanism:
        config.update({"sasl.mechanism": mechanism, "sasl.username": user,
                       "sasl.password": password})
    return config


def ck_round_trip(bootstrap: str, security: dict, what: str) -> None:
    topic = harness.unique_name(what)
    records = [harness.Record(0, f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    produced = harness.ck_produce(bootstrap, topic, records, **security)
    consumed = harness.ck_consume(bootstrap, topic, 1, len(records), **security)
    harness.assert_same_records(produced, consumed)


def ck_error(bootstrap: str, security: dict) -> str:
    """The errors librdkafka reports (error_cb) when it cannot get metadata with `security`."""
    from confluent_kafka import KafkaException, Producer

    errors: list[str] = []
    config = harness.ck_config(bootstrap, **security)
    config["error_cb"] = lambda err: errors.append(f"{err.name()}: {err.str()}")
    producer = Producer(config)
    with pytest.raises(KafkaException) as failed:
        producer.list_topics(timeout=10)
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)
    return " ".join(errors) + " " + str(failed.value)


def kp_producer(bootstrap: str, **security):
    kafka = harness.require_module("kafka")
    return kafka.KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                               max_block_ms=15_000, **security)


def kp_round_trip(bootstrap: str, **security) -> None:
    kafka = harness.require_module("kafka")
    topic = harness.unique_name("kp-sec")
    producer = kp_producer(bootstrap, **security)
    for i in range(3):
        producer.send(topic, key=b"k", value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                   consumer_timeout_ms=15_000, **security)
    consumer.assign([kafka.TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    values = []
    for msg in consumer:
        values.append(msg.value)
        if len(values) == 3:
            break
    consumer.close()
    assert values == [b"v0", b"v1", b"v2"]


def kcat(bootstrap: str, security: dict, *args: str, input: bytes | None = None) -> str:
    binary = harness.require_tool("kcat")
    cmd = [binary, "-b", bootstrap, "-m", "15", "-X", "socket.timeout.ms=10000"]
    for k, v in security.items():
        cmd += ["-X", f"{k}={v}"]
    return harness.run([*cmd, *args], input=input).stdout.decode()


def served_subject(bootstrap: str, certs: Path) -> str:
    """The CN of the certificate a new TLS connection is served."""
    host, port = bootstrap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
    return subject["commonName"]


# ----------------------------------------------------------------------------- TLS


def test_tls_with_confluent_kafka_kafka_python_and_kcat(backend, proxy_factory, certs):
    proxy = proxy_factory(extra_args=["--security-protocol", "SSL", *tls_args(certs)])
    security = ck_security(certs, "SSL")
    ck_round_trip(proxy.bootstrap, security, "tls-ck")
    kp_round_trip(proxy.bootstrap, security_protocol="SSL", ssl_cafile=str(certs / "ca.crt"))
    topic = harness.unique_name("tls-kcat")
    kcat(proxy.bootstrap, security, "-P", "-t", topic, input=b"over tls\n")
    assert kcat(proxy.bootstrap, security, "-C", "-t", topic, "-o", "beginning", "-e") == "over tls\n"
    # A client that does not trust the proxy's CA fails the handshake.
    untrusted = {"security.protocol": "SSL", "ssl.ca.location": str(certs / "other-ca.crt")}
    assert "SSL handshake failed" in ck_error(proxy.bootstrap, untrusted)


def test_mtls_requires_a_trusted_unexpired_client_certificate(backend, proxy_factory, certs):
    proxy = proxy_factory(extra_args=["--security-protocol", "SSL", *tls_args(certs, mtls=True)])
    ck_round_trip(proxy.bootstrap, ck_security(certs, "SSL", client_cert="client"), "mtls")
    # With TLS 1.3 the client learns of the refusal from the server's alert. OpenSSL does not
    # offer a certificate whose issuer is not among the CAs the server names, so one from
    # another CA ends as if none was given.
    for cert, alerts in ((None, ["certificate required"]),
                         ("mallory", ["certificate required", "unknown ca"]),
                         ("expired", ["certificate expired"])):
        error = ck_error(proxy.bootstrap, ck_security(certs, "SSL", client_cert=cert))
        assert "SSL alert" in error and any(a in error for a in alerts), (cert, error)
    log = proxy.log_text()
    assert "TLS handshake failed" in log and "certificate expired" in log, log[-3000:]


def test_certificate_rotation_without_restart(backend, proxy_factory, certs, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    for ext in ("crt", "key"):
        (live / f"tls.{ext}").write_bytes((certs / f"server.{ext}").read_bytes())
    config = tmp_path / "proxy.yaml"
    config.write_text(f"tls:\n  cert_file: {live / 'tls.crt'}\n  key_file: {live / 'tls.key'}\n"
                      f"  reload_interval_ms: 200\n")
    proxy = proxy_factory(extra_args=["--config", str(config), "--security-protocol", "SSL"])
    assert served_subject(proxy.bootstrap, certs) == "localhost"
    # Half a rotation (new certificate, old key) is refused and the old pair stays in use.
    (live / "tls.crt").write_bytes((certs / "server2.crt").read_bytes())
    time.sleep(0.5)
    assert served_subject(proxy.bootstrap, certs) == "localhost"
    (live / "tls.key").write_bytes((certs / "server2.key").read_bytes())
    harness.wait_until(lambda: served_subject(proxy.bootstrap, certs) == "rotated.localhost", 10,
                       "the rotated certificate")
    ck_round_trip(proxy.bootstrap, ck_security(certs, "SSL"), "rotated")
    assert "changed TLS files cannot be used" in proxy.log_text()
    assert "TLS certificate reloaded" in proxy.log_text()


# ----------------------------------------------------------------------------- SASL


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_with_confluent_kafka(backend, proxy_factory, certs, users_file, mechanism):
    proxy = proxy_factory(extra_args=["--security-protocol", "SASL_SSL", *tls_args(certs),
                                      *sasl_args("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", users_file)])
    ck_round_trip(proxy.bootstrap, ck_security(certs, "SASL_SSL", mechanism), "sasl-ck")
    for user, password in (("alice", "wrong"), ("nobody", PASSWORD)):
        error = ck_error(proxy.bootstrap, ck_security(certs, "SASL_SSL", mechanism, user, password))
        assert "_AUTHENTICATION" in error and "Authentication failed" in error, error


def kp_bootstrap_errors(bootstrap: str, **security) -> str:
    """What kafka-python reports while failing to bootstrap: it gives up with a timeout and
    logs why (the SaslAuthenticationFailedError)."""
    import logging

    kafka = harness.require_module("kafka")
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        with pytest.raises(kafka.errors.KafkaTimeoutError):
            kafka.KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=5_000, **security)
    finally:
        logger.removeHandler(handler)
    return "\n".join(messages)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_plaintext_with_kafka_python(backend, proxy_factory, users_file, mechanism):
    proxy = proxy_factory(extra_args=["--security-protocol", "SASL_PLAINTEXT",
                                      *sasl_args("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", users_file)])
    security = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                "sasl_plain_username": "alice", "sasl_plain_password": PASSWORD}
    kp_round_trip(proxy.bootstrap, **security)
    for user, password in (("alice", "wrong"), ("nobody", PASSWORD)):
        bad = {**security, "sasl_plain_username": user, "sasl_plain_password": password}
        errors = kp_bootstrap_errors(proxy.bootstrap, **bad)
        assert "SaslAuthenticationFailedError" in errors and "invalid credentials" in errors, errors
    # A client that skips SASL on a SASL listener: its first request closes the connection.
    kp_bootstrap_errors(proxy.bootstrap)
    assert "before SASL authentication" in proxy.log_text()


def test_sasl_scram_with_kcat(backend, proxy_factory, certs, users_file):
    proxy = proxy_factory(extra_args=["--security-protocol", "SASL_SSL", *tls_args(certs),
                                      *sasl_args("SCRAM-SHA-512", users_file)])
    security = ck_security(certs, "SASL_SSL", "SCRAM-SHA-512")
    topic = harness.unique_name("sasl-kcat")
    kcat(proxy.bootstrap, security, "-P", "-t", topic, input=b"scram\n")
    assert kcat(proxy.bootstrap, security, "-C", "-t", topic, "-o", "beginning", "-e") == "scram\n"
    wrong = {**security, "sasl.password": "wrong"}
    with pytest.raises(harness.HarnessError) as failed:
        kcat(proxy.bootstrap, wrong, "-L")
    assert "Authentication failed" in str(failed.value)


@pytest.mark.iggy_only
def test_plain_passthrough_logs_in_to_iggy(backend, proxy_factory):
    proxy = proxy_factory(extra_args=["--security-protocol", "SASL_PLAINTEXT",
                                      *sasl_args("PLAIN", "passthrough")])
    good = ck_security(None, "SASL_PLAINTEXT", "PLAIN", harness.IGGY_USERNAME, harness.IGGY_PASSWORD)
    ck_round_trip(proxy.bootstrap, good, "passthrough")
    for user, password in ((harness.IGGY_USERNAME, "wrong"), ("nobody", "whatever")):
        error = ck_error(proxy.bootstrap, ck_security(None, "SASL_PLAINTEXT", "PLAIN", user, password))
        assert "Authentication failed" in error, error


# ----------------------------------------------------------------------------- Java


def java_security(certs: Path, protocol: str, mechanism: str | None = None,
                  password: str = PASSWORD) -> dict:
    """kafka-clients settings for the driver's `client.*` arguments; PEM trust store (KIP-651)."""
    props = {"client.security.protocol": protocol,
             "client.ssl.truststore.type": "PEM",
             "client.ssl.truststore.location": str(certs / "ca.crt")}
    if mechanism:
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        props["client.sasl.mechanism"] = mechanism
        props["client.sasl.jaas.config"] = (
            f'{module} required username="alice" password="{password}";')
    return props


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_with_java(backend, proxy_factory, certs, users_file, java_jar, mechanism):
    proxy = proxy_factory(extra_args=["--security-protocol", "SASL_SSL", *tls_args(certs),
                                      *sasl_args("PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", users_file)])
    topic = harness.unique_name("sasl-java")
    security = java_security(certs, "SASL_SSL", mechanism)
    produced = harness.java_driver(java_jar, "produce", bootstrap=proxy.bootstrap, topic=topic,
                                   partitions=1, count=5, **security)
    consumed = harness.java_driver(java_jar, "consume", bootstrap=proxy.bootstrap, topic=topic,
                                   partitions=1, expect=5, **security)
    assert [r["offset"] for r in consumed] == [r["offset"] for r in produced] == list(range(5))
    with pytest.raises(harness.HarnessError) as failed:
        harness.java_driver(java_jar, "produce", bootstrap=proxy.bootstrap, topic=topic,
                            partitions=1, count=1,
                            **java_security(certs, "SASL_SSL", mechanism, password="wrong"))
    assert "SaslAuthenticationException" in str(failed.value), str(failed.value)[-2000:]

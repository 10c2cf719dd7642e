"""Soak: mixed produce / fetch / consumer-group traffic through the proxy for a bounded time,
sampling the proxy's RSS; afterwards no acknowledged record may be missing and RSS must show no
growth trend.

Traffic (confluent-kafka, 3 topics x 3 partitions):
- two producers (one uncompressed, one zstd with linger), keyed records of 50 B - 4 KiB at about
  300 records/s each, every value starting with its key so content is checked on the way back;
- one consumer group of two members subscribed to all topics, committing every 200 records
  (async) and on close; the second member leaves and rejoins periodically (rebalances);
- a reader that assign()s one topic at a time and reads it from the beginning up to the high
  watermarks it saw when it started (cold reads, read-ahead), round after round.

Checks (`check()`): every acknowledged record was consumed by the group with its value intact,
no delivery error, every reader round complete, and RSS steady: the mean of the last third of the
samples is at most 10 % + 8 MiB above the mean of the middle third (the first third is warm-up:
buffers, allocator arenas, read-ahead filling up).

As a pytest test: test_hostile.py::test_soak_short (SOAK_SECONDS, default 60, real Iggy).
As a command (starts its own Iggy server and proxy, stops by itself, exit status 0 = passed):

    python3 tests/clients/soak.py --minutes 10 --backend iggy

with IGGY_SERVER_BIN (default /opt/iggy/bin/iggy-server) and PROXY_BIN (default: cargo build).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import hostile  # noqa: E402
from hostile import MiB  # noqa: E402

TOPICS = 3
PARTITIONS = 3
GROUP_MEMBERS = 2
RATE_PER_PRODUCER = 300  # records/s
CONNECTIONS = 20  # what the soak's clients keep open at most (for the RSS bound)
GROWTH_FRACTION = 0.10
GROWTH_SLACK = 8 * MiB


@dataclass
class SoakResult:
    seconds: float
    samples: list = field(default_factory=list)  # (elapsed s, rss bytes, acked, consumed)
    acked: int = 0
    consumed: int = 0
    lost: list = field(default_factory=list)
    lost_count: int = 0
    corrupt: list = field(default_factory=list)
    delivery_errors: list = field(default_factory=list)
    delivery_error_count: int = 0
    reader_rounds: int = 0
    reader_problems: list = field(default_factory=list)
    rejoins: int = 0
    proxy_alive: bool = True

    def thirds(self) -> tuple[float, float]:
        rss = [s[1] for s in self.samples]
        n = len(rss)
        return statistics.mean(rss[n // 3: 2 * n // 3]), statistics.mean(rss[2 * n // 3:])

    def summary(self) -> dict:
        out = {"acked": self.acked, "consumed": self.consumed, "lost": self.lost_count,
               "delivery_errors": self.delivery_error_count, "reader_rounds": self.reader_rounds,
               "rejoins": self.rejoins, "samples": len(self.samples)}
        if len(self.samples) >= 6:
            middle, last = self.thirds()
            out.update(middle_rss=hostile.mib(middle), last_rss=hostile.mib(last))
        return out

    def table(self) -> str:
        lines = [f"{'t (s)':>7} {'RSS (MiB)':>10} {'acked':>9} {'consumed':>9}"]
        for t, rss, acked, consumed in self.samples:
            lines.append(f"{t:7.0f} {rss / MiB:10.1f} {acked:9d} {consumed:9d}")
        return "\n".join(lines)


def run(bootstrap: str, pid: int, seconds: float, sample_every: float | None = None,
        rejoin_every: float | None = None, out=print) -> SoakResult:
    """Runs the traffic for `seconds` against the proxy at `bootstrap` (process `pid`), then
    drains (bounded) and returns what was measured; `check()` judges it."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    sample_every = sample_every or max(2.0, seconds / 120)
    rejoin_every = rejoin_every or max(seconds / 2, min(120.0, seconds / 4))
    result = SoakResult(seconds)
    topics = [harness.unique_name(f"soak-{i}") for i in range(TOPICS)]
    for t in topics:
        harness.ck_create_topic(bootstrap, t, PARTITIONS)
    group = harness.unique_name("soak-group")
    base = harness.ck_config(bootstrap)
    base.pop("logger", None)
    base["log_level"] = 4

    lock = threading.Lock()
    acked: set[bytes] = set()
    consumed: set[bytes] = set()
    corrupt: list = []
    errors: list = []
    stop_producing = threading.Event()
    stop_consuming = threading.Event()

    def produce(name: str, extra: dict):
        producer = Producer({**base, "acks": "all", "message.timeout.ms": 60_000, **extra})

        def delivered(err, msg):
            with lock:
                if err is not None:
                    errors.append(f"{msg.key()!r}: {err}")
                else:
                    acked.add(msg.key())

        seq = 0
        tick = 0.05
        per_tick = max(1, int(RATE_PER_PRODUCER * tick))
        next_tick = time.monotonic()
        while not stop_producing.is_set():
            for _ in range(per_tick):
                key = f"{name}-{seq}".encode()
                value = key + b"|" + bytes([97 + seq % 26]) * (50 + (seq * 37) % 4000)
                while True:
                    try:
                        producer.produce(topics[seq % TOPICS], key=key, value=value,
                                         on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                seq += 1
            next_tick = max(next_tick + tick, time.monotonic() - 1.0)  # no catch-up bursts
            while not stop_producing.is_set() and time.monotonic() < next_tick:
                producer.poll(max(0.0, next_tick - time.monotonic()))
        remaining = producer.flush(60)
        if remaining:
            with lock:
                errors.append(f"{name}: {remaining} records undelivered after flush")

    def record(msg) -> None:
        key, value = msg.key(), msg.value()
        with lock:
            if not value or not value.startswith(key + b"|"):
                corrupt.append((key, (value or b"")[:40]))
            consumed.add(key)

    def member(index: int, stop: threading.Event):
        consumer = Consumer({**base, "group.id": group, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                             "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 200,
                             "client.id": f"soak-member-{index}"})
        consumer.subscribe(topics)
        since_commit = 0
        try:
            while not stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                record(msg)
                since_commit += 1
                if since_commit >= 200:
                    consumer.commit(asynchronous=True)
                    since_commit = 0
            try:
                consumer.commit(asynchronous=False)
            except Exception:  # noqa: BLE001 - nothing to commit / rebalancing
                pass
        finally:
            consumer.close()

    reader_rounds = [0]
    reader_problems: list = []

    def reader():
        i = 0
        while not stop_consuming.is_set():
            topic = topics[i % TOPICS]
            i += 1
            consumer = Consumer({**base, "group.id": harness.unique_name("soak-reader"),
                                 "enable.auto.commit": False, "fetch.wait.max.ms": 200})
            try:
                highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
                         for p in range(PARTITIONS)}
                want = {p: h for p, h in highs.items() if h > 0}
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in want])
                seen = {p: 0 for p in want}
                deadline = time.monotonic() + 60
                while any(seen[p] < want[p] for p in want) and not stop_consuming.is_set():
                    if time.monotonic() > deadline:
                        reader_problems.append(f"{topic}: read {seen} of {want} within 60s")
                        break
                    msg = consumer.poll(0.2)
                    if msg is None or msg.error() is not None:
                        continue
                    if msg.offset() < want.get(msg.partition(), 0):
                        seen[msg.partition()] = max(seen[msg.partition()], msg.offset() + 1)
                else:
                    if not stop_consuming.is_set():
                        reader_rounds[0] += 1
            except Exception as e:  # noqa: BLE001 - collected
                reader_problems.append(f"{topic}: {e!r}")
            finally:
                consumer.close()
            stop_consuming.wait(1.0)

    threads = [threading.Thread(target=produce, args=("plain", {"linger.ms": 0}), daemon=True),
               threading.Thread(target=produce, args=("zstd", {"linger.ms": 5, "compression.type": "zstd"}),
                                daemon=True),
               threading.Thread(target=reader, daemon=True)]
    member_stops = [threading.Event() for _ in range(GROUP_MEMBERS)]
    members = [threading.Thread(target=member, args=(i, member_stops[i]), daemon=True)
               for i in range(GROUP_MEMBERS)]
    for t in threads + members:
        t.start()

    started = time.monotonic()
    next_sample = started
    next_rejoin = started + rejoin_every
    out(f"soak: {seconds:.0f}s against {bootstrap} (pid {pid}), topics {topics}, group {group}; "
        f"RSS every {sample_every:.0f}s, member rejoin every {rejoin_every:.0f}s")
    while time.monotonic() - started < seconds:
        now = time.monotonic()
        if now >= next_sample:
            rss = hostile.rss_bytes(pid)
            if rss is None:
                result.proxy_alive = False
                out("soak: the proxy is gone")
                break
            with lock:
                result.samples.append((now - started, rss, len(acked), len(consumed)))
            next_sample += sample_every
        if now >= next_rejoin and now - started < seconds - 15:
            last = GROUP_MEMBERS - 1
            member_stops[last].set()
            members[last].join(timeout=30)
            member_stops[last] = threading.Event()
            members[last] = threading.Thread(target=member, args=(last, member_stops[last]), daemon=True)
            members[last].start()
            result.rejoins += 1
            next_rejoin += rejoin_every
        time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))

    stop_producing.set()
    for t in threads[:2]:
        t.join(timeout=90)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with lock:
            if acked <= consumed:
                break
        time.sleep(0.2)
    stop_consuming.set()
    for stop in member_stops:
        stop.set()
    for t in members + threads[2:]:
        t.join(timeout=60)

    with lock:
        lost = sorted(acked - consumed)
        result.acked, result.consumed = len(acked), len(consumed & acked)
        result.lost, result.lost_count = [k.decode() for k in lost[:20]], len(lost)
        result.corrupt = corrupt[:20]
        result.delivery_errors, result.delivery_error_count = errors[:20], len(errors)
    result.reader_rounds = reader_rounds[0]
    result.reader_problems = reader_problems[:20]
    result.proxy_alive = result.proxy_alive and hostile.rss_bytes(pid) is not None
    out(result.table())
    out(f"soak: {result.summary()}")
    return result


def check(result: SoakResult) -> None:
    """Raises AssertionError unless the soak passed (see the module docstring)."""
    assert result.proxy_alive, "the proxy died during the soak"
    assert result.delivery_error_count == 0, f"delivery errors: {result.delivery_errors}"
    assert result.acked > 0, "nothing was produced"
    assert result.lost_count == 0, (f"{result.lost_count} of {result.acked} acknowledged records "
                                    f"never consumed by the group: {result.lost}")
    assert not result.corrupt, f"records with wrong values: {result.corrupt}"
    assert not result.reader_problems, f"reader: {result.reader_problems}"
    assert result.reader_rounds >= 1, "the reader completed no round"
    assert len(result.samples) >= 6, f"too few RSS samples: {len(result.samples)}"
    middle, last = result.thirds()
    allowed = middle * (1 + GROWTH_FRACTION) + GROWTH_SLACK
    assert last <= allowed, (
        f"RSS grows: last third averages {hostile.mib(last)}, middle third {hostile.mib(middle)} "
        f"(allowed {hostile.mib(allowed)} = +{GROWTH_FRACTION:.0%} + {hostile.mib(GROWTH_SLACK)})\n"
        + result.table())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes")
    parser.add_argument("--backend", choices=["iggy", "memory"], default="iggy",
                        help="memory: RSS grows with the stored records, so only loss is judged")
    parser.add_argument("--sample-every", type=float, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60

    import os

    hostile.raise_nofile(20_000)
    workdir = Path(tempfile.mkdtemp(prefix="kafka-iggy-soak-"))
    iggy = None
    proxy = None
    try:
        if args.backend == "iggy":
            binary = os.environ.get("IGGY_SERVER_BIN") or "/opt/iggy/bin/iggy-server"
            if not Path(binary).is_file():
                print(f"soak: no Iggy server binary at {binary} (set IGGY_SERVER_BIN)", file=sys.stderr)
                return 2
            iggy = harness.IggyServer(Path(binary), workdir / "iggy").start()
            backend = harness.Backend("iggy", iggy)
        else:
            backend = harness.Backend("memory")
        settings = hostile.Settings()
        config = settings.write(workdir / "limits.yaml")
        proxy = harness.Proxy(harness.proxy_binary(), backend, workdir,
                              extra_args=["--config", str(config)]).start()
        result = run(proxy.bootstrap, proxy.process.pid, seconds, args.sample_every)
        peak = hostile.hwm_bytes(proxy.process.pid)
        bound = hostile.documented_rss_bound(settings, CONNECTIONS)
        print(f"soak: peak RSS {hostile.mib(peak)}, documented bound {hostile.mib(bound)}; logs in {workdir}")
        try:
            if args.backend == "iggy":
                check(result)
                assert peak is not None and peak <= bound, "peak RSS over the documented bound"
            else:
                trendless = SoakResult(result.seconds, [(t, 1, a, c) for t, _, a, c in result.samples])
                trendless.__dict__.update({k: v for k, v in result.__dict__.items() if k != "samples"})
                check(trendless)
        except AssertionError as e:
            print(f"soak: FAILED: {e}")
            return 1
        print("soak: passed")
        return 0
    finally:
        if proxy is not None:
            proxy.stop()
        if iggy is not None:
            iggy.stop()


if __name__ == "__main__":
    sys.exit(main())

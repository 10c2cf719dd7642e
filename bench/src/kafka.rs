//! The path under test: librdkafka (through the `rdkafka` crate) talking Kafka to the proxy.
//!
//! Producer: linger.ms, batch.size and acks from the flags (default 5 ms, 1 MiB, all), no
//! compression, no idempotence; a `ThreadedProducer` whose delivery callback counts successes
//! and failures. Consumer: a `BaseConsumer` with `assign()` from the beginning and no offset
//! commits (the proxy has no group coordinator yet); `group.id` is set only because librdkafka
//! consumers conventionally carry one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::cpu::CpuProbe;
use crate::payload::{fill, partition_of, Verifier};
use crate::{Timed, Workload};

const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REPORTED_ERRORS: usize = 5;

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "kafka-iggy-bench")
        // The proxy is one broker on loopback; fail fast instead of retrying for minutes.
        .set("socket.connection.setup.timeout.ms", "10000");
    config
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    base_config(bootstrap)
        .create()
        .context("cannot create librdkafka admin client")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(METADATA_TIMEOUT))
        .operation_timeout(Some(METADATA_TIMEOUT))
}

/// Creates `topic` with `partitions` partitions through the proxy (CreateTopics).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let partitions = i32::try_from(partitions).context("too many partitions")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &admin_options())
        .await
        .with_context(|| format!("CreateTopics {topic} through the proxy failed"))?;
    for result in results {
        result.map_err(|(name, code)| anyhow!("CreateTopics {name} through the proxy: {code}"))?;
    }
    Ok(())
}

pub async fn delete_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    for result in admin.delete_topics(&[topic], &admin_options()).await? {
        result.map_err(|(name, code)| anyhow!("DeleteTopics {name}: {code}"))?;
    }
    Ok(())
}

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.len() < MAX_REPORTED_ERRORS {
                    errors.push(format!("partition {}: {error}", message.partition()));
                }
            }
        }
    }
}

/// Produces every record and waits for all delivery reports; returns the time from the first
/// `send` to the end of `flush`. Connecting and the first Metadata request happen before the
/// clock starts.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    w: &Workload,
    cpu: &CpuProbe,
) -> anyhow::Result<Timed> {
    let message_max = (w.kafka_batch_size + 64 * 1024).max(1_000_000);
    let producer: ThreadedProducer<Deliveries> = base_config(bootstrap)
        .set("linger.ms", w.linger_ms.to_string())
        .set("batch.size", w.kafka_batch_size.to_string())
        // librdkafka caps a batch at message.max.bytes (default 1 000 000), below 1 MiB.
        .set("message.max.bytes", message_max.to_string())
        .set("acks", &w.acks)
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .create_with_context(Deliveries::default())
        .context("cannot create librdkafka producer")?;
    producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("Metadata for {topic} through the proxy failed"))?;

    let mut buf = vec![0u8; w.record_size];
    let cpu_start = cpu.sample();
    let started = Instant::now();
    for i in 0..w.records {
        fill(&mut buf, i);
        let partition = partition_of(i, w.partitions) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(&buf[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for deliveries to drain it (the
                    // producer's own thread serves them; polling here too would compete).
                    record = back;
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((e, _)) => bail!("librdkafka refused record {i}: {e}"),
            }
        }
        if producer.context().failed.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    let flushed = producer.flush(w.stall_timeout.max(Duration::from_secs(60)));
    let timed = Timed::since(started, cpu, &cpu_start);
    let context = producer.context();
    let (delivered, failed) = (
        context.delivered.load(Ordering::Relaxed),
        context.failed.load(Ordering::Relaxed),
    );
    if failed > 0 {
        let errors = context
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join(" | ");
        bail!("{failed} records failed delivery ({delivered} delivered): {errors}");
    }
    flushed.context("flush did not finish")?;
    if delivered != w.records {
        bail!("{delivered} delivery reports for {} records", w.records);
    }
    Ok(timed)
}

/// Assigns every partition from the beginning and reads until all records are back and
/// verified, or nothing arrives for the stall timeout; returns the time from `assign` to the
/// last record and the verification summary.
pub fn fetch(
    bootstrap: &str,
    topic: &str,
    w: &Workload,
    cpu: &CpuProbe,
) -> anyhow::Result<(Timed, Result<String, String>)> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", "kafka-iggy-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set(
            "max.partition.fetch.bytes",
            w.fetch_partition_bytes.to_string(),
        )
        .create()
        .context("cannot create librdkafka consumer")?;
    consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("Metadata for {topic} through the proxy failed"))?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..w.partitions {
        let p = i32::try_from(p).context("too many partitions")?;
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }

    let mut verifier = Verifier::new(w.records, w.record_size, w.partitions);
    let mut errors = Vec::new();
    let cpu_start = cpu.sample();
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let mut last_progress = Instant::now();
    let mut finished = started;
    let mut cpu_end = cpu_start;
    while !verifier.complete() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                verifier.check(
                    u32::try_from(m.partition()).unwrap_or(u32::MAX),
                    u64::try_from(m.offset()).unwrap_or(u64::MAX),
                    m.payload().unwrap_or_default(),
                );
                last_progress = Instant::now();
                finished = last_progress;
                if verifier.complete() {
                    cpu_end = cpu.sample();
                }
            }
            Some(Err(e)) if errors.len() < MAX_REPORTED_ERRORS => errors.push(e.to_string()),
            Some(Err(_)) | None => {}
        }
        if last_progress.elapsed() > w.stall_timeout {
            break;
        }
    }
    let timed = Timed {
        elapsed: finished - started,
        cpu: cpu_end.since(&cpu_start),
    };
    let result = match verifier.finish() {
        Ok(summary) if errors.is_empty() => Ok(summary),
        Ok(summary) => Ok(format!(
            "{summary}; consumer reported: {}",
            errors.join(" | ")
        )),
        Err(problems) if errors.is_empty() => Err(problems),
        Err(problems) => Err(format!(
            "{problems}; consumer reported: {}",
            errors.join(" | ")
        )),
    };
    consumer.unassign().ok();
    Ok((timed, result))
}

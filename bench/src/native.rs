//! The baseline: the Iggy SDK talking to the server directly, one logged-in TCP client
//! (`iggy_testkit::connect`: the client settings the proxy's pool uses, TCP_NODELAY and no
//! automatic reconnection).

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use iggy::prelude::{
    CompressionAlgorithm, Consumer, Identifier, IggyExpiry, IggyMessage, MaxTopicSize,
    MessageClient, Partitioning, PollingStrategy, StreamClient, TcpClient, TopicClient,
};

use crate::cpu::CpuProbe;
use crate::payload::{fill, Verifier};
use crate::{Timed, Workload};

fn named(name: &str) -> anyhow::Result<Identifier> {
    Identifier::named(name).with_context(|| format!("invalid Iggy name {name:?}"))
}

/// Creates `stream` with one topic `topic` of `partitions` partitions.
pub async fn create_topic(
    client: &TcpClient,
    stream: &str,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    client
        .create_stream(stream)
        .await
        .with_context(|| format!("cannot create Iggy stream {stream}"))?;
    client
        .create_topic(
            &named(stream)?,
            topic,
            partitions,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::NeverExpire,
            MaxTopicSize::ServerDefault,
        )
        .await
        .with_context(|| format!("cannot create Iggy topic {stream}/{topic}"))?;
    Ok(())
}

pub async fn delete_stream(client: &TcpClient, stream: &str) -> anyhow::Result<()> {
    client.delete_stream(&named(stream)?).await?;
    Ok(())
}

/// Sends every record, `batch` per `send_messages`, partitions taking turns; returns the time
/// from the first send to the last reply (building the messages is inside the timing, as it is
/// for the Kafka producer).
pub async fn produce(
    client: &TcpClient,
    stream: &str,
    topic: &str,
    w: &Workload,
    cpu: &CpuProbe,
) -> anyhow::Result<Timed> {
    let (stream_id, topic_id) = (named(stream)?, named(topic)?);
    let partitions = u64::from(w.partitions);
    // Next record index per partition: partition p holds p, p + P, p + 2P, ...
    let mut next: Vec<u64> = (0..partitions).collect();
    let cpu_start = cpu.sample();
    let started = Instant::now();
    loop {
        let mut sent_any = false;
        for p in 0..w.partitions {
            let cursor = &mut next[p as usize];
            let mut messages = Vec::with_capacity(w.batch);
            while *cursor < w.records && messages.len() < w.batch {
                let mut buf = vec![0u8; w.record_size];
                fill(&mut buf, *cursor);
                messages.push(
                    IggyMessage::builder()
                        .payload(Bytes::from(buf))
                        .build()
                        .context("cannot build Iggy message")?,
                );
                *cursor += partitions;
            }
            if messages.is_empty() {
                continue;
            }
            sent_any = true;
            client
                .send_messages(
                    &stream_id,
                    &topic_id,
                    &Partitioning::partition_id(p),
                    &mut messages,
                )
                .await
                .with_context(|| format!("send to {stream}/{topic} partition {p} failed"))?;
        }
        if !sent_any {
            break;
        }
    }
    Ok(Timed::since(started, cpu, &cpu_start))
}

/// Polls every partition from offset 0, `batch` messages per poll, until all records are back
/// and verified; returns the elapsed time and the verification summary.
pub async fn fetch(
    client: &TcpClient,
    stream: &str,
    topic: &str,
    w: &Workload,
    cpu: &CpuProbe,
) -> anyhow::Result<(Timed, Result<String, String>)> {
    let (stream_id, topic_id) = (named(stream)?, named(topic)?);
    let consumer = Consumer::new(named("kafka-iggy-bench")?);
    let count = u32::try_from(w.batch).unwrap_or(u32::MAX);
    let mut verifier = Verifier::new(w.records, w.record_size, w.partitions);
    let cpu_start = cpu.sample();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while !verifier.complete() {
        let before = verifier.received();
        for p in 0..w.partitions {
            if verifier.partition_done(p) {
                continue;
            }
            let offset = verifier.next_offset(p);
            let polled = client
                .poll_messages(
                    &stream_id,
                    &topic_id,
                    Some(p),
                    &consumer,
                    &PollingStrategy::offset(offset),
                    count,
                    false,
                )
                .await
                .with_context(|| format!("poll of {stream}/{topic} partition {p} failed"))?;
            for message in &polled.messages {
                verifier.check(p, message.header.offset, &message.payload);
            }
        }
        if verifier.received() > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > w.stall_timeout {
            break;
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((Timed::since(started, cpu, &cpu_start), verifier.finish()))
}

//! Kafka record batches ↔ back-end records.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use crate::backend::{FetchedRecord, StoredRecord};
use crate::partitions::BatchIdentity;
use crate::protocol::alloc_guard;

/// The records of one Produce partition entry.
#[derive(Debug)]
pub struct ProducedBatch {
    pub records: Vec<StoredRecord>,
    /// Set when the producer is idempotent (producer id ≥ 0).
    pub identity: Option<BatchIdentity>,
    pub transactional: bool,
    /// Sum of key, value and header bytes, for metrics.
    pub payload_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("record batch has no records")]
    Empty,
    #[error("several record batches from different producers in one partition entry")]
    MixedProducers,
}

/// Decodes every batch in a Produce partition entry. Control batches are never sent by
/// producers; transactional ones are flagged so the caller can refuse them.
pub fn decode_produced(mut bytes: Bytes) -> Result<ProducedBatch, BatchError> {
    let sets = alloc_guard::untrusted(|| RecordBatchDecoder::decode_all(&mut bytes))
        .map_err(|e| BatchError::Corrupt(e.to_string()))?;
    let mut records = Vec::new();
    let mut identity: Option<BatchIdentity> = None;
    let mut transactional = false;
    let mut payload_bytes = 0;
    let mut first = true;
    for set in sets {
        for record in set.records {
            transactional |= record.transactional || record.control;
            if first {
                if record.producer_id >= 0 {
                    identity = Some(BatchIdentity {
                        producer_id: record.producer_id,
                        producer_epoch: record.producer_epoch,
                        first_sequence: record.sequence,
                        record_count: 0,
                    });
                }
                first = false;
            } else if identity.map(|i| i.producer_id) != Some(record.producer_id)
                && (identity.is_some() || record.producer_id >= 0)
            {
                return Err(BatchError::MixedProducers);
            }
            let headers: Vec<(String, Option<Bytes>)> = record
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let stored = StoredRecord {
                key: record.key,
                value: record.value,
                headers,
                timestamp_ms: record.timestamp,
            };
            payload_bytes += stored.approx_size();
            records.push(stored);
        }
    }
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    if let Some(id) = identity.as_mut() {
        id.record_count = i32::try_from(records.len()).unwrap_or(i32::MAX);
    }
    Ok(ProducedBatch {
        records,
        identity,
        transactional,
        payload_bytes,
    })
}

/// Encodes fetched records as one uncompressed v2 batch. Sequences run with the offsets so the
/// encoder keeps them in a single batch (it starts a new one whenever offset − sequence changes).
pub fn encode_fetched(records: &[FetchedRecord]) -> anyhow::Result<Bytes> {
    let Some(first) = records.first() else {
        return Ok(Bytes::new());
    };
    let base = first.offset;
    let kafka_records: Vec<Record> = records
        .iter()
        .map(|r| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: r.offset,
            sequence: i32::try_from(r.offset - base).unwrap_or(i32::MAX),
            timestamp: r.record.timestamp_ms,
            key: r.record.key.clone(),
            value: r.record.value.clone(),
            headers: r
                .record
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    // Batch header plus per-record framing; sized up front so large fetches are not built by
    // repeated doubling.
    let estimate: usize = records
        .iter()
        .map(|r| r.record.approx_size() + 8)
        .sum::<usize>()
        + 64;
    let mut buf = BytesMut::with_capacity(estimate);
    RecordBatchEncoder::encode(
        &mut buf,
        &kafka_records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests;

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
use crate::protocol::decompress::{self, DecompressError};

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

impl ProducedBatch {
    /// Memory the decoded batch holds: its bytes plus [`DECODED_RECORD_OVERHEAD`] per record.
    pub fn decoded_bytes(&self) -> usize {
        self.payload_bytes + self.records.len() * DECODED_RECORD_OVERHEAD
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("record batch has no records")]
    Empty,
    #[error("a partition entry of a Produce request must hold exactly one record batch")]
    SeveralBatches,
    #[error("record batch takes more than {limit} bytes decompressed and decoded (limits.max_decompressed_bytes)")]
    TooLarge { limit: usize },
}

/// Memory a decoded record takes besides its bytes: kafka-protocol's `Record` and our
/// `StoredRecord` (both exist while a batch is converted). A batch of many tiny records is
/// much larger decoded than on the wire, so this counts against the same cap as decompression.
pub const DECODED_RECORD_OVERHEAD: usize =
    std::mem::size_of::<Record>() + std::mem::size_of::<StoredRecord>();

/// Offset of the record count in a v2 batch header.
const RECORD_COUNT_AT: usize = 57;

/// Decodes the one record batch of a Produce partition entry (Kafka refuses entries with more
/// than one since Produce v3). `max_decoded_bytes` bounds what decoding may allocate: the
/// decompressed records plus [`DECODED_RECORD_OVERHEAD`] per record, checked from the batch
/// header before decoding and while decompressing. Control batches are never sent by
/// producers; transactional ones are flagged so the caller can refuse them.
pub fn decode_produced(
    mut bytes: Bytes,
    max_decoded_bytes: usize,
) -> Result<ProducedBatch, BatchError> {
    let claimed_records = bytes
        .get(RECORD_COUNT_AT..RECORD_COUNT_AT + 4)
        .map_or(0, |b| {
            i32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0) as usize
        });
    let overhead = claimed_records.saturating_mul(DECODED_RECORD_OVERHEAD);
    let Some(max_decompressed) = max_decoded_bytes.checked_sub(overhead) else {
        return Err(BatchError::TooLarge {
            limit: max_decoded_bytes,
        });
    };
    let decompress = |records: &mut Bytes, codec| {
        let records =
            decompress::decompress(codec, records, max_decompressed).map_err(anyhow::Error::new)?;
        check_header_counts(&records, claimed_records).map_err(anyhow::Error::msg)?;
        Ok(records)
    };
    let set = alloc_guard::untrusted(|| {
        RecordBatchDecoder::decode_with_custom_compression(&mut bytes, Some(decompress))
    })
    .map_err(|e| match e.downcast::<DecompressError>() {
        Ok(DecompressError::TooLarge { .. }) => BatchError::TooLarge {
            limit: max_decoded_bytes,
        },
        Ok(corrupt) => BatchError::Corrupt(corrupt.to_string()),
        Err(e) => BatchError::Corrupt(e.to_string()),
    })?;
    if !bytes.is_empty() {
        return Err(BatchError::SeveralBatches);
    }
    let identity = set.records.first().and_then(|first| {
        (first.producer_id >= 0).then(|| BatchIdentity {
            producer_id: first.producer_id,
            producer_epoch: first.producer_epoch,
            first_sequence: first.sequence,
            record_count: i32::try_from(set.records.len()).unwrap_or(i32::MAX),
        })
    });
    let mut transactional = false;
    let mut payload_bytes = 0;
    let records: Vec<StoredRecord> = set
        .records
        .into_iter()
        .map(|record| {
            transactional |= record.transactional || record.control;
            let stored = StoredRecord {
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                timestamp_ms: record.timestamp,
            };
            payload_bytes += stored.approx_size();
            stored
        })
        .collect();
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(ProducedBatch {
        records,
        identity,
        transactional,
        payload_bytes,
    })
}

/// Refuses records that claim more headers than their bytes could hold, before kafka-protocol
/// decodes them: it sizes each record's header map from that count (`IndexMap::with_capacity`)
/// and the map's control bytes are written at once, so a 100-byte record claiming 2^30 headers
/// would cost gigabytes of resident memory (found by fuzzing `record_batch`). Each header takes
/// at least two bytes (two varint lengths). Anything else malformed is left to the decoder,
/// which fails on it without such cost.
fn check_header_counts(mut records: &[u8], count: usize) -> Result<(), String> {
    for _ in 0..count {
        let Some(size) = read_varint(&mut records) else {
            return Ok(());
        };
        let Some(mut record) = usize::try_from(size).ok().and_then(|n| records.get(..n)) else {
            return Ok(());
        };
        records = &records[record.len()..];
        // attributes, timestamp delta, offset delta, then key and value with their lengths
        record = record.get(1..).unwrap_or_default();
        let fields = read_varlong(&mut record).and(read_varint(&mut record));
        if fields.is_none() || !skip_sized(&mut record) || !skip_sized(&mut record) {
            return Ok(());
        }
        let Some(headers) = read_varint(&mut record) else {
            return Ok(());
        };
        if i64::from(headers) > (record.len() / 2) as i64 {
            return Err(format!(
                "a record claims {headers} headers in {} bytes",
                record.len()
            ));
        }
    }
    Ok(())
}

/// Reads an unsigned varint the way kafka-protocol 0.18 does, so that this check sees the same
/// fields as its decoder: at most `max_bytes` bytes, the last one taken even with its
/// continuation bit set, bits past the width dropped. `None` when the bytes run out.
fn read_unsigned(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *buf.get(i)?;
        value |= u64::from(byte & 0x7f) << (i * 7);
        if byte < 0x80 || i + 1 == max_bytes {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Kafka's zigzag varint (32 bits, at most 5 bytes), advancing `buf`.
fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let zigzag = read_unsigned(buf, 5)? as u32;
    Some(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
}

/// Kafka's zigzag varlong (64 bits, at most 10 bytes), advancing `buf`.
fn read_varlong(buf: &mut &[u8]) -> Option<i64> {
    let zigzag = read_unsigned(buf, 10)?;
    Some(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
}

/// Skips a length-prefixed field (-1 is null); false when it runs past the end.
fn skip_sized(buf: &mut &[u8]) -> bool {
    match read_varint(buf) {
        Some(-1) => true,
        Some(n) => match usize::try_from(n).ok().and_then(|n| buf.get(n..)) {
            Some(rest) => {
                *buf = rest;
                true
            }
            None => false,
        },
        None => false,
    }
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

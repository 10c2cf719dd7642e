//! The record format of the internal offsets topic (`__consumer_offsets`): one record per
//! committed partition, keyed by (group, topic, partition); a null value deletes the entry.
//! Replaying a partition of the topic from its start rebuilds every group it holds; the last
//! record per key wins (as in Kafka's compacted topic of the same name). See
//! docs/consumer-groups.md for why offsets live here rather than in Iggy's consumer offsets.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::backend::StoredRecord;

/// Name of the internal topic, as Kafka calls it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const FORMAT_VERSION: u8 = 1;
const KIND_OFFSET: u8 = 1;

/// What a group committed for one partition. `offset` is Kafka's: the next record to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// Wall-clock commit time in ms, as the client sees it in OffsetFetch.
    pub commit_timestamp_ms: i64,
    /// When this entry was last written to the log (the record's timestamp); offsets of
    /// groups without members expire from it.
    pub written_ms: i64,
}

/// One entry of the log: a commit, or the deletion of a commit (`offset: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: Option<CommittedOffset>,
}

/// Error for a record this version cannot read (written by a newer proxy, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("unreadable offsets record: {0}")]
pub struct FormatError(&'static str);

impl OffsetEntry {
    pub fn to_record(&self) -> StoredRecord {
        let mut key = BytesMut::with_capacity(10 + self.group.len() + self.topic.len());
        key.put_u8(FORMAT_VERSION);
        key.put_u8(KIND_OFFSET);
        put_str(&mut key, &self.group);
        put_str(&mut key, &self.topic);
        key.put_i32(self.partition);
        let value = self.offset.as_ref().map(|c| {
            let metadata = c.metadata.as_deref();
            let mut v = BytesMut::with_capacity(25 + metadata.map_or(0, str::len));
            v.put_u8(FORMAT_VERSION);
            v.put_i64(c.offset);
            v.put_i32(c.leader_epoch);
            v.put_i64(c.commit_timestamp_ms);
            match metadata {
                Some(m) => {
                    v.put_i32(m.len() as i32);
                    v.put_slice(m.as_bytes());
                }
                None => v.put_i32(-1),
            }
            v.freeze()
        });
        StoredRecord {
            key: Some(key.freeze()),
            value,
            headers: Vec::new(),
            timestamp_ms: self.offset.as_ref().map_or_else(now_ms, |c| c.written_ms),
        }
    }

    pub fn from_record(record: &StoredRecord) -> Result<Self, FormatError> {
        let mut key = record.key.clone().ok_or(FormatError("no key"))?;
        if key.remaining() < 2 || key.get_u8() != FORMAT_VERSION || key.get_u8() != KIND_OFFSET {
            return Err(FormatError("unknown key version or kind"));
        }
        let group = get_str(&mut key)?;
        let topic = get_str(&mut key)?;
        if key.remaining() != 4 {
            return Err(FormatError("bad partition"));
        }
        let partition = key.get_i32();
        let offset = match &record.value {
            None => None,
            Some(value) => Some(decode_value(value.clone(), record.timestamp_ms)?),
        };
        Ok(Self {
            group,
            topic,
            partition,
            offset,
        })
    }
}

fn decode_value(mut v: Bytes, written_ms: i64) -> Result<CommittedOffset, FormatError> {
    if v.remaining() < 25 || v.get_u8() != FORMAT_VERSION {
        return Err(FormatError("unknown value version"));
    }
    let offset = v.get_i64();
    let leader_epoch = v.get_i32();
    let commit_timestamp_ms = v.get_i64();
    let len = v.get_i32();
    let metadata = if len < 0 {
        None
    } else {
        let len = len as usize;
        if v.remaining() < len {
            return Err(FormatError("truncated metadata"));
        }
        Some(
            String::from_utf8(v.split_to(len).to_vec())
                .map_err(|_| FormatError("metadata is not UTF-8"))?,
        )
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        written_ms,
    })
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Group ids and topic names are bounded well below 64 KiB by the handlers.
    buf.put_u16(s.len().min(u16::MAX as usize) as u16);
    buf.put_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

fn get_str(buf: &mut Bytes) -> Result<String, FormatError> {
    if buf.remaining() < 2 {
        return Err(FormatError("truncated string length"));
    }
    let len = buf.get_u16() as usize;
    if buf.remaining() < len {
        return Err(FormatError("truncated string"));
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| FormatError("string is not UTF-8"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: Option<CommittedOffset>) -> OffsetEntry {
        OffsetEntry {
            group: "g-ü".into(),
            topic: "orders".into(),
            partition: 5,
            offset,
        }
    }

    #[test]
    fn round_trips_commits_and_deletions() {
        for metadata in [None, Some(String::new()), Some("m".repeat(4096))] {
            let e = entry(Some(CommittedOffset {
                offset: 42,
                leader_epoch: -1,
                metadata,
                commit_timestamp_ms: 1_700_000_000_000,
                written_ms: 1_700_000_000_500,
            }));
            assert_eq!(OffsetEntry::from_record(&e.to_record()).unwrap(), e);
        }
        let deletion = entry(None);
        let record = deletion.to_record();
        assert!(record.value.is_none());
        assert_eq!(OffsetEntry::from_record(&record).unwrap(), deletion);
    }

    #[test]
    fn keys_of_different_groups_differ() {
        // No hashing: the full group id is in the key, so groups never share entries.
        let a = entry(None).to_record().key;
        let mut other = entry(None);
        other.group = "g-u".into();
        assert_ne!(a, other.to_record().key);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let good = entry(Some(CommittedOffset {
            offset: 1,
            leader_epoch: 0,
            metadata: Some("x".into()),
            commit_timestamp_ms: 0,
            written_ms: 0,
        }))
        .to_record();
        let key = good.key.clone().unwrap();
        let value = good.value.clone().unwrap();
        for cut in 0..key.len() {
            let mut r = good.clone();
            r.key = Some(key.slice(..cut));
            assert!(OffsetEntry::from_record(&r).is_err());
        }
        for cut in 0..value.len() {
            let mut r = good.clone();
            r.value = Some(value.slice(..cut));
            assert!(OffsetEntry::from_record(&r).is_err());
        }
    }
}

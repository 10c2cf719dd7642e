//! The record format of the internal offsets topic (`__consumer_offsets`): one record per
//! committed partition, keyed by (group, topic, partition), a null value deleting the entry;
//! and one record per group with its last generation and members ([`GroupSnapshot`], keyed by
//! the group), as Kafka's GroupMetadata records. Replaying a partition of the topic from its
//! start rebuilds every group it holds; the last record per key wins (as in Kafka's compacted
//! topic of the same name). See docs/consumer-groups.md for why offsets live here rather than
//! in Iggy's consumer offsets.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::backend::StoredRecord;

/// Name of the internal topic, as Kafka calls it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const FORMAT_VERSION: u8 = 1;
const KIND_OFFSET: u8 = 1;
const KIND_GROUP: u8 = 2;

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

/// A group's generation as it stood when it last became Stable or Empty: what a coordinator
/// taking the group over (another replica, or this one after a restart) needs so that members
/// keep their generation and assignment instead of rebalancing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Empty for an Empty group.
    pub members: Vec<MemberSnapshot>,
    /// The record's timestamp (set when written, read back from the log).
    pub written_ms: i64,
}

/// One member of a [`GroupSnapshot`]: its subscription for the chosen protocol and its
/// assignment, as Kafka keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Any record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    Offset(OffsetEntry),
    Group(GroupSnapshot),
}

impl LogEntry {
    pub fn from_record(record: &StoredRecord) -> Result<Self, FormatError> {
        let kind = record.key.as_ref().and_then(|k| k.get(1)).copied();
        match kind {
            Some(KIND_GROUP) => GroupSnapshot::from_record(record).map(Self::Group),
            _ => OffsetEntry::from_record(record).map(Self::Offset),
        }
    }
}

impl GroupSnapshot {
    pub fn to_record(&self) -> StoredRecord {
        let mut key = BytesMut::with_capacity(4 + self.group.len());
        key.put_u8(FORMAT_VERSION);
        key.put_u8(KIND_GROUP);
        put_str(&mut key, &self.group);
        let mut v = BytesMut::new();
        v.put_u8(FORMAT_VERSION);
        v.put_i32(self.generation);
        put_opt_str(&mut v, self.protocol_type.as_deref());
        put_opt_str(&mut v, self.protocol.as_deref());
        put_opt_str(&mut v, self.leader.as_deref());
        v.put_u32(self.members.len() as u32);
        for m in &self.members {
            put_str(&mut v, &m.id);
            put_opt_str(&mut v, m.instance_id.as_deref());
            put_str(&mut v, &m.client_id);
            put_str(&mut v, &m.client_host);
            v.put_i32(m.session_timeout_ms);
            v.put_i32(m.rebalance_timeout_ms);
            put_bytes(&mut v, &m.subscription);
            put_bytes(&mut v, &m.assignment);
        }
        StoredRecord {
            key: Some(key.freeze()),
            value: Some(v.freeze()),
            headers: Vec::new(),
            timestamp_ms: self.written_ms,
        }
    }

    fn from_record(record: &StoredRecord) -> Result<Self, FormatError> {
        let mut key = record.key.clone().ok_or(FormatError("no key"))?;
        if key.remaining() < 2 || key.get_u8() != FORMAT_VERSION || key.get_u8() != KIND_GROUP {
            return Err(FormatError("unknown key version or kind"));
        }
        let group = get_str(&mut key)?;
        let mut v = record.value.clone().ok_or(FormatError("no group value"))?;
        if v.remaining() < 5 || v.get_u8() != FORMAT_VERSION {
            return Err(FormatError("unknown group value version"));
        }
        let generation = v.get_i32();
        let protocol_type = get_opt_str(&mut v)?;
        let protocol = get_opt_str(&mut v)?;
        let leader = get_opt_str(&mut v)?;
        if v.remaining() < 4 {
            return Err(FormatError("truncated member count"));
        }
        let count = v.get_u32() as usize;
        // Each member takes at least 24 bytes: a damaged count cannot make us allocate.
        let mut members = Vec::with_capacity(count.min(v.remaining() / 24));
        for _ in 0..count {
            let id = get_str(&mut v)?;
            let instance_id = get_opt_str(&mut v)?;
            let client_id = get_str(&mut v)?;
            let client_host = get_str(&mut v)?;
            if v.remaining() < 8 {
                return Err(FormatError("truncated timeouts"));
            }
            let session_timeout_ms = v.get_i32();
            let rebalance_timeout_ms = v.get_i32();
            members.push(MemberSnapshot {
                id,
                instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                subscription: get_bytes(&mut v)?,
                assignment: get_bytes(&mut v)?,
            });
        }
        Ok(Self {
            group,
            generation,
            protocol_type,
            protocol,
            leader,
            members,
            written_ms: record.timestamp_ms,
        })
    }
}

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

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
        None => buf.put_u8(0),
    }
}

fn get_opt_str(buf: &mut Bytes) -> Result<Option<String>, FormatError> {
    if buf.remaining() < 1 {
        return Err(FormatError("truncated optional string"));
    }
    match buf.get_u8() {
        0 => Ok(None),
        1 => get_str(buf).map(Some),
        _ => Err(FormatError("bad optional string marker")),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &Bytes) {
    buf.put_u32(b.len() as u32);
    buf.put_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, FormatError> {
    if buf.remaining() < 4 {
        return Err(FormatError("truncated bytes length"));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(FormatError("truncated bytes"));
    }
    Ok(buf.split_to(len))
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

    fn snapshot() -> GroupSnapshot {
        GroupSnapshot {
            group: "g-ü".into(),
            generation: 7,
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            members: vec![
                MemberSnapshot {
                    id: "m-1".into(),
                    instance_id: None,
                    client_id: "c".into(),
                    client_host: "/10.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 300_000,
                    subscription: Bytes::from_static(b"\0\x01sub"),
                    assignment: Bytes::from_static(b"assigned"),
                },
                MemberSnapshot {
                    id: "m-2".into(),
                    instance_id: Some("pod-2".into()),
                    client_id: String::new(),
                    client_host: "/10.0.0.2".into(),
                    session_timeout_ms: 6_000,
                    rebalance_timeout_ms: 60_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
            written_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn group_snapshots_round_trip_beside_offsets() {
        let s = snapshot();
        assert_eq!(
            LogEntry::from_record(&s.to_record()).unwrap(),
            LogEntry::Group(s.clone())
        );
        let empty = GroupSnapshot {
            members: Vec::new(),
            protocol: None,
            leader: None,
            ..s
        };
        assert_eq!(
            LogEntry::from_record(&empty.to_record()).unwrap(),
            LogEntry::Group(empty)
        );
        let commit = entry(None);
        assert_eq!(
            LogEntry::from_record(&commit.to_record()).unwrap(),
            LogEntry::Offset(commit)
        );
    }

    #[test]
    fn damaged_group_snapshots_are_errors_not_panics() {
        let good = snapshot().to_record();
        let value = good.value.clone().unwrap();
        for cut in 0..value.len() {
            let mut r = good.clone();
            r.value = Some(value.slice(..cut));
            assert!(LogEntry::from_record(&r).is_err(), "cut at {cut}");
        }
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

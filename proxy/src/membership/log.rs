//! The membership log's record format: one JSON object per record, so that an operator can
//! read the log with any Kafka or Iggy consumer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::view::{Entry, ListenerAddresses, MemberId};
use crate::backend::StoredRecord;

/// The internal topic (one partition) replicas announce themselves in.
pub const MEMBERS_TOPIC: &str = "__kafka_iggy_members";

const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    v: u8,
    kind: Kind,
    broker_id: i32,
    incarnation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<i32>,
    /// Per-listener addresses (listener name → host, port); added after format 1 shipped,
    /// optional so that replicas of either version read each other's heartbeats.
    #[serde(default, skip_serializing_if = "ListenerAddresses::is_empty")]
    listeners: ListenerAddresses,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joined_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<(i64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Heartbeat,
    Leave,
}

pub fn to_record(entry: &Entry, now_ms: i64) -> StoredRecord {
    let wire = match entry {
        Entry::Heartbeat {
            id,
            host,
            port,
            listeners,
            joined_at,
            previous,
            applied,
        } => Wire {
            v: FORMAT_VERSION,
            kind: Kind::Heartbeat,
            broker_id: id.broker_id,
            incarnation: id.incarnation,
            host: Some(host.clone()),
            port: Some(*port),
            listeners: listeners.clone(),
            joined_at: *joined_at,
            previous: *previous,
            applied: Some(*applied),
        },
        Entry::Leave { id } => Wire {
            v: FORMAT_VERSION,
            kind: Kind::Leave,
            broker_id: id.broker_id,
            incarnation: id.incarnation,
            host: None,
            port: None,
            listeners: ListenerAddresses::new(),
            joined_at: None,
            previous: None,
            applied: None,
        },
    };
    let value = serde_json::to_vec(&wire).unwrap_or_default();
    StoredRecord {
        key: Some(Bytes::from(wire.broker_id.to_string())),
        value: Some(Bytes::from(value)),
        headers: Vec::new(),
        timestamp_ms: now_ms,
    }
}

/// The entry a record holds; `None` for records this version cannot read (a newer format, or
/// something else written to the topic), which are skipped.
pub fn from_record(record: &StoredRecord) -> Option<Entry> {
    let wire: Wire = serde_json::from_slice(record.value.as_deref()?).ok()?;
    if wire.v != FORMAT_VERSION {
        return None;
    }
    let id = MemberId {
        broker_id: wire.broker_id,
        incarnation: wire.incarnation,
    };
    Some(match wire.kind {
        Kind::Heartbeat => Entry::Heartbeat {
            id,
            host: wire.host?,
            port: wire.port?,
            listeners: wire.listeners,
            joined_at: wire.joined_at,
            previous: wire.previous,
            applied: wire.applied?,
        },
        Kind::Leave => Entry::Leave { id },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_junk_is_skipped() {
        let id = MemberId {
            broker_id: 2,
            incarnation: u64::MAX,
        };
        let entries = [
            Entry::Heartbeat {
                id,
                host: "proxy-2.proxies".into(),
                port: 9092,
                listeners: [(
                    "SASL_SSL".to_string(),
                    super::super::view::Endpoint {
                        host: "proxy-2.example".into(),
                        port: 9093,
                    },
                )]
                .into(),
                joined_at: Some(7),
                previous: Some((9, 1_700_000_000_000)),
                applied: 12,
            },
            Entry::Heartbeat {
                id,
                host: "h".into(),
                port: 1,
                listeners: ListenerAddresses::new(),
                joined_at: None,
                previous: None,
                applied: -1,
            },
            Entry::Leave { id },
        ];
        for entry in entries {
            assert_eq!(from_record(&to_record(&entry, 5)), Some(entry));
        }
        let junk = |value: &[u8]| StoredRecord {
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            timestamp_ms: 0,
        };
        assert_eq!(from_record(&junk(b"not json")), None);
        // A heartbeat of a replica without listeners still reads.
        assert!(matches!(
            from_record(&junk(
                br#"{"v":1,"kind":"heartbeat","broker_id":1,"incarnation":1,"host":"h","port":9092,"applied":3}"#
            )),
            Some(Entry::Heartbeat { listeners, .. }) if listeners.is_empty()
        ));
        assert_eq!(
            from_record(&junk(
                br#"{"v":2,"kind":"heartbeat","broker_id":1,"incarnation":1}"#
            )),
            None
        );
        assert_eq!(
            from_record(&junk(
                br#"{"v":1,"kind":"heartbeat","broker_id":1,"incarnation":1}"#
            )),
            None,
            "a heartbeat needs an address"
        );
    }
}

//! The record format of the topic state log: what the proxy knows about Kafka topics beyond
//! what Iggy holds (topic configs Iggy has no setting for, and log start offsets moved by
//! DeleteRecords). The last record per key wins, as in a compacted topic:
//!
//! - configs of a topic: key (1, topic), value the configs set at topic level; a null value
//!   means the topic is gone (its configs *and* its log start offsets are forgotten);
//! - log start of a partition: key (2, topic, partition), value the offset (only moves up).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::backend::StoredRecord;
use crate::groups::offsets_log::now_ms;

const FORMAT_VERSION: u8 = 1;
const KIND_CONFIGS: u8 = 1;
const KIND_LOG_START: u8 = 2;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEntry {
    /// The topic's configs are now these (replacing any before).
    Configs {
        topic: String,
        configs: BTreeMap<String, String>,
    },
    /// The topic was deleted or created anew: nothing known about it any more.
    Forget { topic: String },
    /// The partition's log start offset moved to `offset`.
    LogStart {
        topic: String,
        partition: u32,
        offset: i64,
    },
}

/// A record this version cannot read (written by a newer proxy, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("unreadable topic state record: {0}")]
pub struct FormatError(&'static str);

impl StateEntry {
    pub fn to_record(&self) -> StoredRecord {
        let mut key = BytesMut::new();
        key.put_u8(FORMAT_VERSION);
        let mut value = BytesMut::new();
        value.put_u8(FORMAT_VERSION);
        let value = match self {
            Self::Configs { topic, configs } => {
                key.put_u8(KIND_CONFIGS);
                put_str(&mut key, topic);
                value.put_u32(configs.len() as u32);
                for (name, v) in configs {
                    put_str(&mut value, name);
                    put_str(&mut value, v);
                }
                Some(value.freeze())
            }
            Self::Forget { topic } => {
                key.put_u8(KIND_CONFIGS);
                put_str(&mut key, topic);
                None
            }
            Self::LogStart {
                topic,
                partition,
                offset,
            } => {
                key.put_u8(KIND_LOG_START);
                put_str(&mut key, topic);
                key.put_u32(*partition);
                value.put_i64(*offset);
                Some(value.freeze())
            }
        };
        StoredRecord {
            key: Some(key.freeze()),
            value,
            headers: Vec::new(),
            timestamp_ms: now_ms(),
        }
    }

    pub fn from_record(record: &StoredRecord) -> Result<Self, FormatError> {
        let mut key = record.key.clone().ok_or(FormatError("no key"))?;
        if key.remaining() < 2 || key.get_u8() != FORMAT_VERSION {
            return Err(FormatError("unknown key version"));
        }
        let kind = key.get_u8();
        let topic = get_str(&mut key)?;
        let mut value = match &record.value {
            Some(v) => {
                let mut v = v.clone();
                if v.remaining() < 1 || v.get_u8() != FORMAT_VERSION {
                    return Err(FormatError("unknown value version"));
                }
                Some(v)
            }
            None => None,
        };
        match (kind, value.as_mut()) {
            (KIND_CONFIGS, None) if key.is_empty() => Ok(Self::Forget { topic }),
            (KIND_CONFIGS, Some(v)) if key.is_empty() => {
                if v.remaining() < 4 {
                    return Err(FormatError("truncated config count"));
                }
                let count = v.get_u32();
                let mut configs = BTreeMap::new();
                for _ in 0..count {
                    let name = get_str(v)?;
                    configs.insert(name, get_str(v)?);
                }
                Ok(Self::Configs { topic, configs })
            }
            (KIND_LOG_START, Some(v)) if key.remaining() == 4 && v.remaining() == 8 => {
                Ok(Self::LogStart {
                    topic,
                    partition: key.get_u32(),
                    offset: v.get_i64(),
                })
            }
            _ => Err(FormatError("unknown kind or bad length")),
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Topic and config names and values are far below 64 KiB (checked by the handlers).
    let len = s.len().min(u16::MAX as usize);
    buf.put_u16(len as u16);
    buf.put_slice(&s.as_bytes()[..len]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<StateEntry> {
        vec![
            StateEntry::Configs {
                topic: "t-ü".into(),
                configs: [("cleanup.policy".to_string(), "compact".to_string())].into(),
            },
            StateEntry::Configs {
                topic: "t".into(),
                configs: BTreeMap::new(),
            },
            StateEntry::Forget { topic: "t".into() },
            StateEntry::LogStart {
                topic: "t".into(),
                partition: 7,
                offset: 1 << 40,
            },
        ]
    }

    #[test]
    fn round_trips() {
        for e in entries() {
            assert_eq!(StateEntry::from_record(&e.to_record()).unwrap(), e);
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        for e in entries() {
            let good = e.to_record();
            let key = good.key.clone().unwrap();
            for cut in 0..key.len() {
                let mut r = good.clone();
                r.key = Some(key.slice(..cut));
                assert!(StateEntry::from_record(&r).is_err());
            }
            if let Some(value) = good.value.clone() {
                for cut in 0..value.len() {
                    let mut r = good.clone();
                    r.value = Some(value.slice(..cut));
                    assert!(StateEntry::from_record(&r).is_err(), "{e:?} cut {cut}");
                }
            }
        }
    }
}

//! Kafka topic configs: which names exist, what values Kafka accepts, and how they split
//! between what Iggy holds itself (retention.ms as message expiry, retention.bytes as maximum
//! topic size) and what the proxy keeps in its topic state log (everything else, reported back
//! as given). See docs/frameworks.md.
//!
//! A name Kafka does not know, or a value Kafka would refuse, is an error (INVALID_CONFIG);
//! anything Kafka accepts is accepted, with one exception: message.timestamp.type=LogAppendTime,
//! which the proxy cannot honour (timestamps are the producer's).

use std::collections::BTreeMap;

/// `ConfigType` values of DescribeConfigs v3+.
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_DOUBLE: i8 = 6;
pub const TYPE_LIST: i8 = 7;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";

/// What values a config takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int {
        min: i64,
    },
    Long {
        min: i64,
    },
    Ratio,
    /// One of these.
    Choice(&'static [&'static str]),
    /// A non-empty comma-separated list of distinct items from these.
    Subset(&'static [&'static str]),
    /// A comma-separated list of anything (replica lists).
    List,
}

/// One Kafka topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    kind: Kind,
    /// Kafka's default, as DescribeConfigs reports it.
    pub default: &'static str,
}

impl ConfigDef {
    pub fn config_type(&self) -> i8 {
        match self.kind {
            Kind::Bool => TYPE_BOOLEAN,
            Kind::Int { .. } => TYPE_INT,
            Kind::Long { .. } => TYPE_LONG,
            Kind::Ratio => TYPE_DOUBLE,
            Kind::Choice(_) => TYPE_STRING,
            Kind::Subset(_) | Kind::List => TYPE_LIST,
        }
    }

    /// Whether IncrementalAlterConfigs may APPEND to or SUBTRACT from it.
    pub fn is_list(&self) -> bool {
        matches!(self.kind, Kind::Subset(_) | Kind::List)
    }
}

const fn def(name: &'static str, kind: Kind, default: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
    }
}

const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Kafka 4 topic configs (`TopicConfig` and `LogConfig`), with Kafka's bounds.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        Kind::Subset(&["compact", "delete"]),
        "delete",
    ),
    def("compression.type", Kind::Choice(COMPRESSION), "producer"),
    def("compression.gzip.level", Kind::Int { min: -1 }, "-1"),
    def("compression.lz4.level", Kind::Int { min: 1 }, "9"),
    def("compression.zstd.level", Kind::Int { min: -131072 }, "3"),
    def("delete.retention.ms", Kind::Long { min: 0 }, "86400000"),
    def("file.delete.delay.ms", Kind::Long { min: 0 }, "60000"),
    def(
        "flush.messages",
        Kind::Long { min: 1 },
        "9223372036854775807",
    ),
    def("flush.ms", Kind::Long { min: 0 }, "9223372036854775807"),
    def("follower.replication.throttled.replicas", Kind::List, ""),
    def("index.interval.bytes", Kind::Int { min: 0 }, "4096"),
    def("leader.replication.throttled.replicas", Kind::List, ""),
    def("local.retention.bytes", Kind::Long { min: -2 }, "-2"),
    def("local.retention.ms", Kind::Long { min: -2 }, "-2"),
    def(
        "max.compaction.lag.ms",
        Kind::Long { min: 1 },
        "9223372036854775807",
    ),
    def("max.message.bytes", Kind::Int { min: 0 }, "1048588"),
    def(
        "message.timestamp.after.max.ms",
        Kind::Long { min: 0 },
        "3600000",
    ),
    def(
        "message.timestamp.before.max.ms",
        Kind::Long { min: 0 },
        "9223372036854775807",
    ),
    def(
        "message.timestamp.type",
        Kind::Choice(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
    ),
    def("min.cleanable.dirty.ratio", Kind::Ratio, "0.5"),
    def("min.compaction.lag.ms", Kind::Long { min: 0 }, "0"),
    def("min.insync.replicas", Kind::Int { min: 1 }, "1"),
    def("preallocate", Kind::Bool, "false"),
    def("remote.log.copy.disable", Kind::Bool, "false"),
    def("remote.log.delete.on.disable", Kind::Bool, "false"),
    def("remote.storage.enable", Kind::Bool, "false"),
    def(RETENTION_BYTES, Kind::Long { min: i64::MIN }, "-1"),
    def(RETENTION_MS, Kind::Long { min: -1 }, "-1"),
    def(
        "segment.bytes",
        Kind::Int { min: 1024 * 1024 },
        "1073741824",
    ),
    def("segment.index.bytes", Kind::Int { min: 4 }, "10485760"),
    def("segment.jitter.ms", Kind::Long { min: 0 }, "0"),
    def("segment.ms", Kind::Long { min: 1 }, "604800000"),
    def("unclean.leader.election.enable", Kind::Bool, "false"),
];

pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one config as Kafka would and returns the value to keep (list items trimmed).
pub fn validate(name: &str, value: &str) -> Result<String, String> {
    let def = lookup(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = |why: &str| format!("Invalid value {value} for configuration {name}: {why}");
    let number = |min: i64, max: i64| -> Result<String, String> {
        let n: i64 = value.trim().parse().map_err(|_| bad("Not a number"))?;
        if n < min || n > max {
            return Err(bad(&format!("Value must be at least {min}")));
        }
        Ok(n.to_string())
    };
    match def.kind {
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => Err(bad("Expected value to be either true or false")),
        },
        Kind::Int { min } => number(min, i64::from(i32::MAX)),
        Kind::Long { min } => number(min, i64::MAX),
        Kind::Ratio => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(value.trim().to_string()),
            _ => Err(bad("Value must be a number between 0 and 1")),
        },
        Kind::Choice(choices) => choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(value.trim()))
            .map(|c| c.to_string())
            .ok_or_else(|| bad(&format!("String must be one of: {}", choices.join(", ")))),
        Kind::Subset(choices) => {
            let items = split_list(value);
            if items.is_empty() {
                return Err(bad("Empty list"));
            }
            for item in &items {
                if !choices.contains(&item.as_str()) {
                    return Err(bad(&format!(
                        "String must be one of: {}",
                        choices.join(", ")
                    )));
                }
            }
            Ok(items.join(","))
        }
        Kind::List => Ok(split_list(value).join(",")),
    }
}

/// Items of a comma-separated list, trimmed, empty items and repeats dropped.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if !items.iter().any(|i| i == item) {
            items.push(item.to_string());
        }
    }
    items
}

/// A topic's configs set at topic level (as opposed to Kafka's defaults), split by who keeps
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    /// retention.ms, held by Iggy as the topic's message expiry (`None`: default).
    pub retention_ms: Option<i64>,
    /// retention.bytes, held by Iggy as the topic's maximum size (`None`: default).
    pub retention_bytes: Option<i64>,
    /// Every other config, kept by the proxy and reported back as given.
    pub kept: BTreeMap<String, String>,
}

impl TopicConfigs {
    /// Validates and sorts configs given at creation or by AlterConfigs. A null value leaves
    /// the config at its default.
    pub fn parse<'a>(
        configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        for (name, value) in configs {
            match value {
                Some(value) => out.set(name, value)?,
                None => {
                    lookup(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
                }
            }
        }
        Ok(out)
    }

    /// Sets one config after validating it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let value = validate(name, value)?;
        match name {
            RETENTION_MS => self.retention_ms = value.parse().ok(),
            RETENTION_BYTES => self.retention_bytes = value.parse().ok(),
            "message.timestamp.type" if value == "LogAppendTime" => {
                return Err(
                    "message.timestamp.type=LogAppendTime is not supported by the Iggy proxy \
                     (record timestamps are the producer's)"
                        .into(),
                )
            }
            _ => {
                self.kept.insert(name.to_string(), value);
            }
        }
        Ok(())
    }

    /// Puts one config back to its default.
    pub fn unset(&mut self, name: &str) -> Result<(), String> {
        lookup(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
        match name {
            RETENTION_MS => self.retention_ms = None,
            RETENTION_BYTES => self.retention_bytes = None,
            _ => {
                self.kept.remove(name);
            }
        }
        Ok(())
    }

    /// The value set at topic level, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        match name {
            RETENTION_MS => self.retention_ms.map(|v| v.to_string()),
            RETENTION_BYTES => self.retention_bytes.map(|v| v.to_string()),
            _ => self.kept.get(name).cloned(),
        }
    }

    /// Iggy's maximum topic size for retention.bytes (`None`: unlimited or unset).
    pub fn iggy_max_bytes(&self) -> Option<u64> {
        self.retention_bytes
            .and_then(|b| u64::try_from(b).ok())
            .filter(|b| *b > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<TopicConfigs, String> {
        TopicConfigs::parse(pairs.iter().map(|(k, v)| (*k, Some(*v))))
    }

    #[test]
    fn accepts_what_kafka_accepts() {
        let c = parse(&[
            ("cleanup.policy", "compact, delete"),
            ("retention.ms", "60000"),
            ("retention.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
            ("segment.ms", "100"),
            ("min.compaction.lag.ms", "0"),
            ("max.compaction.lag.ms", "1000"),
            ("message.timestamp.type", "CreateTime"),
            ("unclean.leader.election.enable", "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.retention_ms, Some(60000));
        assert_eq!(c.iggy_max_bytes(), Some(1_048_576));
        assert_eq!(c.get("cleanup.policy").as_deref(), Some("compact,delete"));
        assert_eq!(
            c.get("unclean.leader.election.enable").as_deref(),
            Some("true")
        );
        assert!(!c.kept.contains_key(RETENTION_MS));
        assert_eq!(
            parse(&[("cleanup.policy", "compact")]).unwrap().kept["cleanup.policy"],
            "compact"
        );
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        for (name, value) in [
            ("cleanup.policy", "shrink"),
            ("cleanup.policy", ""),
            ("retention.ms", "soon"),
            ("retention.ms", "-2"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("segment.ms", "0"),
            ("max.message.bytes", "99999999999"),
            ("compression.type", "brotli"),
            ("preallocate", "yes"),
            ("bogus", "1"),
            ("message.timestamp.type", "LogAppendTime"),
        ] {
            assert!(parse(&[(name, value)]).is_err(), "{name}={value}");
        }
        assert!(TopicConfigs::parse([("bogus", None)].into_iter()).is_err());
    }

    #[test]
    fn unset_returns_to_default() {
        let mut c = parse(&[("cleanup.policy", "compact"), ("retention.ms", "5")]).unwrap();
        c.unset("cleanup.policy").unwrap();
        c.unset("retention.ms").unwrap();
        assert_eq!(c, TopicConfigs::default());
        assert!(c.unset("bogus").is_err());
    }

    #[test]
    fn lists_are_lists() {
        assert!(lookup("cleanup.policy").unwrap().is_list());
        assert!(!lookup("retention.ms").unwrap().is_list());
        assert_eq!(split_list(" a, ,b,a"), vec!["a", "b"]);
    }
}

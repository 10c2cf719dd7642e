//! What an Iggy user may do, in Kafka's terms.
//!
//! Iggy 0.8 permissions are global flags plus per-stream and per-topic flags keyed by numeric
//! ids; the Iggy back end resolves the ids to names and this module folds the flags into the
//! four topic operations Kafka's authorizer knows (Describe, Read, Write, and Create/Delete/
//! Alter as "manage"), following the inclusions Iggy documents: `manage_*` includes `read_*`,
//! which includes `poll_messages`; `send_messages` stands alone; stream-level flags cover every
//! topic of the stream; and, as in Kafka, any right on a topic lets the user describe it.

use std::collections::BTreeMap;

use iggy::prelude::{GlobalPermissions, StreamPermissions, TopicPermissions};

/// Operations on one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rights {
    /// See it in Metadata, list its offsets and configs.
    pub describe: bool,
    /// Fetch from it (Iggy `poll_messages`).
    pub read: bool,
    /// Produce to it (Iggy `send_messages`).
    pub write: bool,
    /// Create, delete, grow, alter, trim it (Iggy `manage_topic(s)`).
    pub manage: bool,
}

impl Rights {
    pub const ALL: Rights = Rights {
        describe: true,
        read: true,
        write: true,
        manage: true,
    };

    fn union(self, other: Rights) -> Rights {
        Rights {
            describe: self.describe || other.describe,
            read: self.read || other.read,
            write: self.write || other.write,
            manage: self.manage || other.manage,
        }
    }

    /// From Iggy's flags: (manage, read, poll, send).
    fn from_flags(manage: bool, read: bool, poll: bool, send: bool) -> Rights {
        let read_any = manage || read || poll;
        Rights {
            describe: manage || read || poll || send,
            read: read_any,
            write: send,
            manage,
        }
    }
}

/// One Iggy stream's rights, and those of its topics by Iggy topic name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamGrants {
    pub rights: Rights,
    pub topics: BTreeMap<String, Rights>,
}

/// An Iggy user's rights with stream and topic names resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// On every stream and topic.
    pub global: Rights,
    pub streams: BTreeMap<String, StreamGrants>,
    /// Iggy `read_servers` (Kafka's Describe on the cluster).
    pub cluster_describe: bool,
    /// Iggy `manage_servers` (Kafka's Alter on the cluster).
    pub cluster_alter: bool,
    /// Where Kafka topics live: the default stream, and Kafka topic → (stream, topic)
    /// overrides (the proxy's `topics` mapping).
    pub default_stream: String,
    pub overrides: BTreeMap<String, (String, String)>,
}

impl Grants {
    /// Everything: the memory back end has no users.
    pub fn everything() -> Self {
        Self {
            global: Rights::ALL,
            streams: BTreeMap::new(),
            cluster_describe: true,
            cluster_alter: true,
            ..Self::default()
        }
    }

    pub fn from_global(g: &GlobalPermissions) -> Self {
        let manage = g.manage_streams || g.manage_topics;
        let read = g.read_streams || g.read_topics;
        Self {
            global: Rights::from_flags(manage, read, g.poll_messages, g.send_messages),
            streams: BTreeMap::new(),
            cluster_describe: g.read_servers || g.manage_servers,
            cluster_alter: g.manage_servers,
            ..Self::default()
        }
    }

    /// Adds a stream's permissions; `topic_name` resolves its topic ids.
    pub fn add_stream(
        &mut self,
        stream: String,
        p: &StreamPermissions,
        topic_name: impl Fn(usize) -> Option<String>,
    ) {
        let manage = p.manage_stream || p.manage_topics;
        let read = p.read_stream || p.read_topics;
        let mut grants = StreamGrants {
            rights: Rights::from_flags(manage, read, p.poll_messages, p.send_messages),
            topics: BTreeMap::new(),
        };
        for (id, t) in p.topics.iter().flatten() {
            if let Some(name) = topic_name(*id) {
                grants.topics.insert(name, topic_rights(t));
            }
        }
        self.streams.insert(stream, grants);
    }

    /// Rights on Iggy topic `topic` of stream `stream`.
    pub fn topic(&self, stream: &str, topic: &str) -> Rights {
        let Some(s) = self.streams.get(stream) else {
            return self.global;
        };
        let on_topic = s.topics.get(topic).copied().unwrap_or_default();
        self.global.union(s.rights).union(on_topic)
    }

    /// Rights on every topic of `stream` (what creating a topic there needs).
    pub fn stream(&self, stream: &str) -> Rights {
        self.streams
            .get(stream)
            .map_or(self.global, |s| self.global.union(s.rights))
    }

    /// The Iggy stream and topic of Kafka topic `kafka`.
    pub fn locate<'a>(&'a self, kafka: &'a str) -> (&'a str, &'a str) {
        match self.overrides.get(kafka) {
            Some((stream, topic)) => (stream, topic),
            None => (&self.default_stream, kafka),
        }
    }

    /// Rights on Kafka topic `kafka`.
    pub fn kafka_topic(&self, kafka: &str) -> Rights {
        let (stream, topic) = self.locate(kafka);
        self.topic(stream, topic)
    }

    /// Whether Kafka topic `kafka` may be created: Iggy creates topics with the stream's
    /// `manage_topics`.
    pub fn may_create(&self, kafka: &str) -> bool {
        self.stream(self.locate(kafka).0).manage
    }

    /// Whether the user may read anything at all: consumer groups (which Iggy permissions do
    /// not name) are open to users that may read some topic.
    pub fn reads_anything(&self) -> bool {
        self.global.read
            || self
                .streams
                .values()
                .any(|s| s.rights.read || s.topics.values().any(|t| t.read))
    }
}

fn topic_rights(t: &TopicPermissions) -> Rights {
    Rights::from_flags(
        t.manage_topic,
        t.read_topic,
        t.poll_messages,
        t.send_messages,
    )
}

//! The one version table. ApiVersions is rendered from it and every request is checked against
//! it before its body is decoded, so what we advertise is exactly what we decode.

use kafka_protocol::messages::ApiKey;

/// One served API: the versions we decode, handle and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version actually decoded. Below it (but at or above `advertised_min`) the request
    /// is refused by closing the connection, as Kafka 4 does for removed versions.
    pub decoded_min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        advertised_min: min,
        decoded_min: min,
        max,
    }
}

/// Served APIs. Versions above these use topic ids in places we do not resolve yet (Produce v13,
/// Fetch v13+) or were not tested with real clients.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    // Produce v0-v2 carry message sets v0/v1, which kafka-protocol cannot decode. Kafka 4 brokers
    // still advertise v0 because librdkafka only enables gzip/snappy/lz4 when Produce v0 is
    // advertised (KAFKA-18659); we do the same and refuse v0-v2 requests.
    ApiSupport {
        key: ApiKey::Produce,
        advertised_min: 0,
        decoded_min: 3,
        max: 11,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 9),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::ElectLeaders, 0, 2),
    // v0-1 are removed in Kafka 4 (KIP-896); v2 adds the current leader epoch.
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    // Consumer groups, classic protocol. ConsumerGroupHeartbeat (KIP-848) is not served: a
    // broker without it does not advertise it, and clients then use the classic protocol.
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // SASL (KIP-43, KIP-152). Handshake v0 would be followed by raw, unframed SASL tokens,
    // which the proxy does not read: v0 is refused. It is advertised all the same because
    // librdkafka before 2.x enables SASL only when SaslHandshake v0 is (it then uses v1 with
    // SaslAuthenticate, as every client in the suite does).
    ApiSupport {
        key: ApiKey::SaslHandshake,
        advertised_min: 0,
        decoded_min: 1,
        max: 1,
    },
    api(ApiKey::SaslAuthenticate, 0, 2),
    // Read-only: what the principal's Iggy permissions amount to (docs/security.md).
    api(ApiKey::DescribeAcls, 1, 3),
];

/// The served range for `key`, if any.
pub fn support(key: ApiKey) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|s| s.key == key)
}

/// How a request with this key and version must be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    Supported,
    /// Kafka answers ApiVersions it cannot parse with an UNSUPPORTED_VERSION v0 response listing
    /// what it supports (KIP-511).
    ApiVersionsFallback,
    /// Anything else unsupported: the broker closes the connection.
    Close,
}

pub fn check(key: ApiKey, version: i16) -> VersionCheck {
    match support(key) {
        Some(s) if version >= s.decoded_min && version <= s.max => VersionCheck::Supported,
        _ if key == ApiKey::ApiVersions => VersionCheck::ApiVersionsFallback,
        _ => VersionCheck::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions_are_within_what_kafka_protocol_knows() {
        for s in SUPPORTED_APIS {
            let known = s.key.valid_versions();
            assert!(s.decoded_min >= known.min, "{:?} min", s.key);
            assert!(s.max <= known.max, "{:?} max", s.key);
            assert!(s.advertised_min <= s.decoded_min, "{:?}", s.key);
        }
    }

    #[test]
    fn each_key_listed_once() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            for b in &SUPPORTED_APIS[i + 1..] {
                assert_ne!(a.key, b.key);
            }
        }
    }

    #[test]
    fn checks() {
        assert_eq!(check(ApiKey::Produce, 9), VersionCheck::Supported);
        assert_eq!(check(ApiKey::Produce, 2), VersionCheck::Close);
        assert_eq!(check(ApiKey::Produce, 12), VersionCheck::Close);
        assert_eq!(
            check(ApiKey::ApiVersions, 99),
            VersionCheck::ApiVersionsFallback
        );
        assert_eq!(check(ApiKey::JoinGroup, 5), VersionCheck::Supported);
        assert_eq!(
            check(ApiKey::ConsumerGroupHeartbeat, 0),
            VersionCheck::Close
        );
    }
}

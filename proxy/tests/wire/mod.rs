//! A minimal Kafka wire client for protocol tests: raw frames in, typed responses out.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_iggy_proxy::backend::memory::MemoryBackend;
use kafka_iggy_proxy::config::{BackendKind, IggyTls, ProxyConfig};
use kafka_iggy_proxy::metrics::Metrics;
use kafka_iggy_proxy::Proxy;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a test proxy: Kafka and metrics listeners on free ports, the rest default.
pub fn local_config(backend: BackendKind) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        backend,
        metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..ProxyConfig::default()
    }
}

/// Starts a proxy with `config`; the memory back end is a fresh, empty one.
pub async fn start_configured(config: ProxyConfig) -> anyhow::Result<Proxy> {
    match config.backend {
        BackendKind::Memory => {
            let backend = Arc::new(MemoryBackend::new());
            Proxy::start_with_backend(config, backend, Arc::new(Metrics::new())).await
        }
        BackendKind::Iggy => Proxy::start(config).await,
    }
}

/// A proxy on the memory back end, on a free port.
pub async fn start_memory_proxy() -> Proxy {
    start_configured(local_config(BackendKind::Memory))
        .await
        .expect("proxy starts")
}

/// A proxy on real Iggy at `address` (root credentials), on a free port.
pub async fn start_iggy_proxy(address: &str) -> Proxy {
    start_iggy_proxy_with(address, IggyTls::default())
        .await
        .expect("proxy starts on Iggy")
}

/// [`start_iggy_proxy`] with TLS settings; startup errors are returned, not panicked on.
pub async fn start_iggy_proxy_with(address: &str, tls: IggyTls) -> anyhow::Result<Proxy> {
    let mut config = local_config(BackendKind::Iggy);
    config.iggy.address = address.to_string();
    config.iggy.tls = tls;
    start_configured(config).await
}

/// GET `path` from the proxy's metrics listener; returns (status code, body).
pub async fn http_get(proxy: &Proxy, path: &str) -> (u16, String) {
    let addr = proxy.metrics_addr.expect("metrics listener");
    let mut stream = TcpStream::connect(addr).await.expect("connect metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub struct Wire {
    pub stream: TcpStream,
    correlation: i32,
}

impl Wire {
    /// Over a socket the test set up itself (for example with a tiny receive buffer).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            correlation: 0,
        }
    }

    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self {
            stream,
            correlation: 0,
        }
    }

    /// Encodes header + body for `key` at `version`; `None` if the crate cannot encode the
    /// default body at that version.
    pub fn encode_request(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Option<(i32, Bytes)> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("conformance")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .ok()?;
        body.encode(&mut buf, version).ok()?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Some((self.correlation, buf.freeze()))
    }

    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.expect("write");
    }

    /// Reads one response frame; `None` if the connection was closed.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        match tokio::time::timeout(IO_TIMEOUT, self.stream.read_exact(&mut size)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no response and no close within {IO_TIMEOUT:?}"),
        }
        let size = i32::from_be_bytes(size) as usize;
        let mut body = vec![0u8; size];
        tokio::time::timeout(IO_TIMEOUT, self.stream.read_exact(&mut body))
            .await
            .expect("frame body in time")
            .expect("frame body");
        Some(Bytes::from(body))
    }

    /// Decodes a response frame for `key`/`version` and checks the correlation id and that
    /// nothing trails the body.
    pub fn decode_response(
        key: ApiKey,
        version: i16,
        correlation: i32,
        mut frame: Bytes,
    ) -> ResponseKind {
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .unwrap_or_else(|e| panic!("{key:?} v{version}: bad response header: {e}"));
        assert_eq!(
            header.correlation_id, correlation,
            "{key:?} v{version}: correlation id"
        );
        let body = ResponseKind::decode(key, &mut frame, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: malformed response body: {e}"));
        assert!(
            frame.is_empty(),
            "{key:?} v{version}: {} trailing bytes in response",
            frame.len()
        );
        body
    }

    /// Sends a typed request and returns the typed response.
    pub async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let (correlation, frame) = self
            .encode_request(key, version, &body)
            .expect("encodable request");
        self.send_raw(&frame).await;
        let response = self
            .read_frame()
            .await
            .unwrap_or_else(|| panic!("{key:?} v{version}: connection closed"));
        Self::decode_response(key, version, correlation, response)
    }

    /// True once the peer has closed the connection (reads EOF or reset).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

// Generated from kafka-protocol 0.18's RequestKind variants: one default request per API key.
pub fn default_request(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(Default::default()),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(Default::default()),
        ApiKey::EndTxn => RequestKind::EndTxn(Default::default()),
        ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(Default::default()),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(Default::default()),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
        ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::AlterReplicaLogDirs => RequestKind::AlterReplicaLogDirs(Default::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(Default::default()),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::CreateDelegationToken => RequestKind::CreateDelegationToken(Default::default()),
        ApiKey::RenewDelegationToken => RequestKind::RenewDelegationToken(Default::default()),
        ApiKey::ExpireDelegationToken => RequestKind::ExpireDelegationToken(Default::default()),
        ApiKey::DescribeDelegationToken => RequestKind::DescribeDelegationToken(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::AlterPartitionReassignments => {
            RequestKind::AlterPartitionReassignments(Default::default())
        }
        ApiKey::ListPartitionReassignments => {
            RequestKind::ListPartitionReassignments(Default::default())
        }
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(Default::default()),
        ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(Default::default()),
        ApiKey::DescribeUserScramCredentials => {
            RequestKind::DescribeUserScramCredentials(Default::default())
        }
        ApiKey::AlterUserScramCredentials => {
            RequestKind::AlterUserScramCredentials(Default::default())
        }
        ApiKey::Vote => RequestKind::Vote(Default::default()),
        ApiKey::BeginQuorumEpoch => RequestKind::BeginQuorumEpoch(Default::default()),
        ApiKey::EndQuorumEpoch => RequestKind::EndQuorumEpoch(Default::default()),
        ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(Default::default()),
        ApiKey::AlterPartition => RequestKind::AlterPartition(Default::default()),
        ApiKey::UpdateFeatures => RequestKind::UpdateFeatures(Default::default()),
        ApiKey::Envelope => RequestKind::Envelope(Default::default()),
        ApiKey::FetchSnapshot => RequestKind::FetchSnapshot(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
        ApiKey::BrokerRegistration => RequestKind::BrokerRegistration(Default::default()),
        ApiKey::BrokerHeartbeat => RequestKind::BrokerHeartbeat(Default::default()),
        ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(Default::default()),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(Default::default()),
        ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
        ApiKey::AllocateProducerIds => RequestKind::AllocateProducerIds(Default::default()),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(Default::default()),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(Default::default()),
        ApiKey::ControllerRegistration => RequestKind::ControllerRegistration(Default::default()),
        ApiKey::GetTelemetrySubscriptions => {
            RequestKind::GetTelemetrySubscriptions(Default::default())
        }
        ApiKey::PushTelemetry => RequestKind::PushTelemetry(Default::default()),
        ApiKey::AssignReplicasToDirs => RequestKind::AssignReplicasToDirs(Default::default()),
        ApiKey::ListConfigResources => RequestKind::ListConfigResources(Default::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(Default::default()),
        ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(Default::default()),
        ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(Default::default()),
        ApiKey::ShareFetch => RequestKind::ShareFetch(Default::default()),
        ApiKey::ShareAcknowledge => RequestKind::ShareAcknowledge(Default::default()),
        ApiKey::AddRaftVoter => RequestKind::AddRaftVoter(Default::default()),
        ApiKey::RemoveRaftVoter => RequestKind::RemoveRaftVoter(Default::default()),
        ApiKey::UpdateRaftVoter => RequestKind::UpdateRaftVoter(Default::default()),
        ApiKey::InitializeShareGroupState => {
            RequestKind::InitializeShareGroupState(Default::default())
        }
        ApiKey::ReadShareGroupState => RequestKind::ReadShareGroupState(Default::default()),
        ApiKey::WriteShareGroupState => RequestKind::WriteShareGroupState(Default::default()),
        ApiKey::DeleteShareGroupState => RequestKind::DeleteShareGroupState(Default::default()),
        ApiKey::ReadShareGroupStateSummary => {
            RequestKind::ReadShareGroupStateSummary(Default::default())
        }
        ApiKey::DescribeShareGroupOffsets => {
            RequestKind::DescribeShareGroupOffsets(Default::default())
        }
        ApiKey::AlterShareGroupOffsets => RequestKind::AlterShareGroupOffsets(Default::default()),
        ApiKey::DeleteShareGroupOffsets => RequestKind::DeleteShareGroupOffsets(Default::default()),
    }
}

/// Typed helpers over `Wire` for behaviour tests.
pub mod ops {
    use super::*;
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    pub fn topic(name: &str) -> TopicName {
        TopicName(StrBytes::from_string(name.to_string()))
    }

    pub async fn create_topic(wire: &mut Wire, name: &str, partitions: i32) -> i16 {
        let request = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ]);
        let ResponseKind::CreateTopics(r) =
            wire.call(ApiKey::CreateTopics, 7, request.into()).await
        else {
            panic!("kind")
        };
        r.topics[0].error_code
    }

    /// Identity of an idempotent batch: (producer id, epoch, first sequence).
    pub type Idempotence = Option<(i64, i16, i32)>;

    pub fn batch(values: &[&str], idempotence: Idempotence, compression: Compression) -> Bytes {
        let (pid, epoch, seq) = idempotence.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch whenever offset - sequence changes; a produce
                // entry must be one batch, so non-idempotent records count from 0 as well
                // (the sequence is ignored without a producer id).
                sequence: seq.max(0) + i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{v}"))),
                value: Some(Bytes::from(v.to_string())),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode batch");
        buf.freeze()
    }

    /// Produces one batch; returns (error code, base offset).
    pub async fn produce(
        wire: &mut Wire,
        name: &str,
        partition: i32,
        records: Bytes,
    ) -> (i16, i64) {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic(name))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ])]);
        let ResponseKind::Produce(r) = wire.call(ApiKey::Produce, 9, request.into()).await else {
            panic!("kind")
        };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    pub struct Fetched {
        pub error_code: i16,
        pub high_watermark: i64,
        pub log_start_offset: i64,
        /// (offset, value)
        pub records: Vec<(i64, String)>,
    }

    pub async fn fetch(
        wire: &mut Wire,
        name: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> Fetched {
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(50 * 1024 * 1024)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024)])]);
        let ResponseKind::Fetch(r) = wire.call(ApiKey::Fetch, 12, request.into()).await else {
            panic!("kind")
        };
        let p = &r.responses[0].partitions[0];
        let mut records = Vec::new();
        if let Some(bytes) = &p.records {
            let mut bytes = bytes.clone();
            for set in RecordBatchDecoder::decode_all(&mut bytes).expect("decodable records") {
                for rec in set.records {
                    let value = rec
                        .value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default();
                    records.push((rec.offset, value));
                }
            }
        }
        Fetched {
            error_code: p.error_code,
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
            records,
        }
    }

    /// ListOffsets v7 for one partition; returns (error code, offset, timestamp).
    pub async fn list_offset(
        wire: &mut Wire,
        name: &str,
        partition: i32,
        timestamp: i64,
    ) -> (i16, i64, i64) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ])]);
        let ResponseKind::ListOffsets(r) = wire.call(ApiKey::ListOffsets, 7, request.into()).await
        else {
            panic!("kind")
        };
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    }

    pub async fn init_producer_id(
        wire: &mut Wire,
        transactional_id: Option<&str>,
    ) -> (i16, i64, i16) {
        bump_producer_epoch(wire, transactional_id, -1, -1).await
    }

    /// InitProducerId v4 carrying an existing producer id and epoch (KIP-360 epoch bump), or
    /// -1/-1 for a new producer.
    pub async fn bump_producer_epoch(
        wire: &mut Wire,
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
    ) -> (i16, i64, i16) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(
                transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
            )
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_timeout_ms(60000);
        let ResponseKind::InitProducerId(r) =
            wire.call(ApiKey::InitProducerId, 4, request.into()).await
        else {
            panic!("kind")
        };
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }
}

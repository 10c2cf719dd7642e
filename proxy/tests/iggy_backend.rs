//! `IggyBackend` against a real Iggy server: the binary named by `IGGY_SERVER_BIN`, started per
//! test with a fresh data directory. Without it every test prints a SKIPPED notice; `.ci/run`
//! then leaves out every test whose path contains `on_iggy` and says so.

mod support;

mod on_iggy {
    use super::support;

    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage, MessageClient, Partitioning};
    use iggy_testkit::IggyServer;
    use kafka_iggy_proxy::backend::iggy::{IggyBackend, IggyConfig, IggyTarget};
    use kafka_iggy_proxy::backend::{Backend, BackendError as E, ReadLimits, StoredRecord};
    use kafka_iggy_proxy::backend::{PartitionBounds, TopicSettings};
    use support::iggy_fixtures::*;

    #[tokio::test]
    async fn topics_are_created_listed_described_and_deleted() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        backend.health().await.expect("health");

        let hour = TopicSettings {
            partitions: 3,
            retention_ms: Some(3_600_000),
            max_bytes: None,
            ..TopicSettings::default()
        };
        backend.create_topic("orders", &hour).await.expect("create");
        let info = backend
            .describe_topic("orders")
            .await
            .expect("describe")
            .expect("exists");
        assert_eq!((info.name.as_str(), info.partitions), ("orders", 3));
        assert_eq!((info.retention_ms, info.max_bytes), (Some(3_600_000), None));
        let again = backend.create_topic("orders", &settings(3)).await;
        assert!(matches!(failure(again), E::TopicAlreadyExists(_)));
        let empty = backend.create_topic("none", &settings(0)).await;
        assert!(matches!(failure(empty), E::InvalidPartitions(_)));

        // Iggy caps a topic's size at no less than one segment (1 GiB by default).
        let sized = |max_bytes| TopicSettings {
            partitions: 1,
            retention_ms: None,
            max_bytes,
            ..TopicSettings::default()
        };
        let small = backend.create_topic("small", &sized(Some(1_000_000))).await;
        assert!(matches!(failure(small), E::InvalidRequest(_)));
        backend
            .create_topic("sized", &sized(Some(2 << 30)))
            .await
            .expect("create sized");
        let info = backend.describe_topic("sized").await.expect("describe");
        assert_eq!(info.and_then(|t| t.max_bytes), Some(2 << 30));
        backend.delete_topic("sized").await.expect("delete");

        // A numeric-looking name is a name, not an Iggy id.
        check.create("0", 1).await;
        assert_eq!(check.names().await, ["0", "orders"]);
        assert_eq!(check.partitions("missing").await, None);

        backend.delete_topic("orders").await.expect("delete");
        assert_eq!(check.partitions("orders").await, None);
        let gone = backend.delete_topic("orders").await;
        assert!(matches!(failure(gone), E::UnknownTopicOrPartition(_)));
    }

    #[tokio::test]
    async fn appends_return_offsets_and_read_back_exactly() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 4).await;
        let check = Check(&backend);
        check.create("t", 3).await;

        let records = varied_records();
        assert_eq!(check.append_records("t", 0, records[..3].to_vec()).await, 0);
        assert_eq!(check.append_records("t", 0, records[3..].to_vec()).await, 3);
        assert_eq!(check.append("t", 1, &["p1"]).await, 0);
        assert_eq!(
            check.append("t", 0, &[]).await,
            7,
            "an empty append reports the end"
        );

        let read = check.read("t", 0, 0).await;
        assert_eq!(
            read.bounds,
            PartitionBounds {
                log_start: 0,
                high_watermark: 7
            }
        );
        let offsets: Vec<i64> = read.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..7).collect::<Vec<_>>());
        let got: Vec<StoredRecord> = read.records.into_iter().map(|r| r.record).collect();
        assert_eq!(got, records, "every mapping form survives the server");

        let read = check.read("t", 0, 5).await;
        assert_eq!(
            read.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [5, 6]
        );
        let two = ReadLimits {
            max_records: 2,
            max_bytes: usize::MAX,
        };
        assert_eq!(check.read_with("t", 0, 1, two).await.records.len(), 2);
        let tiny = ReadLimits {
            max_records: 100,
            max_bytes: 1,
        };
        assert_eq!(
            check.read_with("t", 0, 0, tiny).await.records.len(),
            1,
            "at least one"
        );

        // Partitions are independent; the last one is still empty.
        let read = check.read("t", 1, 0).await;
        assert_eq!((read.records.len(), read.bounds.high_watermark), (1, 1));
        assert_eq!(check.bounds("t", 2).await, (0, 0));
        let no_partition = backend.append("t", 3, vec![value("x")]).await;
        assert!(matches!(
            failure(no_partition),
            E::UnknownTopicOrPartition(_)
        ));
        let no_topic = backend.read("nope", 0, 0, ALL).await;
        assert!(matches!(failure(no_topic), E::UnknownTopicOrPartition(_)));
    }

    #[tokio::test]
    async fn many_records_are_read_in_several_polls() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("bulk", 1).await;
        let batch: Vec<StoredRecord> = (0..1500).map(|i| value(&format!("r{i}"))).collect();
        assert_eq!(check.append_records("bulk", 0, batch.clone()).await, 0);
        assert_eq!(check.append_records("bulk", 0, batch).await, 1500);

        let read = check.read("bulk", 0, 10).await;
        assert_eq!(read.records.len(), 2990);
        assert!(read
            .records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64 + 10));
        assert_eq!(
            read.records[2989].record.value.as_deref(),
            Some(&b"r1499"[..])
        );
        // Each record counts about 20 bytes (value plus fixed overhead).
        let limited = ReadLimits {
            max_records: 10_000,
            max_bytes: 2000,
        };
        let n = check.read_with("bulk", 0, 0, limited).await.records.len();
        assert!((90..=110).contains(&n), "{n}");
    }

    #[tokio::test]
    async fn bounds_and_offset_range_on_empty_single_and_many() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("b", 3).await;
        check.append("b", 1, &["one"]).await;
        check.append("b", 2, &["0", "1", "2", "3", "4"]).await;

        for (partition, end) in [(0, 0), (1, 1), (2, 5)] {
            assert_eq!(check.bounds("b", partition).await, (0, end));
            // At the high watermark: nothing yet, and no error.
            let read = check.read("b", partition, end).await;
            assert!(read.records.is_empty());
            assert_eq!(
                read.bounds,
                PartitionBounds {
                    log_start: 0,
                    high_watermark: end
                }
            );
            for offset in [end + 1, end + 100, -1] {
                let result = backend.read("b", partition, offset, ALL).await;
                assert_eq!(
                    out_of_range(result),
                    (offset, 0, end),
                    "p{partition} @{offset}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_new_backend_resumes_offsets_from_the_server() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let first = backend_for(&server, 1).await;
        Check(&first).create("r", 3).await;
        Check(&first).append("r", 1, &["a"]).await;
        Check(&first).append("r", 2, &["a", "b", "c"]).await;
        drop(first);

        // Empty, one message and many: `current_offset` is 0 for the first two.
        let second = backend_for(&server, 1).await;
        let check = Check(&second);
        assert_eq!(check.append("r", 0, &["x"]).await, 0);
        assert_eq!(check.append("r", 1, &["x"]).await, 1);
        assert_eq!(check.append("r", 2, &["x"]).await, 3);
    }

    #[tokio::test]
    async fn timestamps_find_offsets_by_append_time() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("ts", 1).await;
        let mut early = value("early");
        early.timestamp_ms = 42; // CreateTime is kept as written, whatever the clock says.
        check.append_records("ts", 0, vec![early.clone()]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let between = now_ms();
        tokio::time::sleep(Duration::from_millis(50)).await;
        check.append("ts", 0, &["late"]).await;

        assert_eq!(check.read("ts", 0, 0).await.records[0].record, early);
        let lookup = |ms| backend.offset_for_timestamp("ts", 0, ms);
        assert_eq!(lookup(0).await.expect("lookup").map(|x| x.0), Some(0));
        let (offset, at) = lookup(between).await.expect("lookup").expect("found");
        assert_eq!(offset, 1);
        assert!(at >= between, "{at} < {between}");
        assert_eq!(lookup(now_ms() + 60_000).await.expect("lookup"), None);
    }

    #[tokio::test]
    async fn partitions_grow_and_never_shrink() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("g", 3).await;
        backend.create_partitions("g", 5).await.expect("grow");
        assert_eq!(check.partitions("g").await, Some(5));
        assert_eq!(check.append("g", 4, &["new"]).await, 0);
        backend
            .create_partitions("g", 5)
            .await
            .expect("same count is a no-op");
        let shrink = backend.create_partitions("g", 4).await;
        assert!(matches!(failure(shrink), E::InvalidPartitions(_)));
        let missing = backend.create_partitions("missing", 4).await;
        assert!(matches!(failure(missing), E::UnknownTopicOrPartition(_)));
    }

    /// A consumer reading a partition in small steps (each read ends at its limit, so the next
    /// chunk is read ahead) sees every record once, in order, from two positions at once, and
    /// a topic deleted and created again under the same name is read from its new contents.
    #[tokio::test]
    async fn sequential_reads_with_read_ahead_see_every_record_once() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("seq", 1).await;
        let batch: Vec<StoredRecord> = (0..2000).map(|i| value(&format!("r{i}"))).collect();
        assert_eq!(check.append_records("seq", 0, batch).await, 0);
        let step = ReadLimits {
            max_records: 150,
            max_bytes: usize::MAX,
        };
        // Two readers interleaved, one 500 records behind the other.
        let (mut ahead, mut behind) = (500i64, 0i64);
        let mut seen = Vec::new();
        while ahead < 2000 {
            for position in [&mut ahead, &mut behind] {
                let read = check.read_with("seq", 0, *position, step).await;
                assert!(!read.records.is_empty(), "at {position}");
                for (i, r) in read.records.iter().enumerate() {
                    assert_eq!(r.offset, *position + i as i64, "in order from {position}");
                }
                *position += read.records.len() as i64;
                seen.extend(read.records.into_iter().map(|r| r.offset));
            }
        }
        // Same number of steps each: the one ahead read 500..2000, the one behind 0..1500.
        seen.sort_unstable();
        let mut expected: Vec<i64> = (500..2000).chain(0..1500).collect();
        expected.sort_unstable();
        assert!(
            seen == expected,
            "each reader sees each of its records once ({} seen)",
            seen.len()
        );
        assert!(
            backend.read_ahead_hits() >= 10,
            "reads were answered ahead: {}",
            backend.read_ahead_hits()
        );

        // The first read leaves a read ahead at offset 150; the recreated topic must win.
        check.read_with("seq", 0, 0, step).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // the read ahead has landed
        backend.delete_topic("seq").await.expect("delete");
        check.create("seq", 1).await;
        let fresh: Vec<StoredRecord> = (0..400).map(|i| value(&format!("new{i}"))).collect();
        check.append_records("seq", 0, fresh).await;
        let read = check.read_with("seq", 0, 150, step).await;
        assert_eq!(
            read.records[0].record.value.as_deref(),
            Some(&b"new150"[..])
        );
    }

    #[tokio::test]
    async fn a_recreated_topic_starts_again_at_zero() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("d", 1).await;
        check.append("d", 0, &["a", "b"]).await;
        backend.delete_topic("d").await.expect("delete");
        let deleted = backend.append("d", 0, vec![value("x")]).await;
        assert!(matches!(failure(deleted), E::UnknownTopicOrPartition(_)));
        check.create("d", 1).await;
        assert_eq!(check.append("d", 0, &["x"]).await, 0);
    }

    #[tokio::test]
    async fn native_iggy_clients_and_kafka_records_interoperate() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("mixed", 1).await;
        let client = native_client(&server).await;

        // Iggy-native producer → Kafka reader.
        let headers = BTreeMap::from([
            (
                HeaderKey::try_from("source").expect("key"),
                HeaderValue::try_from("iggy").expect("v"),
            ),
            (
                HeaderKey::try_from("n").expect("key"),
                HeaderValue::from(5u64),
            ),
        ]);
        let mut native = vec![IggyMessage::builder()
            .payload(Bytes::from_static(b"from iggy"))
            .user_headers(headers)
            .build()
            .expect("message")];
        let origin_us = native[0].header.origin_timestamp;
        let (stream, topic, p0) = (
            named("kafka"),
            named("mixed"),
            Partitioning::partition_id(0),
        );
        let sent = client
            .send_messages(&stream, &topic, &p0, &mut native)
            .await;
        sent.expect("native send");
        let record = check.read("mixed", 0, 0).await.records.remove(0).record;
        assert_eq!(
            (record.key, record.value.as_deref()),
            (None, Some(&b"from iggy"[..]))
        );
        assert_eq!(record.timestamp_ms, (origin_us / 1000) as i64);
        let five = Bytes::copy_from_slice(&5u64.to_le_bytes());
        let expected = [
            ("n", Some(five)),
            ("source", Some(Bytes::from_static(b"iggy"))),
        ];
        assert_eq!(record.headers, expected.map(|(n, v)| (n.to_string(), v)));

        // Kafka producer → Iggy-native reader; the backend picks up after the native message.
        let mut kafka = value("from kafka");
        kafka.key = Some(Bytes::from_static(b"k"));
        assert_eq!(check.append_records("mixed", 0, vec![kafka]).await, 1);
        let polled = native_poll(&client, "kafka", "mixed", 0, 1).await;
        let message = &polled.messages[0];
        assert_eq!(message.header.offset, 1);
        assert_eq!(message.payload.as_ref(), b"from kafka");
        let key = message.get_user_header(&HeaderKey::try_from("kafka.key").expect("key"));
        assert_eq!(key.expect("headers").expect("kafka.key").as_bytes(), b"k");
        assert_eq!(message.header.origin_timestamp, 1_700_000_000_000_000);
    }

    /// Two proxies (two back ends) and a native Iggy producer append to one partition, first
    /// taking turns, then all at once: every offset a proxy answers is where its batch is.
    #[tokio::test]
    async fn offsets_are_exact_with_other_writers_on_the_partition() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let (a, b) = (backend_for(&server, 2).await, backend_for(&server, 2).await);
        Check(&a).create("shared", 1).await;
        let native = native_client(&server).await;
        let native_send = |values: Vec<String>| {
            let native = &native;
            async move {
                let mut messages: Vec<IggyMessage> = values
                    .into_iter()
                    .map(|v| IggyMessage::builder().payload(Bytes::from(v)).build())
                    .collect::<Result<_, _>>()
                    .expect("messages");
                let (stream, topic) = (named("kafka"), named("shared"));
                let p0 = Partitioning::partition_id(0);
                native
                    .send_messages(&stream, &topic, &p0, &mut messages)
                    .await
                    .expect("native send");
            }
        };
        let batch = |who: &str, n: usize, size: usize| -> Vec<String> {
            (0..size).map(|i| format!("{who}-{n}-{i}")).collect()
        };
        // (base offset answered, values) of every proxy append.
        let mut answered: Vec<(i64, Vec<String>)> = Vec::new();
        async fn append(backend: &IggyBackend, values: Vec<String>) -> (i64, Vec<String>) {
            let records = values.iter().map(|v| value(v)).collect();
            let base = backend.append("shared", 0, records).await.expect("append");
            (base, values)
        }

        // Taking turns, as in the report: A, B, native, then A and B again, each seeing stale
        // ends left by the others.
        answered.push(append(&a, batch("a", 0, 2)).await);
        answered.push(append(&b, batch("b", 0, 1)).await);
        native_send(batch("n", 0, 2)).await;
        answered.push(append(&a, batch("a", 1, 1)).await);
        answered.push(append(&b, batch("b", 1, 3)).await);
        answered.push(append(&a, batch("a", 2, 1)).await);
        assert_eq!(
            answered.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
            [0, 2, 5, 6, 9]
        );

        // All at once: three writers, forty batches each, of 1 to 4 records.
        let a_task = async {
            let mut out = Vec::new();
            for n in 10..50 {
                out.push(append(&a, batch("a", n, 1 + n % 4)).await);
            }
            out
        };
        let b_task = async {
            let mut out = Vec::new();
            for n in 10..50 {
                out.push(append(&b, batch("b", n, 1 + (n + 1) % 4)).await);
            }
            out
        };
        let n_task = async {
            for n in 10..50 {
                native_send(batch("n", n, 1 + (n + 2) % 4)).await;
            }
        };
        let (from_a, from_b, ()) = tokio::join!(a_task, b_task, n_task);
        answered.extend(from_a);
        answered.extend(from_b);

        // What a consumer reads back decides.
        let stored: BTreeMap<String, i64> = Check(&a)
            .read_with("shared", 0, 0, ALL)
            .await
            .records
            .into_iter()
            .map(|r| {
                let value = r.record.value.expect("value");
                (String::from_utf8(value.to_vec()).expect("utf-8"), r.offset)
            })
            .collect();
        let native_count = 2 + (10..50).map(|n| 1 + (n + 2) % 4).sum::<usize>();
        let proxied: usize = answered.iter().map(|(_, values)| values.len()).sum();
        assert_eq!(
            stored.len(),
            native_count + proxied,
            "every record stored once"
        );
        for (base, values) in &answered {
            for (i, v) in values.iter().enumerate() {
                assert_eq!(stored[v], base + i as i64, "{v}: answered {base} + {i}");
            }
        }
        // Each back end continues from the true end.
        let end = stored.len() as i64;
        assert_eq!(append(&a, batch("a", 99, 1)).await.0, end);
        assert_eq!(append(&b, batch("b", 99, 1)).await.0, end + 1);
    }

    #[tokio::test]
    async fn overridden_topics_live_in_their_own_stream() {
        let Some(server) = IggyServer::from_env().await else {
            return;
        };
        let target = IggyTarget {
            stream: "old".into(),
            topic: "legacy-v1".into(),
        };
        let backend = IggyBackend::connect(IggyConfig {
            address: server.address().to_string(),
            connections: 2,
            default_stream: "main".into(),
            topic_overrides: [("legacy".to_string(), target)].into(),
            ..IggyConfig::default()
        })
        .await
        .expect("connect");
        let check = Check(&backend);
        check.create("legacy", 2).await; // creates stream "old" too
        check.create("plain", 1).await;
        assert_eq!(check.append("legacy", 1, &["v"]).await, 0);
        assert_eq!(check.names().await, ["legacy", "plain"]);

        let client = native_client(&server).await;
        let polled = native_poll(&client, "old", "legacy-v1", 1, 0).await;
        assert_eq!(polled.messages[0].payload.as_ref(), b"v");
        let polled = native_poll(&client, "main", "plain", 0, 0).await;
        assert!(polled.messages.is_empty());
    }

    #[tokio::test]
    async fn reads_below_the_first_retained_offset_are_out_of_range() {
        // Tiny segments, a 1 s expiry and a cleaner every second make retention observable.
        let Some(server) = IggyServer::from_env_with(&[
            ("IGGY_SYSTEM_SEGMENT_SIZE", "1KiB"),
            ("IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE", "1"),
            ("IGGY_DATA_MAINTENANCE_MESSAGES_CLEANER_ENABLED", "true"),
            ("IGGY_DATA_MAINTENANCE_MESSAGES_INTERVAL", "1s"),
        ])
        .await
        else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        let expiring = TopicSettings {
            partitions: 1,
            retention_ms: Some(1000),
            max_bytes: None,
            ..TopicSettings::default()
        };
        backend
            .create_topic("old", &expiring)
            .await
            .expect("create");
        for i in 0..10 {
            check.append("old", 0, &[&format!("{i:0>200}")]).await;
        }
        // Full segments expire; the active one (empty after the last rotation) stays.
        let deadline = Instant::now() + Duration::from_secs(15);
        while check.bounds("old", 0).await != (10, 10) {
            assert!(Instant::now() < deadline, "nothing expired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for offset in [0, 9] {
            let result = backend.read("old", 0, offset, ALL).await;
            assert_eq!(out_of_range(result), (offset, 10, 10));
        }
        assert!(check.read("old", 0, 10).await.records.is_empty());

        // Offsets continue after everything expired, also for a backend that has to ask the server.
        let fresh = backend_for(&server, 1).await;
        assert_eq!(Check(&fresh).append("old", 0, &["next"]).await, 10);
        let read = check.read("old", 0, 10).await;
        assert_eq!((read.records.len(), read.bounds.high_watermark), (1, 11));
        // Iggy would silently answer from offset 10 here; the backend must not.
        let below = backend.read("old", 0, 5, ALL).await;
        assert_eq!(out_of_range(below), (5, 10, 11));
    }

    #[tokio::test]
    async fn the_backend_survives_server_restarts() {
        let Some(mut server) = IggyServer::from_env().await else {
            return;
        };
        let backend = backend_for(&server, 2).await;
        let check = Check(&backend);
        check.create("rs", 1).await;
        assert_eq!(check.append("rs", 0, &["a", "b", "c"]).await, 0);

        // A graceful stop saves buffered messages; reads reconnect transparently.
        server.restart(true).await.expect("restart");
        backend.health().await.expect("health after restart");
        assert_eq!(check.read("rs", 0, 0).await.records.len(), 3);
        // Saved messages are found by time through the on-disk index too.
        let lookup = backend.offset_for_timestamp("rs", 0, 0).await;
        assert_eq!(lookup.expect("lookup").map(|x| x.0), Some(0));
        let three: Vec<StoredRecord> = ["d", "e", "f"].iter().map(|v| value(v)).collect();
        assert_eq!(append_retrying(&backend, "rs", three.clone()).await, 3);

        // A crash may lose messages the server acknowledged but had not saved; offsets must then
        // continue from what the server holds, not from what the proxy handed out.
        server.restart(false).await.expect("crash restart");
        let base = append_retrying(&backend, "rs", three).await;
        eprintln!("after a crash the partition resumed at offset {base} (6 were acknowledged)");
        assert!(base <= 6);
        assert_eq!(check.bounds("rs", 0).await.1, base + 3);
    }

    /// With `fsync_on_append`, every acknowledged record survives a crash (SIGKILL).
    #[tokio::test]
    async fn fsync_on_append_keeps_acknowledged_records_through_a_crash() {
        let Some(mut server) = IggyServer::from_env().await else {
            return;
        };
        let backend = IggyBackend::connect(IggyConfig {
            address: server.address().to_string(),
            connections: 2,
            fsync_on_append: true,
            ..IggyConfig::default()
        })
        .await
        .expect("connect");
        let check = Check(&backend);
        check.create("synced", 1).await;
        for i in 0..5 {
            let v = format!("v{i}");
            assert_eq!(check.append("synced", 0, &[v.as_str()]).await, i);
        }
        server.restart(false).await.expect("crash restart");
        assert_eq!(
            check.bounds("synced", 0).await.1,
            5,
            "all five acknowledged records kept"
        );
        let three: Vec<StoredRecord> = ["x", "y", "z"].iter().map(|v| value(v)).collect();
        assert_eq!(append_retrying(&backend, "synced", three).await, 5);
    }
}

package dev.kafkaiggy.clients;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Command-line driver around Java kafka-clients, run by tests/clients/test_java_clients.py.
 *
 * <p>Usage: {@code java -jar kafka-clients-driver.jar COMMAND key=value...}. Every command takes
 * {@code bootstrap=HOST:PORT}; results are printed to stdout as one JSON object per line, client
 * logs go to stderr. A failure exits non-zero with the exception on stderr. Commands:
 *
 * <ul>
 *   <li>{@code produce topic=T partitions=P count=N}: the default producer (idempotence on,
 *       acks=all, nothing overridden but timeouts) sends N keyed records with headers, record i
 *       to partition i % P, then prints one line per record with the offset the broker gave it.
 *   <li>{@code consume topic=T partitions=P expect=N}: assigns partitions 0..P-1, seeks to the
 *       beginning, polls until N records have arrived and prints them in arrival order.
 *   <li>{@code group-consume topic=T group=G assignor=cooperative-sticky|range|roundrobin
 *       [instance_id=I] [session_ms=N] [delay_ms=N] [idle_ms=N]}: a group member (subscribe), one
 *       JSON event per line as tests/clients/group_member.py prints them: {@code rec} per record,
 *       {@code commit} after each successful commitSync, {@code assigned} (the whole assignment)
 *       and {@code revoked} from the rebalance listener. Exits after idle_ms without records.
 *   <li>{@code group-admin group=G topic=T}: AdminClient listConsumerGroups,
 *       describeConsumerGroups, listConsumerGroupOffsets, then deleteConsumerGroupOffsets of
 *       partition 0 and listConsumerGroupOffsets again; one JSON line with what each returned.
 *   <li>{@code create-topic topic=T partitions=P}, {@code delete-topic topic=T},
 *       {@code list-topics}, {@code describe-topic topic=T}, {@code describe-cluster}.
 * </ul>
 */
public final class Driver {
    private static final int CALL_TIMEOUT_MS = 20_000;

    private Driver() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            System.err.println("usage: Driver COMMAND key=value...");
            System.exit(2);
        }
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("argument not key=value: " + argv[i]);
            }
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        switch (argv[0]) {
            case "produce" -> produce(args);
            case "produce-steady" -> produceSteady(args);
            case "consume" -> consume(args);
            case "create-topic" -> createTopic(args);
            case "delete-topic" -> deleteTopic(args);
            case "list-topics" -> listTopics(args);
            case "describe-topic" -> describeTopic(args);
            case "describe-cluster" -> describeCluster(args);
            case "init-transactions" -> initTransactions(args);
            case "group-consume" -> groupConsume(args);
            case "group-admin" -> groupAdmin(args);
            default -> {
                System.err.println("unknown command " + argv[0]);
                System.exit(2);
            }
        }
        System.out.flush();
        // Kafka client threads are non-daemon in some versions; do not wait for them.
        System.exit(0);
    }

    private static String required(Map<String, String> args, String key) {
        String value = args.get(key);
        if (value == null) {
            throw new IllegalArgumentException("missing argument " + key + "=...");
        }
        return value;
    }

    private static int intArg(Map<String, String> args, String key) {
        return Integer.parseInt(required(args, key));
    }

    /**
     * Adds the client settings given as {@code client.<property>=value} (security.protocol,
     * sasl.*, ssl.*), so scenarios can configure what the commands do not set themselves.
     */
    private static Properties withClientArgs(Properties props, Map<String, String> args) {
        args.forEach((key, value) -> {
            if (key.startsWith("client.")) {
                props.put(key.substring("client.".length()), value);
            }
        });
        return props;
    }

    // ---------------------------------------------------------------- producer

    /**
     * A producer with the client's defaults (idempotence, acks, retries); only timeouts and a
     * short linger are set.
     */
    private static KafkaProducer<byte[], byte[]> defaultProducer(Map<String, String> args, int deliveryTimeoutMs) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, CALL_TIMEOUT_MS);
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, deliveryTimeoutMs);
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        return new KafkaProducer<>(withClientArgs(props, args));
    }

    private static void produce(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        int partitions = intArg(args, "partitions");
        int count = intArg(args, "count");
        try (KafkaProducer<byte[], byte[]> producer = defaultProducer(args, 30_000)) {
            List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                List<Header> headers = List.of(
                        new RecordHeader("client", utf8("java")),
                        new RecordHeader("index", utf8(Integer.toString(i))));
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                        topic, i % partitions, null, utf8("key-" + i), utf8("java value " + i), headers);
                records.add(record);
                futures.add(producer.send(record));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata meta = futures.get(i).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                ProducerRecord<byte[], byte[]> record = records.get(i);
                System.out.println(recordJson(meta.partition(), meta.offset(), meta.timestamp(),
                        record.key(), record.value(), record.headers()));
            }
        }
    }

    /**
     * Sends records keyed and valued {@code java-<i>} (partition chosen by the key) at about
     * 200 a second for {@code duration_ms}, with the client's defaults (idempotence on, acks=all)
     * and a delivery timeout long enough to ride out broker changes; then prints every delivery.
     */
    private static void produceSteady(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        long until = System.currentTimeMillis() + Long.parseLong(required(args, "duration_ms"));
        try (KafkaProducer<byte[], byte[]> producer = defaultProducer(args, 120_000)) {
            List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; System.currentTimeMillis() < until; i++) {
                byte[] name = utf8("java-" + i);
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, name, name);
                records.add(record);
                futures.add(producer.send(record));
                if (i % 10 == 9) {
                    Thread.sleep(50);
                }
            }
            producer.flush();
            for (int i = 0; i < records.size(); i++) {
                RecordMetadata meta = futures.get(i).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                ProducerRecord<byte[], byte[]> record = records.get(i);
                System.out.println(recordJson(meta.partition(), meta.offset(), meta.timestamp(),
                        record.key(), record.value(), record.headers()));
            }
        }
    }

    // ---------------------------------------------------------------- consumer

    private static void consume(Map<String, String> args) {
        String topic = required(args, "topic");
        int partitions = intArg(args, "partitions");
        int expect = intArg(args, "expect");
        long deadline = System.currentTimeMillis() + Long.parseLong(args.getOrDefault("timeout_ms", "30000"));
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // No group.id: the proxy has no group coordinator yet, so partitions are assigned by hand.
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, CALL_TIMEOUT_MS);
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 200);
        List<TopicPartition> assignment = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            assignment.add(new TopicPartition(topic, p));
        }
        int received = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(withClientArgs(props, args))) {
            consumer.assign(assignment);
            consumer.seekToBeginning(assignment);
            while (received < expect && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    System.out.println(recordJson(r.partition(), r.offset(), r.timestamp(),
                            r.key(), r.value(), r.headers()));
                    received++;
                }
            }
        }
        if (received < expect) {
            System.err.println("consume: timed out with " + received + " of " + expect + " records");
            System.out.flush();
            System.exit(3);
        }
    }

    // ---------------------------------------------------------------- consumer groups

    private static String partitionsJson(Collection<TopicPartition> partitions) {
        Set<Integer> sorted = new TreeSet<>();
        for (TopicPartition tp : partitions) {
            sorted.add(tp.partition());
        }
        return sorted.toString().replace(" ", "");
    }

    private static void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    private static void groupConsume(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        String assignor = args.getOrDefault("assignor", "cooperative-sticky");
        long idleMs = Long.parseLong(args.getOrDefault("idle_ms", "8000"));
        long delayMs = Long.parseLong(args.getOrDefault("delay_ms", "0"));
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ConsumerConfig.GROUP_ID_CONFIG, required(args, "group"));
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, args.getOrDefault("session_ms", "6000"));
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 200);
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, CALL_TIMEOUT_MS);
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, switch (assignor) {
            case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            default -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
        });
        if (args.containsKey("instance_id")) {
            props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, args.get("instance_id"));
        }
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic), new org.apache.kafka.clients.consumer.ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    emit("{\"e\":\"revoked\",\"ps\":" + partitionsJson(partitions) + "}");
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    emit("{\"e\":\"assigned\",\"ps\":" + partitionsJson(consumer.assignment()) + "}");
                }
            });
            long last = System.currentTimeMillis();
            boolean received = false;
            // Commits refused during a rebalance (RebalanceInProgress) are retried after the next
            // poll, which completes the rebalance, and once more before leaving: at-least-once.
            boolean uncommitted = false;
            while (!received || System.currentTimeMillis() - last < idleMs) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(200));
                if (uncommitted) {
                    uncommitted = !commitPositions(consumer);
                }
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    received = true;
                    last = System.currentTimeMillis();
                    String key = r.key() == null ? "" : new String(r.key(), StandardCharsets.UTF_8);
                    emit("{\"e\":\"rec\",\"p\":" + r.partition() + ",\"o\":" + r.offset() + ",\"k\":" + str(key) + "}");
                    if (delayMs > 0) {
                        Thread.sleep(delayMs);
                    }
                    TopicPartition tp = new TopicPartition(topic, r.partition());
                    try {
                        consumer.commitSync(Map.of(tp, new org.apache.kafka.clients.consumer.OffsetAndMetadata(r.offset() + 1)));
                        emit("{\"e\":\"commit\",\"p\":" + r.partition() + ",\"o\":" + (r.offset() + 1) + "}");
                    } catch (org.apache.kafka.common.KafkaException e) {
                        uncommitted = true;
                        emit("{\"e\":\"commit-failed\",\"p\":" + r.partition() + ",\"msg\":" + str(e.toString()) + "}");
                    }
                }
            }
            while (uncommitted && System.currentTimeMillis() - last < idleMs + 30_000) {
                consumer.poll(Duration.ofMillis(200));
                uncommitted = !commitPositions(consumer);
            }
        }
        emit("{\"e\":\"closed\"}");
    }

    /** Commits the position of every assigned partition; false when the commit was refused. */
    private static boolean commitPositions(KafkaConsumer<byte[], byte[]> consumer) {
        Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> positions = new HashMap<>();
        for (TopicPartition tp : consumer.assignment()) {
            positions.put(tp, new org.apache.kafka.clients.consumer.OffsetAndMetadata(consumer.position(tp)));
        }
        try {
            consumer.commitSync(positions);
        } catch (org.apache.kafka.common.KafkaException e) {
            return false;
        }
        for (var e : positions.entrySet()) {
            emit("{\"e\":\"commit\",\"p\":" + e.getKey().partition() + ",\"o\":" + e.getValue().offset() + "}");
        }
        return true;
    }

    private static void groupAdmin(Map<String, String> args) throws Exception {
        String group = required(args, "group");
        String topic = required(args, "topic");
        try (Admin admin = admin(args)) {
            List<String> listed = new ArrayList<>();
            for (var g : admin.listConsumerGroups().all().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS)) {
                listed.add(str(g.groupId()));
            }
            var described = admin.describeConsumerGroups(List.of(group)).all()
                    .get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS).get(group);
            var before = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                    .get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            admin.deleteConsumerGroupOffsets(group, Set.of(new TopicPartition(topic, 0))).all()
                    .get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            var after = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                    .get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            StringBuilder offsets = new StringBuilder("{");
            for (var e : new java.util.TreeMap<Integer, Long>(before.entrySet().stream().collect(
                    java.util.stream.Collectors.toMap(x -> x.getKey().partition(), x -> x.getValue().offset()))).entrySet()) {
                if (offsets.length() > 1) {
                    offsets.append(',');
                }
                offsets.append('"').append(e.getKey()).append("\":").append(e.getValue());
            }
            offsets.append('}');
            emit("{\"groups\":" + listed + ",\"state\":" + str(described.groupState().toString())
                    + ",\"members\":" + described.members().size()
                    + ",\"offsets\":" + offsets + ",\"after_delete\":" + after.size() + "}");
        }
    }

    // ---------------------------------------------------------------- admin

    private static Admin admin(Map<String, String> args) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, CALL_TIMEOUT_MS);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        return Admin.create(props);
    }

    private static void createTopic(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        int partitions = intArg(args, "partitions");
        try (Admin admin = admin(args)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                    .all().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            System.out.println("{\"created\":" + str(topic) + "}");
        }
    }

    private static void deleteTopic(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        try (Admin admin = admin(args)) {
            admin.deleteTopics(List.of(topic)).all().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            System.out.println("{\"deleted\":" + str(topic) + "}");
        }
    }

    private static void listTopics(Map<String, String> args) throws Exception {
        try (Admin admin = admin(args)) {
            Set<String> names = new TreeSet<>(admin.listTopics().names().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS));
            List<String> quoted = new ArrayList<>();
            for (String name : names) {
                quoted.add(str(name));
            }
            System.out.println("{\"topics\":[" + String.join(",", quoted) + "]}");
        }
    }

    private static void describeTopic(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        try (Admin admin = admin(args)) {
            Map<String, TopicDescription> all = admin.describeTopics(List.of(topic))
                    .allTopicNames().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            TopicDescription d = all.get(topic);
            System.out.println("{\"topic\":" + str(d.name()) + ",\"partitions\":" + d.partitions().size()
                    + ",\"topic_id\":" + str(d.topicId().toString()) + "}");
        }
    }

    private static void describeCluster(Map<String, String> args) throws Exception {
        try (Admin admin = admin(args)) {
            DescribeClusterResult result = admin.describeCluster();
            String clusterId = result.clusterId().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            Node controller = result.controller().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            Collection<Node> nodes = result.nodes().get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            List<String> nodeJson = new ArrayList<>();
            for (Node n : nodes) {
                nodeJson.add("{\"id\":" + n.id() + ",\"host\":" + str(n.host()) + ",\"port\":" + n.port() + "}");
            }
            System.out.println("{\"cluster_id\":" + str(clusterId)
                    + ",\"controller\":" + (controller == null ? "null" : Integer.toString(controller.id()))
                    + ",\"nodes\":[" + String.join(",", nodeJson) + "]}");
        }
    }

    // ---------------------------------------------------------------- transactions

    /** Tries initTransactions() and prints how it failed and how long that took. */
    private static void initTransactions(Map<String, String> args) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, required(args, "transactional_id"));
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, Integer.toString(CALL_TIMEOUT_MS));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        long started = System.nanoTime();
        String error = null;
        String message = null;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
        } catch (Exception e) {
            error = e.getClass().getSimpleName();
            message = e.getMessage();
        }
        long elapsedMs = (System.nanoTime() - started) / 1_000_000;
        System.out.println("{\"error\":" + str(error) + ",\"message\":" + str(message)
                + ",\"elapsed_ms\":" + elapsedMs + "}");
    }

    // ---------------------------------------------------------------- JSON output

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** One record as JSON; key, value and header values as UTF-8 strings (null stays null). */
    private static String recordJson(int partition, long offset, long timestamp, byte[] key, byte[] value,
            Iterable<Header> headers) {
        List<String> hs = new ArrayList<>();
        for (Header h : headers) {
            hs.add("[" + str(h.key()) + "," + bytes(h.value()) + "]");
        }
        return "{\"partition\":" + partition + ",\"offset\":" + offset + ",\"timestamp\":" + timestamp
                + ",\"key\":" + bytes(key) + ",\"value\":" + bytes(value)
                + ",\"headers\":[" + String.join(",", hs) + "]}";
    }

    private static String bytes(byte[] b) {
        return b == null ? "null" : str(new String(b, StandardCharsets.UTF_8));
    }

    private static String str(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}

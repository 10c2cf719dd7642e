package dev.kafkaiggy.streams;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A stateful Kafka Streams word count, run by tests/clients/test_kafka_streams.py.
 *
 * <p>Usage: {@code java -jar kafka-streams-app.jar COMMAND key=value...}; every command takes
 * {@code bootstrap=HOST:PORT}. Results go to stdout as one JSON object per line, logs to stderr.
 *
 * <ul>
 *   <li>{@code create-topics topics=A:P,B:P}: creates topics with P partitions.
 *   <li>{@code produce topic=T lines=L1|L2|...}: sends each line as a record value (null key).
 *   <li>{@code run app_id=A input=T output=O state_dir=D [guarantee=at_least_once]}: the app:
 *       lines are split into words, regrouped by word (a repartition topic) and counted into
 *       the store {@code counts-store} (a compacted changelog topic); every count update goes
 *       to O. Prints {@code {"event":"running"}} once RUNNING, runs until SIGTERM, and on a
 *       fatal error prints {@code {"event":"error","error":...}} and exits with status 3.
 *   <li>{@code counts topic=O}: reads O from the beginning to its end; prints the last count per
 *       word.
 *   <li>{@code log-starts prefix=X}: earliest offsets (log start) of every partition of every
 *       topic whose name starts with X, and their end offsets.
 * </ul>
 */
public final class WordCountApp {
    private static final int CALL_TIMEOUT_S = 30;

    private WordCountApp() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("argument not key=value: " + argv[i]);
            }
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        String command = argv.length > 0 ? argv[0] : "";
        int status = 0;
        switch (command) {
            case "create-topics" -> createTopics(args);
            case "produce" -> produce(args);
            case "run" -> status = run(args);
            case "counts" -> counts(args);
            case "log-starts" -> logStarts(args);
            default -> {
                System.err.println("unknown command " + command);
                status = 2;
            }
        }
        System.out.flush();
        System.exit(status);
    }

    private static String required(Map<String, String> args, String key) {
        String value = args.get(key);
        if (value == null) {
            throw new IllegalArgumentException("missing argument " + key + "=...");
        }
        return value;
    }

    private static String json(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
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

    private static Admin admin(Map<String, String> args) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        return Admin.create(props);
    }

    private static void createTopics(Map<String, String> args) throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        for (String spec : required(args, "topics").split(",")) {
            String[] parts = spec.split(":");
            topics.add(new NewTopic(parts[0], Integer.parseInt(parts[1]), (short) 1));
        }
        try (Admin admin = admin(args)) {
            admin.createTopics(topics).all().get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
        }
        System.out.println("{\"created\":" + topics.size() + "}");
    }

    private static void produce(Map<String, String> args) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        String topic = required(args, "topic");
        String[] lines = required(args, "lines").split("\\|");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (String line : lines) {
                producer.send(new ProducerRecord<>(topic, null, line));
            }
            producer.flush();
        }
        System.out.println("{\"produced\":" + lines.length + "}");
    }

    private static int run(Map<String, String> args) throws Exception {
        String input = required(args, "input");
        String output = required(args, "output");
        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(input)
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
                .filter((key, word) -> !word.isEmpty())
                .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts-store"))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, required(args, "app_id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, required(args, "state_dir"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                args.getOrDefault("guarantee", StreamsConfig.AT_LEAST_ONCE));
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
        props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 500);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch done = new CountDownLatch(1);
        int[] status = {0};
        streams.setUncaughtExceptionHandler(e -> {
            Throwable root = e;
            StringBuilder chain = new StringBuilder();
            while (root != null) {
                chain.append(root.getClass().getName()).append(": ").append(root.getMessage()).append(" | ");
                root = root.getCause();
            }
            System.out.println("{\"event\":\"error\",\"error\":" + json(chain.toString()) + "}");
            System.out.flush();
            status[0] = 3;
            done.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("{\"event\":\"running\"}");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR) {
                status[0] = 3;
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            System.out.println("{\"event\":\"closed\"}");
            System.out.flush();
        }));
        streams.start();
        done.await();
        streams.close(Duration.ofSeconds(10));
        return status[0];
    }

    private static void counts(Map<String, String> args) throws Exception {
        String topic = required(args, "topic");
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Map<String, Long> last = new TreeMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            consumer.partitionsFor(topic, Duration.ofSeconds(CALL_TIMEOUT_S))
                    .forEach(p -> partitions.add(new TopicPartition(topic, p.partition())));
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
            long deadline = System.currentTimeMillis() + CALL_TIMEOUT_S * 1000L;
            while (partitions.stream().anyMatch(p -> consumer.position(p) < end.get(p))) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("did not reach the end of " + topic);
                }
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(500))) {
                    last.put(r.key(), r.value());
                }
            }
        }
        StringBuilder out = new StringBuilder("{\"counts\":{");
        String sep = "";
        for (Map.Entry<String, Long> e : last.entrySet()) {
            out.append(sep).append(json(e.getKey())).append(':').append(e.getValue());
            sep = ",";
        }
        System.out.println(out.append("}}"));
    }

    private static void logStarts(Map<String, String> args) throws Exception {
        String prefix = required(args, "prefix");
        try (Admin admin = admin(args)) {
            List<String> names = admin.listTopics().names().get(CALL_TIMEOUT_S, TimeUnit.SECONDS)
                    .stream().filter(n -> n.startsWith(prefix)).sorted().toList();
            Map<String, TopicDescription> described =
                    admin.describeTopics(names).allTopicNames().get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicDescription d : described.values()) {
                d.partitions().forEach(p -> {
                    earliest.put(new TopicPartition(d.name(), p.partition()), OffsetSpec.earliest());
                    latest.put(new TopicPartition(d.name(), p.partition()), OffsetSpec.latest());
                });
            }
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> starts =
                    admin.listOffsets(earliest).all().get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                    admin.listOffsets(latest).all().get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
            Map<String, String> configs = new TreeMap<>();
            var resources = names.stream()
                    .map(n -> new org.apache.kafka.common.config.ConfigResource(
                            org.apache.kafka.common.config.ConfigResource.Type.TOPIC, n))
                    .toList();
            admin.describeConfigs(resources).all().get(CALL_TIMEOUT_S, TimeUnit.SECONDS)
                    .forEach((r, c) -> configs.put(r.name(), c.get("cleanup.policy").value()));
            for (TopicPartition tp : starts.keySet().stream()
                    .sorted((x, y) -> x.toString().compareTo(y.toString())).toList()) {
                System.out.println("{\"topic\":" + json(tp.topic()) + ",\"partition\":" + tp.partition()
                        + ",\"log_start\":" + starts.get(tp).offset()
                        + ",\"end\":" + ends.get(tp).offset()
                        + ",\"cleanup_policy\":" + json(configs.get(tp.topic())) + "}");
            }
        }
    }
}

//! Seeded random records, biased to the edges of Iggy's limits, must round-trip exactly.

use bytes::Bytes;

use super::*;

/// Seeded, so a failure reproduces from the printed case.
struct Rng(crate::test_rng::SeededRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// Lengths biased to the interesting edges (0, 1, 255, 256) and otherwise small.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => 255,
            3 => 256,
            4 => 254 + self.below(4) as usize,
            _ => self.below(40) as usize,
        }
    }

    fn bytes(&mut self) -> Bytes {
        let len = self.len();
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn maybe_bytes(&mut self) -> Option<Bytes> {
        (self.below(6) != 0).then(|| self.bytes())
    }

    fn name(&mut self) -> String {
        const PARTS: [&str; 8] = ["a", "b", "kafka.", "key", "é", "x-trace", "Z", "\u{1F600}"];
        if self.below(12) == 0 {
            return "n".repeat(self.len());
        }
        (0..self.below(4))
            .map(|_| PARTS[self.below(8) as usize])
            .collect()
    }

    fn timestamp(&mut self) -> i64 {
        match self.below(8) {
            0 => 0,
            1 => -1,
            2 => i64::MIN + self.below(3) as i64,
            3 => i64::MAX - self.below(3) as i64,
            4 => (u64::MAX / 1000) as i64 + self.below(3) as i64 - 1,
            _ => self.below(4_000_000_000_000) as i64,
        }
    }
}

#[test]
fn random_records_round_trip_exactly() {
    let mut rng = Rng(crate::test_rng::SeededRng::new(0x9e37_79b9_7f4a_7c15));
    let (mut native, mut envelope) = (0, 0);
    for case in 0..5000 {
        let headers = (0..rng.below(6) + if rng.below(20) == 0 { 300 } else { 0 })
            .map(|_| (rng.name(), rng.maybe_bytes()))
            .collect();
        let r = StoredRecord {
            key: rng.maybe_bytes(),
            value: rng.maybe_bytes(),
            headers,
            timestamp_ms: rng.timestamp(),
        };
        let message = encode_record(&r).expect("encodable");
        if is_envelope(&message) {
            envelope += 1;
        } else {
            native += 1;
            // Iggy-native consumers see the Kafka value as the payload.
            if let Some(v) = r.value.as_ref().filter(|v| !v.is_empty()) {
                assert_eq!(&message.payload, v, "case {case}");
            }
        }
        assert_eq!(
            decode_message(&through_server(&message, case)),
            r,
            "case {case}"
        );
    }
    assert!(
        native > 500 && envelope > 500,
        "native {native}, envelope {envelope}"
    );
}

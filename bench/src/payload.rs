//! Deterministic record contents and the checks that make a broken run fail instead of look fast.
//!
//! Record `i` carries `i` (u64, little endian) in its first 8 bytes, a fixed marker in the next 8
//! and pseudo-random bytes derived from `i` after that, so any record can be regenerated from its
//! index. Record `i` goes to partition `i % partitions` and, in a fresh topic, lands at offset
//! `i / partitions`.

use std::fmt::Write as _;

/// Smallest record the layout fits in.
pub const MIN_RECORD_SIZE: usize = 16;
const MARKER: &[u8; 8] = b"KIBENCH1";
/// How many records are compared byte for byte (spread evenly); the rest are checked by index,
/// partition, offset and length only, to keep the check cheap inside the timed loop.
const FULL_SAMPLES: u64 = 1000;
const MAX_REPORTED_ERRORS: usize = 10;

/// Writes record `index` into `buf` (whose length is the record size).
pub fn fill(buf: &mut [u8], index: u64) {
    buf[..8].copy_from_slice(&index.to_le_bytes());
    buf[8..16].copy_from_slice(MARKER);
    // splitmix64 seeded by the index: cheap, and differs for every record.
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in buf[16..].chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Partition of record `index`.
pub fn partition_of(index: u64, partitions: u32) -> u32 {
    (index % u64::from(partitions)) as u32
}

/// Checks records as they are read back: each index exactly once, in order within its partition,
/// at the expected offset, with the expected length; a sample compared in full.
pub struct Verifier {
    records: u64,
    record_size: usize,
    partitions: u32,
    /// Next index expected per partition.
    next: Vec<u64>,
    received: u64,
    sample_every: u64,
    sampled: u64,
    scratch: Vec<u8>,
    errors: Vec<String>,
    error_count: u64,
}

impl Verifier {
    pub fn new(records: u64, record_size: usize, partitions: u32) -> Self {
        Self {
            records,
            record_size,
            partitions,
            next: (0..u64::from(partitions)).collect(),
            received: 0,
            sample_every: (records / FULL_SAMPLES).max(1),
            sampled: 0,
            scratch: vec![0; record_size],
            errors: Vec::new(),
            error_count: 0,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether every partition has been read to its end.
    pub fn complete(&self) -> bool {
        self.received >= self.records
    }

    /// Whether partition `p` has delivered all its records.
    pub fn partition_done(&self, partition: u32) -> bool {
        self.next
            .get(partition as usize)
            .is_none_or(|&next| next >= self.records)
    }

    /// Offset the next record of partition `p` should have.
    pub fn next_offset(&self, partition: u32) -> u64 {
        self.next
            .get(partition as usize)
            .map_or(0, |&next| next / u64::from(self.partitions))
    }

    fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(message);
        }
    }

    /// Checks one record read from `partition` at `offset`.
    pub fn check(&mut self, partition: u32, offset: u64, payload: &[u8]) {
        self.received += 1;
        let Some(&expected) = self.next.get(partition as usize) else {
            self.error(format!("record from unexpected partition {partition}"));
            return;
        };
        if payload.len() != self.record_size {
            self.error(format!(
                "partition {partition} offset {offset}: {} bytes, expected {}",
                payload.len(),
                self.record_size
            ));
            return;
        }
        let mut index_bytes = [0u8; 8];
        index_bytes.copy_from_slice(&payload[..8]);
        let index = u64::from_le_bytes(index_bytes);
        if index != expected {
            self.error(format!(
                "partition {partition} offset {offset}: record {index}, expected record {expected} \
                 (lost, duplicated or reordered records)"
            ));
        }
        let expected_offset = index / u64::from(self.partitions);
        if offset != expected_offset {
            self.error(format!(
                "partition {partition}: record {index} at offset {offset}, expected offset {expected_offset}"
            ));
        }
        if index % self.sample_every == 0 || index + 1 == self.records {
            self.sampled += 1;
            fill(&mut self.scratch, index);
            if payload != self.scratch.as_slice() {
                let at = payload
                    .iter()
                    .zip(&self.scratch)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.error(format!(
                    "partition {partition} offset {offset}: record {index} differs from what was \
                     produced at byte {at}"
                ));
            }
        }
        if index >= expected {
            self.next[partition as usize] = index + u64::from(self.partitions);
        }
    }

    /// Ok with a short summary, or every problem found.
    pub fn finish(&self) -> Result<String, String> {
        let mut problems = String::new();
        if self.received != self.records {
            let _ = write!(
                problems,
                "read {} records, expected {}; ",
                self.received, self.records
            );
        }
        for (p, &next) in self.next.iter().enumerate() {
            // The last index of partition p is the largest i < records with i % P == p.
            let expected_end = expected_partition_end(self.records, self.partitions, p as u64);
            if next != expected_end {
                let _ = write!(
                    problems,
                    "partition {p} ended before record {}; ",
                    next.min(expected_end)
                );
            }
        }
        if self.error_count > 0 {
            let _ = write!(
                problems,
                "{} bad records, first: {}",
                self.error_count,
                self.errors.join(" | ")
            );
        }
        if problems.is_empty() {
            Ok(format!(
                "{} records in order at their offsets, {} compared byte for byte",
                self.received, self.sampled
            ))
        } else {
            Err(problems.trim_end_matches("; ").to_string())
        }
    }
}

/// `next` value of partition `p` once all its records were read.
fn expected_partition_end(records: u64, partitions: u32, p: u64) -> u64 {
    let partitions = u64::from(partitions);
    if p >= records {
        return p;
    }
    let count = (records - p).div_ceil(partitions);
    p + count * partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(records: u64, partitions: u32, size: usize) -> Vec<(u32, u64, Vec<u8>)> {
        (0..records)
            .map(|i| {
                let mut buf = vec![0; size];
                fill(&mut buf, i);
                (partition_of(i, partitions), i / u64::from(partitions), buf)
            })
            .collect()
    }

    #[test]
    fn a_complete_run_passes() {
        for partitions in [1, 3] {
            let mut v = Verifier::new(10, 64, partitions);
            for (p, o, buf) in produce(10, partitions, 64) {
                v.check(p, o, &buf);
            }
            assert!(v.complete());
            assert!(v.finish().is_ok(), "{:?}", v.finish());
        }
    }

    #[test]
    fn loss_duplication_and_corruption_fail() {
        let all = produce(10, 1, 64);
        let mut lost = Verifier::new(10, 64, 1);
        for (p, o, buf) in all.iter().filter(|r| r.1 != 4) {
            lost.check(*p, *o, buf);
        }
        assert!(lost.finish().is_err());

        let mut dup = Verifier::new(10, 64, 1);
        for (p, o, buf) in all.iter().chain(all.iter().take(1)) {
            dup.check(*p, *o, buf);
        }
        assert!(dup.finish().is_err());

        let mut corrupt = Verifier::new(10, 64, 1);
        for (p, o, buf) in &all {
            let mut buf = buf.clone();
            buf[40] ^= 1;
            corrupt.check(*p, *o, &buf);
        }
        assert!(corrupt.finish().is_err());

        let mut shifted = Verifier::new(10, 64, 1);
        for (p, o, buf) in &all {
            shifted.check(*p, o + 1, buf);
        }
        assert!(shifted.finish().is_err());
    }

    #[test]
    fn records_differ() {
        let mut a = vec![0; 1024];
        let mut b = vec![0; 1024];
        fill(&mut a, 1);
        fill(&mut b, 2);
        assert_ne!(a[16..], b[16..]);
    }
}

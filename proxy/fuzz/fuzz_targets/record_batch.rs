//! Produced record batches past the checksum: the fuzzer's bytes become a v2 batch whose length
//! and CRC-32C are fixed up, so decompression (every codec, chosen by the attribute bits) and
//! record decoding see arbitrary input instead of stopping at the checksum. Must never panic,
//! abort, or produce more than the decompression cap.
#![no_main]

use bytes::Bytes;
use kafka_iggy_proxy::handlers::records::decode_produced;
use libfuzzer_sys::fuzz_target;

const MAX_DECOMPRESSED: usize = 1 << 20;
/// baseOffset(8) length(4) leaderEpoch(4) magic(1) crc(4): the CRC covers what follows.
const CRC_END: usize = 21;

fuzz_target!(|data: &[u8]| {
    if data.len() < CRC_END + 40 {
        return;
    }
    let mut batch = data.to_vec();
    let length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    batch[16] = 2; // magic
    let crc = crc32c::crc32c(&batch[CRC_END..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    if let Ok(produced) = decode_produced(Bytes::from(batch), MAX_DECOMPRESSED) {
        let bytes: usize = produced.records.iter().map(|r| r.approx_size()).sum();
        assert!(bytes <= MAX_DECOMPRESSED + data.len() + 16 * produced.records.len());
    }
});

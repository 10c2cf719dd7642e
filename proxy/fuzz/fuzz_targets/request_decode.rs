//! The request path as the connection runs it on an untrusted frame: prefix, version check,
//! header and body decode, and for Produce the record batches. Must never panic or abort.
#![no_main]

use bytes::Bytes;
use kafka_iggy_proxy::handlers::records::decode_produced;
use kafka_iggy_proxy::protocol::codec::{decode_request, peek_prefix};
use kafka_iggy_proxy::protocol::versions::{check, VersionCheck};
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;

/// As small a cap as a deployment could set, so that bombs hit it quickly.
const MAX_DECOMPRESSED: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let Ok(prefix) = peek_prefix(&frame) else { return };
    if check(prefix.key, prefix.version) != VersionCheck::Supported {
        return;
    }
    let Ok((_, request)) = decode_request(prefix, frame) else { return };
    if let RequestKind::Produce(produce) = request {
        for topic in produce.topic_data {
            for partition in topic.partition_data {
                if let Some(records) = partition.records {
                    let _ = decode_produced(records, MAX_DECOMPRESSED);
                }
            }
        }
    }
});

//! Kafka wire protocol: framing, header handling, request decoding and response encoding.
//! Everything in here treats the peer as hostile.

pub mod alloc_guard;
pub mod codec;
pub mod decompress;
pub mod frame;
pub mod versions;

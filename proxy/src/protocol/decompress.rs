//! Decompression of a record batch's records section, with a hard cap on the output.
//!
//! kafka-protocol's own decoders trust the client: its snappy decoder zero-fills a buffer of the
//! length the block header claims (up to 4 GiB), and gzip, lz4 and zstd stream to the end. A
//! 141-byte Produce could make the proxy allocate gigabytes. Here every codec stops as soon as
//! the output would pass `limit`, before allocating beyond it, and reports
//! [`DecompressError::TooLarge`]; the caller answers MESSAGE_TOO_LARGE.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::Compression;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    #[error("records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{codec:?} records cannot be decompressed: {reason}")]
    Corrupt { codec: Compression, reason: String },
}

/// The uncompressed records section of a batch compressed with `codec`, at most `limit` bytes.
pub fn decompress(
    codec: Compression,
    input: &Bytes,
    limit: usize,
) -> Result<Bytes, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let out = match codec {
        // Nothing to inflate: the frame size limit already bounds it.
        Compression::None => return Ok(input.clone()),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(&input[..]), limit)
            .map_err(|e| e.into_error(codec, limit))?,
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&input[..]).map_err(|e| corrupt(e.to_string()))?;
            read_capped(decoder, limit).map_err(|e| e.into_error(codec, limit))?
        }
        Compression::Zstd => {
            // zstd refuses frames whose window is over 2^27 bytes by default. The window is
            // reserved from the frame header but only touched as output is produced, which
            // the cap stops.
            let decoder = zstd::stream::read::Decoder::with_buffer(&input[..])
                .map_err(|e| corrupt(e.to_string()))?;
            read_capped(decoder, limit).map_err(|e| e.into_error(codec, limit))?
        }
        Compression::Snappy => snappy(input, limit)?,
    };
    Ok(Bytes::from(out))
}

/// Java's SnappyOutputStream (xerial) framing, which Kafka clients use: this header, then
/// blocks of `[u32 big-endian length][raw snappy]`.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;

fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt {
        codec: Compression::Snappy,
        reason,
    };
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        snappy_block(input, &mut out, limit)
            .map_err(|e| e.into_error(Compression::Snappy, limit))?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated block length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt(format!("block of {len} bytes is truncated")))?;
        snappy_block(block, &mut out, limit)
            .map_err(|e| e.into_error(Compression::Snappy, limit))?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`; its claimed length is checked before allocating.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Capped> {
    let io = |e: snap::Error| Capped::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let claimed = snap::raw::decompress_len(block).map_err(io)?;
    if claimed > limit - out.len() {
        return Err(Capped::TooLarge);
    }
    let start = out.len();
    out.resize(start + claimed, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(io)?;
    out.truncate(start + written);
    Ok(())
}

enum Capped {
    TooLarge,
    Io(std::io::Error),
}

impl Capped {
    fn into_error(self, codec: Compression, limit: usize) -> DecompressError {
        match self {
            Capped::TooLarge => DecompressError::TooLarge { limit },
            Capped::Io(e) => DecompressError::Corrupt {
                codec,
                reason: e.to_string(),
            },
        }
    }
}

/// Reads a decoder to its end, failing once more than `limit` bytes come out. The buffer grows
/// by doubling but never past `limit + 1`, so a bomb costs at most about `limit` bytes.
fn read_capped(mut reader: impl Read, limit: usize) -> Result<Vec<u8>, Capped> {
    const CHUNK: usize = 64 * 1024;
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Capped::Io(e)),
        };
        if n > limit - out.len() {
            return Err(Capped::TooLarge);
        }
        if out.capacity() - out.len() < n {
            let target = (out.len() * 2).max(CHUNK).min(limit).max(out.len() + n);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const MIB: usize = 1024 * 1024;

    fn zeros(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    fn lz4(data: &[u8]) -> Bytes {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, result) = e.finish();
        result.unwrap();
        Bytes::from(out)
    }

    fn zstd(data: &[u8]) -> Bytes {
        Bytes::from(zstd::encode_all(data, 19).unwrap())
    }

    fn xerial(data: &[u8]) -> Bytes {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for block in data.chunks(32 * 1024) {
            let compressed = snap::raw::Encoder::new().compress_vec(block).unwrap();
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&compressed);
        }
        Bytes::from(out)
    }

    fn every_codec(data: &[u8]) -> Vec<(Compression, Bytes)> {
        vec![
            (Compression::None, Bytes::copy_from_slice(data)),
            (Compression::Gzip, gzip(data)),
            (Compression::Lz4, lz4(data)),
            (Compression::Zstd, zstd(data)),
            (Compression::Snappy, xerial(data)),
            (
                Compression::Snappy,
                Bytes::from(snap::raw::Encoder::new().compress_vec(data).unwrap()),
            ),
        ]
    }

    #[test]
    fn round_trips_within_the_limit() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (codec, compressed) in every_codec(&data) {
            let out = decompress(codec, &compressed, data.len()).unwrap();
            assert_eq!(out.len(), data.len(), "{codec:?}");
            assert!(out == data, "{codec:?} output differs");
        }
    }

    #[test]
    fn one_byte_over_the_limit_is_refused_by_every_codec() {
        let data = zeros(MIB + 1);
        for (codec, compressed) in every_codec(&data).into_iter().skip(1) {
            assert_eq!(
                decompress(codec, &compressed, MIB),
                Err(DecompressError::TooLarge { limit: MIB }),
                "{codec:?}"
            );
        }
    }

    /// A raw snappy block whose header claims 4 GiB - 1 bytes: refused from the header alone.
    #[test]
    fn snappy_length_claim_is_checked_before_allocating() {
        let mut block = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        block.extend_from_slice(&[0; 16]);
        let claim = Bytes::from(block.clone());
        assert_eq!(
            decompress(Compression::Snappy, &claim, 100 * MIB),
            Err(DecompressError::TooLarge { limit: 100 * MIB })
        );
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        assert_eq!(
            decompress(Compression::Snappy, &Bytes::from(framed), 100 * MIB),
            Err(DecompressError::TooLarge { limit: 100 * MIB })
        );
    }

    /// 1 GiB of zeros in a few hundred KB for each streaming codec: refused at the 8 MiB cap
    /// without producing the gigabyte.
    #[test]
    fn streaming_bombs_stop_at_the_cap() {
        let gib_zeros = || std::iter::repeat_n(&[0u8; MIB][..], 1024);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        let mut zs = zstd::Encoder::new(Vec::new(), 3).unwrap();
        for chunk in gib_zeros() {
            gz.write_all(chunk).unwrap();
            lz.write_all(chunk).unwrap();
            zs.write_all(chunk).unwrap();
        }
        let (lz, result) = lz.finish();
        result.unwrap();
        let bombs = [
            (Compression::Gzip, Bytes::from(gz.finish().unwrap())),
            (Compression::Lz4, Bytes::from(lz)),
            (Compression::Zstd, Bytes::from(zs.finish().unwrap())),
        ];
        for (codec, bomb) in bombs {
            assert_eq!(
                decompress(codec, &bomb, 8 * MIB),
                Err(DecompressError::TooLarge { limit: 8 * MIB }),
                "{codec:?} ({} bytes)",
                bomb.len()
            );
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let garbage = Bytes::from_static(
            b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x09abc",
        );
        for codec in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            assert!(
                matches!(
                    decompress(codec, &garbage, MIB),
                    Err(DecompressError::Corrupt { .. })
                ),
                "{codec:?}"
            );
        }
    }
}

//! Length-prefixed frames: a big-endian i32 size, then that many bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is not positive")]
    NonPositive(i32),
    #[error("frame size {size} exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` is a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    match read_size(reader, max_frame_bytes).await? {
        Some(size) => read_body(reader, size).await.map(Some),
        None => Ok(None),
    }
}

/// Reads a frame's size prefix and checks it. `Ok(None)` is a clean close between frames.
pub async fn read_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<usize>, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf);
    if size <= 0 {
        return Err(FrameError::NonPositive(size));
    }
    let size = size as usize;
    if size > max_frame_bytes {
        return Err(FrameError::TooLarge {
            size,
            limit: max_frame_bytes,
        });
    }
    Ok(Some(size))
}

/// Reads the `size` bytes of a frame's body into a buffer of exactly that size, allocated up
/// front (the caller reserved `size` from the memory budget first). Pages are only touched as
/// bytes arrive, so a peer announcing 100 MiB and sending nothing costs no resident memory, and
/// a large frame is never copied by regrowing its buffer.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = size - buf.len();
        let n = (&mut *reader).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8], limit: usize) -> Result<Option<Bytes>, FrameError> {
        let mut r = bytes;
        read_frame(&mut r, limit).await
    }

    #[tokio::test]
    async fn reads_a_frame() {
        let got = read(&[0, 0, 0, 3, 1, 2, 3, 9], 10).await.unwrap().unwrap();
        assert_eq!(&got[..], &[1, 2, 3]);
    }

    #[tokio::test]
    async fn clean_eof_is_none() {
        assert!(read(&[], 10).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_bad_sizes() {
        assert!(matches!(
            read(&[0, 0, 0, 0], 10).await,
            Err(FrameError::NonPositive(0))
        ));
        assert!(matches!(
            read(&[0xff, 0xff, 0xff, 0xff], 10).await,
            Err(FrameError::NonPositive(-1))
        ));
        assert!(matches!(
            read(&[0, 0, 0, 11], 10).await,
            Err(FrameError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(matches!(
            read(&[0, 0, 0, 5, 1], 10).await,
            Err(FrameError::Truncated)
        ));
    }
}

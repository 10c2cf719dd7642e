//! One client connection: read a frame, check the API version against the table, decode,
//! handle, write the response. Requests on a connection are answered strictly in order, as a
//! Kafka broker does (idempotent producers rely on it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};

use crate::broker::Broker;
use crate::handlers::{self, api_name, api_versions, Outcome};
use crate::protocol::codec::{self, DecodeError};
use crate::protocol::frame::{read_frame, FrameError};
use crate::protocol::versions::{check, VersionCheck};

/// Kafka's connections.max.idle.ms default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a connection ended, for the log line and the metric.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Refused(String),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("encoding response failed: {0}")]
    Encode(anyhow::Error),
}

impl ConnectionEnd {
    fn reason(&self) -> &'static str {
        match self {
            ConnectionEnd::Frame(FrameError::TooLarge { .. }) => "frame_too_large",
            ConnectionEnd::Frame(FrameError::NonPositive(_)) => "frame_size_invalid",
            ConnectionEnd::Frame(_) => "io",
            ConnectionEnd::Decode(_) => "malformed_request",
            ConnectionEnd::Refused(_) => "unsupported_request",
            ConnectionEnd::Idle(_) => "idle",
            ConnectionEnd::Write(_) => "io",
            ConnectionEnd::Encode(_) => "encode",
        }
    }
}

pub async fn serve<S>(broker: Arc<Broker>, stream: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::new(writer);
    match run(&broker, &mut reader, &mut writer).await {
        Ok(()) => tracing::debug!(%peer, "client closed connection"),
        Err(end) => {
            broker
                .metrics
                .connections_closed_on_error
                .with_label_values(&[end.reason()])
                .inc();
            // A client can trigger all of these; none needs an operator.
            tracing::info!(%peer, reason = end.reason(), error = %end, "closing connection");
        }
    }
    let _ = writer.shutdown().await;
}

async fn run<R, W>(broker: &Broker, reader: &mut R, writer: &mut W) -> Result<(), ConnectionEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_frame = broker.config.limits.max_frame_bytes;
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(reader, max_frame)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(ConnectionEnd::Idle(IDLE_TIMEOUT)),
        };
        broker
            .metrics
            .network_bytes_in
            .inc_by(frame.len() as u64 + 4);
        let prefix = codec::peek_prefix(&frame)?;
        let correlation_id = codec::correlation_id(&frame).unwrap_or(0);
        let started = Instant::now();
        let (response_version, outcome) = match check(prefix.key, prefix.version) {
            VersionCheck::Supported => {
                let (header, request) = codec::decode_request(prefix, frame)?;
                tracing::trace!(api = ?prefix.key, version = prefix.version, correlation_id, "request");
                (
                    prefix.version,
                    handlers::handle(broker, &header, request).await,
                )
            }
            VersionCheck::ApiVersionsFallback => (
                0,
                Outcome::Respond(ResponseKind::ApiVersions(
                    api_versions::unsupported_version_fallback(),
                )),
            ),
            VersionCheck::Close => {
                return Err(ConnectionEnd::Refused(format!(
                    "{:?} v{} is not supported",
                    prefix.key, prefix.version
                )))
            }
        };
        let api = api_name(prefix.key);
        broker.metrics.requests.with_label_values(&[api]).inc();
        broker
            .metrics
            .request_seconds
            .with_label_values(&[api])
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Respond(body) => {
                let response = Response {
                    key: prefix.key,
                    version: response_version,
                    correlation_id,
                    body: &body,
                };
                write_response(broker, writer, &mut out, response).await?;
            }
            Outcome::NoResponse => {}
            Outcome::Close(reason) => return Err(ConnectionEnd::Refused(reason)),
        }
    }
}

struct Response<'a> {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &'a ResponseKind,
}

/// Above this, the reused response buffer is given back after use rather than kept for the
/// life of the connection.
const RETAINED_RESPONSE_BUFFER: usize = 8 * 1024 * 1024;

async fn write_response<W: AsyncWrite + Unpin>(
    broker: &Broker,
    writer: &mut W,
    out: &mut BytesMut,
    response: Response<'_>,
) -> Result<(), ConnectionEnd> {
    codec::encode_response(
        out,
        response.key,
        response.version,
        response.correlation_id,
        response.body,
    )
    .map_err(ConnectionEnd::Encode)?;
    broker.metrics.network_bytes_out.inc_by(out.len() as u64);
    writer.write_all(out).await.map_err(ConnectionEnd::Write)?;
    writer.flush().await.map_err(ConnectionEnd::Write)?;
    if out.capacity() > RETAINED_RESPONSE_BUFFER {
        *out = BytesMut::new();
    }
    Ok(())
}

//! One client connection: read a frame, check the API version against the table, decode,
//! handle, write the response. Responses go out strictly in request order, as a Kafka broker
//! sends them; Produce, Fetch and ListOffsets may be worked on concurrently in between, with
//! appends to each partition still in request order (idempotent producers rely on it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::handlers::{self, api_name, api_versions, Dispatch, Outcome};
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
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::new(writer);
    // Frames are read by their own task: reading is not cancel-safe, and the loop below waits
    // on new frames and finished requests at the same time.
    let (frames_tx, frames) = mpsc::channel(1);
    let reader_task = tokio::spawn(read_frames(
        reader,
        broker.config.limits.max_frame_bytes,
        frames_tx,
    ));
    let client_host = client_host(&peer);
    match run(&broker, &client_host, frames, &mut writer).await {
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
    reader_task.abort();
    let _ = writer.shutdown().await;
}

/// `/ip` as Kafka shows a client's host (DescribeGroups, kafka-consumer-groups).
fn client_host(peer: &str) -> String {
    let ip = peer
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| peer.to_string());
    format!("/{ip}")
}

type FrameResult = Result<Bytes, ConnectionEnd>;

async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    max_frame: usize,
    frames: mpsc::Sender<FrameResult>,
) {
    loop {
        let next =
            match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut reader, max_frame)).await {
                Ok(Ok(Some(frame))) => Ok(frame),
                Ok(Ok(None)) => return,
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(ConnectionEnd::Idle(IDLE_TIMEOUT)),
            };
        let failed = next.is_err();
        if frames.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// A request that finished, waiting for its turn to be answered.
struct Finished {
    key: ApiKey,
    response_version: i16,
    correlation_id: i32,
    started: Instant,
    outcome: Outcome,
}

/// What dispatching a frame produced.
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per request; boxing would add an allocation per request"
)]
enum Step<'a> {
    Concurrent(BoxFuture<'a, Finished>),
    Exclusive(Finished, RequestHeader, RequestKind),
}

/// Reads requests and answers them in order. Produce, Fetch and ListOffsets run concurrently
/// (up to `max_in_flight_per_connection`); other requests wait until everything before them
/// was answered, then run alone.
async fn run<W>(
    broker: &Broker,
    client_host: &str,
    mut frames: mpsc::Receiver<FrameResult>,
    writer: &mut W,
) -> Result<(), ConnectionEnd>
where
    W: AsyncWrite + Unpin,
{
    let max_in_flight = broker.config.limits.max_in_flight_per_connection;
    let mut out = BytesMut::new();
    let mut in_flight: FuturesOrdered<BoxFuture<'_, Finished>> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                answer(broker, writer, &mut out, done).await?;
            }
            frame = frames.recv(), if in_flight.len() < max_in_flight => {
                let Some(frame) = frame else {
                    // The client closed its side; what is still in flight cannot be answered.
                    return Ok(());
                };
                match dispatch(broker, frame?)? {
                    Step::Concurrent(work) => in_flight.push_back(work),
                    Step::Exclusive(mut pending, header, request) => {
                        while let Some(done) = in_flight.next().await {
                            answer(broker, writer, &mut out, done).await?;
                        }
                        pending.outcome = handlers::handle_exclusive(broker, client_host, &header, request).await;
                        answer(broker, writer, &mut out, pending).await?;
                    }
                }
            }
        }
    }
}

/// Checks the version, decodes, and decides how the request runs. Called in request order.
fn dispatch(broker: &Broker, frame: Bytes) -> Result<Step<'_>, ConnectionEnd> {
    broker
        .metrics
        .network_bytes_in
        .inc_by(frame.len() as u64 + 4);
    let prefix = codec::peek_prefix(&frame)?;
    let correlation_id = codec::correlation_id(&frame).unwrap_or(0);
    let started = Instant::now();
    let finished = move |response_version, outcome| Finished {
        key: prefix.key,
        response_version,
        correlation_id,
        started,
        outcome,
    };
    match check(prefix.key, prefix.version) {
        VersionCheck::Supported => {
            let (header, request) = codec::decode_request(prefix, frame)?;
            tracing::trace!(api = ?prefix.key, version = prefix.version, correlation_id, "request");
            Ok(match handlers::dispatch(broker, header, request) {
                Dispatch::Concurrent(work) => {
                    Step::Concurrent(Box::pin(
                        async move { finished(prefix.version, work.await) },
                    ))
                }
                Dispatch::Exclusive(header, request) => Step::Exclusive(
                    finished(prefix.version, Outcome::NoResponse),
                    header,
                    request,
                ),
            })
        }
        VersionCheck::ApiVersionsFallback => {
            let outcome = Outcome::Respond(ResponseKind::ApiVersions(
                api_versions::unsupported_version_fallback(),
            ));
            Ok(Step::Concurrent(Box::pin(std::future::ready(finished(
                0, outcome,
            )))))
        }
        VersionCheck::Close => Err(ConnectionEnd::Refused(format!(
            "{:?} v{} is not supported",
            prefix.key, prefix.version
        ))),
    }
}

/// Records metrics for a finished request and writes its response, if it has one.
async fn answer<W: AsyncWrite + Unpin>(
    broker: &Broker,
    writer: &mut W,
    out: &mut BytesMut,
    done: Finished,
) -> Result<(), ConnectionEnd> {
    let api = api_name(done.key);
    broker.metrics.requests.with_label_values(&[api]).inc();
    broker
        .metrics
        .request_seconds
        .with_label_values(&[api])
        .observe(done.started.elapsed().as_secs_f64());
    match done.outcome {
        Outcome::Respond(body) => {
            let response = Response {
                key: done.key,
                version: done.response_version,
                correlation_id: done.correlation_id,
                body: &body,
            };
            write_response(broker, writer, out, response).await
        }
        Outcome::NoResponse => Ok(()),
        Outcome::Close(reason) => Err(ConnectionEnd::Refused(reason)),
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

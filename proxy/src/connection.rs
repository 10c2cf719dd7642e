//! One client connection: read a frame, check the API version against the table, decode,
//! handle, write the response. Responses go out strictly in request order, as a Kafka broker
//! sends them; Produce, Fetch and ListOffsets may be worked on concurrently in between, with
//! appends to each partition still in request order (idempotent producers rely on it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::budget::Reservation;
use crate::handlers::{self, api_name, api_versions, Dispatch, Handled, Outcome};
use crate::protocol::codec::{self, DecodeError};
use crate::protocol::frame::{read_body, read_size, FrameError};
use crate::protocol::versions::{check, VersionCheck};
use crate::security::Session;

/// Why a connection ended, for the log line and the metric.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("request frame not complete {0:?} after its first byte")]
    SlowRequest(Duration),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("client read no response bytes for {0:?}")]
    WriteTimeout(Duration),
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
            ConnectionEnd::Unauthenticated(_) => "unauthenticated",
            ConnectionEnd::Idle(_) => "idle",
            ConnectionEnd::SlowRequest(_) => "request_read_timeout",
            ConnectionEnd::Write(_) => "io",
            ConnectionEnd::WriteTimeout(_) => "write_timeout",
            ConnectionEnd::Encode(_) => "encode",
        }
    }
}

pub async fn serve<S>(broker: Arc<Broker>, stream: S, peer: String, session: Session)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let limits = &broker.config.limits;
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    let (reader, writer) = tokio::io::split(stream);
    // Frames are read by their own task: reading is not cancel-safe, and the loop below waits
    // on new frames and finished requests at the same time.
    let (frames_tx, frames) = mpsc::channel(1);
    let reader_task = AbortOnDrop(tokio::spawn(read_frames(reader, broker.clone(), frames_tx)));
    // Responses are written by their own task too, so a client that stops reading never stops
    // this connection's requests from being worked on (a Produce holds its partition's place in
    // the append line until it runs); only the reading of new requests waits.
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let mut writer_task = AbortOnDrop(tokio::spawn(write_responses(
        writer,
        out_rx,
        write_timeout,
        broker.clone(),
    )));
    let client_host = client_host(&peer);
    let scope = handlers::ConnectionScope::new(&broker, session);
    let result = run(
        &broker,
        &scope,
        &client_host,
        frames,
        &out_tx,
        &mut writer_task.0,
    )
    .await;
    drop(reader_task);
    // What was answered before the end still goes out (Kafka closes after the failed request).
    drop(out_tx);
    let flushed = if writer_task.0.is_finished() {
        None
    } else {
        match tokio::time::timeout(write_timeout, &mut writer_task.0).await {
            Ok(done) => Some(done),
            Err(_) => Some(Ok(Err(ConnectionEnd::WriteTimeout(write_timeout)))),
        }
    };
    let end = match (result, flushed) {
        (Err(end), _) => Some(end),
        (Ok(()), Some(Ok(Err(end)))) => Some(end),
        _ => None,
    };
    match end {
        None => tracing::debug!(%peer, "client closed connection"),
        Some(end) => {
            broker
                .metrics
                .connections_closed_on_error
                .with_label_values(&[end.reason()])
                .inc();
            // A client can trigger all of these; none needs an operator.
            tracing::info!(%peer, reason = end.reason(), error = %end, "closing connection");
        }
    }
}

/// The reader and writer tasks of a connection end with it, also when the proxy shuts down and
/// drops the connection's future (a reader left behind would keep the socket open).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `/ip` as Kafka shows a client's host (DescribeGroups, kafka-consumer-groups).
fn client_host(peer: &str) -> String {
    let ip = peer
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| peer.to_string());
    format!("/{ip}")
}

/// A request frame and the budget it holds until its response is written.
type FrameResult = Result<(Bytes, Reservation), ConnectionEnd>;

/// Reads frames until the client closes, a limit is broken, or the connection ends. Before a
/// frame's body is read its size is reserved from the memory budget; while the budget is used up
/// the socket is not read (back-pressure).
async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    broker: Arc<Broker>,
    frames: mpsc::Sender<FrameResult>,
) {
    let limits = &broker.config.limits;
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let slow = Duration::from_millis(limits.request_read_timeout_ms);
    loop {
        let next = async {
            let size = match tokio::time::timeout(idle, first_byte(&mut reader)).await {
                Err(_) => return Err(ConnectionEnd::Idle(idle)),
                Ok(Err(e)) => return Err(FrameError::from(e).into()),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(first))) => {
                    let first = [first];
                    let mut prefix = (&first[..]).chain(&mut reader);
                    let rest = read_size(&mut prefix, limits.max_frame_bytes);
                    match tokio::time::timeout(slow, rest).await {
                        Err(_) => return Err(ConnectionEnd::SlowRequest(slow)),
                        Ok(Err(e)) => return Err(e.into()),
                        Ok(Ok(None)) => return Err(FrameError::Truncated.into()),
                        Ok(Ok(Some(size))) => size,
                    }
                }
            };
            let reservation = broker.budget.reserve_frame(size).await;
            match tokio::time::timeout(slow, read_body(&mut reader, size)).await {
                Err(_) => Err(ConnectionEnd::SlowRequest(slow)),
                Ok(Err(e)) => Err(e.into()),
                Ok(Ok(frame)) => Ok(Some((frame, reservation))),
            }
        }
        .await;
        let next = match next {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return,
            Err(end) => Err(end),
        };
        let failed = next.is_err();
        if frames.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// Waits for the first byte of the next frame; `None` on a clean close.
async fn first_byte<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    match reader.read(&mut byte).await? {
        0 => Ok(None),
        _ => Ok(Some(byte[0])),
    }
}

/// An encoded response and what it holds (its request's frame budget, a Fetch's response
/// budget, the connection's in-flight slot) until it is written.
struct Outgoing {
    frame: Bytes,
    _held: Held,
}

/// Given back when the response is written or the request dropped. Never read: holding is
/// the point.
#[derive(Default)]
struct Held {
    _frame: Reservation,
    _response: Reservation,
    _slot: Option<OwnedSemaphorePermit>,
}

/// Writes responses in order. A write that makes no progress for `timeout` ends the
/// connection; a large response to a slow but live client is fine as long as bytes move.
async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut responses: mpsc::UnboundedReceiver<Outgoing>,
    timeout: Duration,
    broker: Arc<Broker>,
) -> Result<(), ConnectionEnd> {
    const CHUNK: usize = 256 * 1024;
    while let Some(response) = responses.recv().await {
        for chunk in response.frame.chunks(CHUNK) {
            match tokio::time::timeout(timeout, writer.write_all(chunk)).await {
                Err(_) => return Err(ConnectionEnd::WriteTimeout(timeout)),
                Ok(Err(e)) => return Err(ConnectionEnd::Write(e)),
                Ok(Ok(())) => {}
            }
        }
        broker
            .metrics
            .network_bytes_out
            .inc_by(response.frame.len() as u64);
    }
    match tokio::time::timeout(timeout, writer.shutdown()).await {
        Err(_) => Err(ConnectionEnd::WriteTimeout(timeout)),
        Ok(_) => Ok(()),
    }
}

/// A request that finished, waiting for its turn to be answered.
struct Finished {
    key: ApiKey,
    response_version: i16,
    correlation_id: i32,
    started: Instant,
    handled: Handled,
    held: Held,
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

/// Reads requests and answers them in order. Produce, Fetch and ListOffsets run concurrently;
/// other requests wait until everything before them was answered, then run alone. At most
/// `max_in_flight_per_connection` requests are worked on or waiting to be written at once.
async fn run(
    broker: &Broker,
    scope: &handlers::ConnectionScope,
    client_host: &str,
    mut frames: mpsc::Receiver<FrameResult>,
    out: &mpsc::UnboundedSender<Outgoing>,
    writer: &mut JoinHandle<Result<(), ConnectionEnd>>,
) -> Result<(), ConnectionEnd> {
    let slots = Arc::new(Semaphore::new(
        broker.config.limits.max_in_flight_per_connection,
    ));
    let mut in_flight: FuturesOrdered<BoxFuture<'_, Finished>> = FuturesOrdered::new();
    let mut reading = true;
    // A slot is taken before the next frame is received, so that slots given back by the
    // writer task wake this loop.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    loop {
        if !reading && in_flight.is_empty() {
            // The client closed its side and everything it sent was answered.
            return Ok(());
        }
        tokio::select! {
            biased;
            ended = &mut *writer => {
                return Err(match ended {
                    Ok(Err(end)) => end,
                    _ => ConnectionEnd::Write(std::io::ErrorKind::BrokenPipe.into()),
                });
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                answer(broker, out, done)?;
            }
            taken = slots.clone().acquire_owned(), if reading && slot.is_none() => {
                slot = taken.ok();
            }
            frame = frames.recv(), if reading && slot.is_some() => {
                let Some(frame) = frame else {
                    // Half-closed: requests already read are still worked on and answered.
                    reading = false;
                    continue;
                };
                let (frame, budget) = frame?;
                // Permissions read again when stale, before this request is authorized.
                scope.session.access.refresh(&*broker.backend).await;
                let held = Held {
                    _frame: budget,
                    _response: Reservation::default(),
                    _slot: slot.take(),
                };
                match dispatch(broker, scope, frame, held)? {
                    Step::Concurrent(work) => in_flight.push_back(work),
                    Step::Exclusive(mut pending, header, request) => {
                        while let Some(done) = in_flight.next().await {
                            answer(broker, out, done)?;
                        }
                        pending.handled =
                            handlers::handle_exclusive(broker, scope, client_host, &header, request).await.into();
                        answer(broker, out, pending)?;
                    }
                }
            }
        }
    }
}

/// Checks the version, decodes, and decides how the request runs. Called in request order.
fn dispatch<'a>(
    broker: &'a Broker,
    scope: &handlers::ConnectionScope,
    frame: Bytes,
    held: Held,
) -> Result<Step<'a>, ConnectionEnd> {
    broker
        .metrics
        .network_bytes_in
        .inc_by(frame.len() as u64 + 4);
    let prefix = codec::peek_prefix(&frame)?;
    scope
        .session
        .admit(prefix.key)
        .map_err(ConnectionEnd::Unauthenticated)?;
    let correlation_id = codec::correlation_id(&frame).unwrap_or(0);
    let started = Instant::now();
    let finished = move |response_version, handled| Finished {
        key: prefix.key,
        response_version,
        correlation_id,
        started,
        handled,
        held,
    };
    match check(prefix.key, prefix.version) {
        VersionCheck::Supported => {
            let (header, request) = codec::decode_request(prefix, frame)?;
            tracing::trace!(api = ?prefix.key, version = prefix.version, correlation_id, "request");
            Ok(match handlers::dispatch(broker, scope, header, request) {
                Dispatch::Concurrent(work) => {
                    Step::Concurrent(Box::pin(
                        async move { finished(prefix.version, work.await) },
                    ))
                }
                Dispatch::Exclusive(header, request) => Step::Exclusive(
                    finished(prefix.version, Outcome::NoResponse.into()),
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
                0,
                outcome.into(),
            )))))
        }
        VersionCheck::Close => Err(ConnectionEnd::Refused(format!(
            "{:?} v{} is not supported",
            prefix.key, prefix.version
        ))),
    }
}

/// Records metrics for a finished request and hands its response, if it has one, to the
/// writer, with what the request holds.
fn answer(
    broker: &Broker,
    out: &mpsc::UnboundedSender<Outgoing>,
    done: Finished,
) -> Result<(), ConnectionEnd> {
    let api = api_name(done.key);
    broker.metrics.requests.with_label_values(&[api]).inc();
    broker
        .metrics
        .request_seconds
        .with_label_values(&[api])
        .observe(done.started.elapsed().as_secs_f64());
    let Handled {
        outcome,
        budget: response_budget,
    } = done.handled;
    match outcome {
        Outcome::Respond(body) => {
            let frame =
                codec::encode_response(done.key, done.response_version, done.correlation_id, &body)
                    .map_err(ConnectionEnd::Encode)?;
            drop(body);
            let mut held = done.held;
            held._response = response_budget;
            held._response.shrink_to(frame.len());
            out.send(Outgoing { frame, _held: held })
                .map_err(|_| ConnectionEnd::Write(std::io::ErrorKind::BrokenPipe.into()))
        }
        Outcome::NoResponse => Ok(()),
        Outcome::Close(reason) => Err(ConnectionEnd::Refused(reason)),
    }
}

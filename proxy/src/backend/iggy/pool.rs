//! A pool of logged-in Iggy TCP clients.
//!
//! An SDK client carries one request at a time (a lock spans request and reply), so one client
//! would serialize the whole proxy; logging in is slow (Argon2 on the server), so clients are
//! logged in once and reused. Each call goes to the least busy connected client.
//!
//! The SDK's own reconnection is turned off: it silently re-sends a request after reconnecting,
//! which for a send can append the batch twice and break offset assignment. Instead a failed
//! connection is dropped and rebuilt (connect + login) by the next caller or by the keepalive
//! task, and only requests that are safe to repeat are retried.
//!
//! While Iggy cannot be reached (see `reachability`), requests do not open connections: they
//! fail at once, and the keepalive task alone tries again, with backoff.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use iggy::prelude::{
    AutoLogin, Client, IggyError, SystemClient, TcpClient, TcpClientConfig,
    TcpClientReconnectionConfig, UserClient,
};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use super::error::is_connection_error;
use super::reachability::{Backoff, Failure, Reachability};
use crate::config::IggyTls;

/// Bound on connect + login; an unreachable address otherwise waits for the OS TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one request. The SDK has none, and a request stuck on a half-open connection would
/// hold that client forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle clients are pinged and lost ones rebuilt, so failures surface before a
/// request needs the client (and servers with heartbeats enabled keep our sessions).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Whether a failed request may be sent again on a fresh connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent admin calls.
    Once,
    /// Sends: a request lost with its connection may still have been appended.
    Never,
}

/// Everything needed to open one logged-in SDK client. `Debug` hides the password.
#[derive(Clone)]
pub struct Credentials {
    pub address: String,
    pub username: String,
    pub password: String,
    pub tls: IggyTls,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

impl Credentials {
    /// A connected, logged-in client with the proxy's settings: TCP_NODELAY, TLS as
    /// configured, no automatic reconnection or login (a lost connection is an error the
    /// caller handles, never a hidden retry loop).
    pub async fn login(&self) -> Result<TcpClient, IggyError> {
        let config = TcpClientConfig {
            server_address: self.address.clone(),
            tls_enabled: self.tls.enabled,
            tls_domain: self.tls.server_name.clone().unwrap_or_default(),
            tls_ca_file: self
                .tls
                .ca_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            tls_validate_certificate: true,
            auto_login: AutoLogin::Disabled,
            reconnection: TcpClientReconnectionConfig {
                enabled: false,
                ..TcpClientReconnectionConfig::default()
            },
            nodelay: true,
            ..TcpClientConfig::default()
        };
        let client = TcpClient::create(Arc::new(config))?;
        Client::connect(&client).await?;
        client.login_user(&self.username, &self.password).await?;
        Ok(client)
    }
}

pub(crate) struct Pool {
    inner: Arc<Inner>,
    keepalive: JoinHandle<()>,
}

struct Inner {
    slots: Vec<Slot>,
    next: AtomicUsize,
    credentials: Credentials,
    /// Connections lost so far. A lost connection may mean a restarted server that dropped
    /// unsaved messages, so offset state learned before a loss is re-read (see `offsets`).
    losses: AtomicU64,
    reachability: Arc<Reachability>,
}

#[derive(Default)]
struct Slot {
    /// The client and a generation, bumped on every rebuild so that concurrent failures of one
    /// connection rebuild it once.
    state: RwLock<(Option<Arc<TcpClient>>, u64)>,
    /// Mirrors `state.0.is_some()` for lock-free picking.
    connected: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

impl Pool {
    /// Connects and logs in `size` clients (at least one) concurrently; fails if any fails.
    /// Connection failures, then and later, are reported to `reachability`.
    pub(crate) async fn connect(
        credentials: Credentials,
        size: usize,
        reachability: Arc<Reachability>,
    ) -> Result<Self, IggyError> {
        let inner = Arc::new(Inner {
            slots: (0..size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            credentials,
            losses: AtomicU64::new(0),
            reachability,
        });
        let opened = futures::future::join_all(
            inner
                .slots
                .iter()
                .map(|slot| inner.open(slot, Opener::Background)),
        )
        .await;
        opened.into_iter().collect::<Result<Vec<_>, _>>()?;
        let keepalive = tokio::spawn(keepalive(Arc::downgrade(&inner)));
        Ok(Self { inner, keepalive })
    }

    /// How many connections have been lost since the pool was created.
    pub(crate) fn losses(&self) -> u64 {
        self.inner.losses.load(Ordering::Acquire)
    }

    /// Runs `f` with a client. On a connection failure the client is discarded and, with
    /// `Retry::Once`, `f` runs once more on a new connection in the same slot (another slot's
    /// connection may be just as dead, e.g. after a server restart).
    pub(crate) async fn run<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T, IggyError>
    where
        F: Fn(Arc<TcpClient>) -> Fut,
        Fut: Future<Output = Result<T, IggyError>>,
    {
        self.inner.run(Lane::Any, retry, f).await
    }

    /// As [`Pool::run`], for a request that moves megabytes: it never takes the connections
    /// kept for small requests (see [`Lane`]).
    pub(crate) async fn run_bulk<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T, IggyError>
    where
        F: Fn(Arc<TcpClient>) -> Fut,
        Fut: Future<Output = Result<T, IggyError>>,
    {
        self.inner.run(Lane::Bulk, retry, f).await
    }

    /// A handle for background tasks: it runs requests like [`Pool::run`] and keeps the
    /// connections alive while it exists, but not the keepalive task.
    pub(crate) fn runner(&self) -> Runner {
        Runner(self.inner.clone())
    }
}

/// See [`Pool::runner`].
#[derive(Clone)]
pub(crate) struct Runner(Arc<Inner>);

impl Runner {
    pub(crate) async fn run<T, F, Fut>(
        &self,
        lane: Lane,
        retry: Retry,
        f: F,
    ) -> Result<T, IggyError>
    where
        F: Fn(Arc<TcpClient>) -> Fut,
        Fut: Future<Output = Result<T, IggyError>>,
    {
        self.0.run(lane, retry, f).await
    }
}

/// Which connections a request may use. The SDK does one request at a time per connection, so
/// a few requests moving 100 MB each could occupy every connection while a small produce
/// waits behind them; the last connection (of two or more) is kept for requests that are not
/// bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Any,
    Bulk,
}

/// Payloads at least this large travel in the bulk lane.
pub(crate) const BULK_BYTES: usize = 1024 * 1024;

impl Inner {
    async fn run<T, F, Fut>(&self, lane: Lane, retry: Retry, f: F) -> Result<T, IggyError>
    where
        F: Fn(Arc<TcpClient>) -> Fut,
        Fut: Future<Output = Result<T, IggyError>>,
    {
        let slot = self.pick(lane);
        match self.attempt(slot, &f, Opener::Request).await {
            Err(e) if retry == Retry::Once && is_connection_error(&e) => {
                self.attempt(slot, &f, Opener::Request).await
            }
            result => result,
        }
    }

    /// The least busy slot of the lane, preferring connected ones; the scan starts at a
    /// rotating index so ties spread out.
    fn pick(&self, lane: Lane) -> &Slot {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = match lane {
            Lane::Bulk if self.slots.len() > 1 => self.slots.len() - 1,
            _ => self.slots.len(),
        };
        (0..n)
            .map(|i| &self.slots[(start + i) % n])
            .min_by_key(|s| {
                (
                    !s.connected.load(Ordering::Relaxed),
                    s.in_flight.load(Ordering::Relaxed),
                )
            })
            .unwrap_or(&self.slots[0])
    }

    async fn attempt<T, F, Fut>(&self, slot: &Slot, f: &F, opener: Opener) -> Result<T, IggyError>
    where
        F: Fn(Arc<TcpClient>) -> Fut,
        Fut: Future<Output = Result<T, IggyError>>,
    {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&slot.in_flight);
        let (client, generation) = self.client(slot, opener).await?;
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, f(client)).await {
            Ok(result) => result,
            Err(_) => Err(IggyError::TaskTimeout),
        };
        if let Err(e) = &result {
            if is_connection_error(e) || matches!(e, IggyError::TaskTimeout) {
                tracing::warn!(error = %e, "iggy connection lost; it will be rebuilt");
                self.losses.fetch_add(1, Ordering::AcqRel);
                discard(slot, generation).await;
            }
        }
        result.map_err(|e| match e {
            IggyError::TaskTimeout => IggyError::Disconnected,
            e => e,
        })
    }

    /// The slot's client, connecting and logging in first if it has none.
    async fn client(
        &self,
        slot: &Slot,
        opener: Opener,
    ) -> Result<(Arc<TcpClient>, u64), IggyError> {
        {
            let state = slot.state.read().await;
            if let Some(client) = &state.0 {
                return Ok((client.clone(), state.1));
            }
        }
        self.open(slot, opener).await
    }

    /// Builds a client for an empty slot. Callers racing here wait on the write lock and then
    /// use the client the first one built.
    async fn open(&self, slot: &Slot, opener: Opener) -> Result<(Arc<TcpClient>, u64), IggyError> {
        if opener == Opener::Request && self.reachability.is_down() {
            return Err(IggyError::NotConnected);
        }
        let mut state = slot.state.write().await;
        if let Some(client) = &state.0 {
            return Ok((client.clone(), state.1));
        }
        let login = tokio::time::timeout(CONNECT_TIMEOUT, self.credentials.login()).await;
        let client = match login.unwrap_or(Err(IggyError::CannotEstablishConnection)) {
            Ok(client) => Arc::new(client),
            Err(e) => {
                let failure = Failure::diagnose(&self.credentials, &e).await;
                self.reachability.down(failure);
                return Err(e);
            }
        };
        self.reachability.up();
        state.0 = Some(client.clone());
        state.1 += 1;
        slot.connected.store(true, Ordering::Relaxed);
        Ok((client, state.1))
    }
}

/// Drops the slot's client if it is still the one that failed.
async fn discard(slot: &Slot, generation: u64) {
    let mut state = slot.state.write().await;
    if state.1 == generation && state.0.is_some() {
        state.0 = None;
        slot.connected.store(false, Ordering::Relaxed);
    }
}

/// Who needs a connection opened: requests fail fast while Iggy is unreachable, the
/// background tasks (startup, keepalive) try anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Request,
    Background,
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pings idle clients and rebuilds lost ones until the pool is dropped: every
/// [`KEEPALIVE_INTERVAL`] while Iggy is reachable, with backoff while it is not (then one
/// connection is tried per round, not all).
async fn keepalive(pool: Weak<Inner>) {
    let mut backoff = Backoff::default();
    loop {
        let down = match pool.upgrade() {
            Some(pool) => pool.reachability.is_down(),
            None => return,
        };
        let delay = if down {
            backoff.next_delay()
        } else {
            backoff = Backoff::default();
            KEEPALIVE_INTERVAL
        };
        tokio::time::sleep(delay).await;
        let Some(pool) = pool.upgrade() else { return };
        for slot in &pool.slots {
            if slot.in_flight.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let ping = |c: Arc<TcpClient>| async move { c.ping().await };
            if let Err(e) = pool.attempt(slot, &ping, Opener::Background).await {
                tracing::debug!(error = %e, "iggy keepalive failed");
                if pool.reachability.is_down() {
                    break;
                }
            }
        }
    }
}

//! Accept loop: enforces the connection limit and hands each socket to its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::connection;
use crate::shutdown::Shutdown;

pub async fn run(broker: Arc<Broker>, listener: TcpListener, mut shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(broker.config.limits.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.recv() => return,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Typically EMFILE: wait for descriptors to free up instead of spinning.
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            broker.metrics.connections_rejected.inc();
            tracing::warn!(%peer, limit = broker.config.limits.max_connections, "connection limit reached, closing new connection");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        broker.metrics.connections_total.inc();
        broker.metrics.connections_open.inc();
        let broker = broker.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = connection::serve(broker.clone(), socket, peer.to_string()) => {}
                () = conn_shutdown.recv() => {}
            }
            broker.metrics.connections_open.dec();
            drop(permit);
        });
    }
}

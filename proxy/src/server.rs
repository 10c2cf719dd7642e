//! Accept loop of one listener: enforces the connection limit (shared by all listeners), runs
//! the TLS handshake when the listener has TLS, and hands each connection to its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::connection;
use crate::security::tls::CertificateIdentity;
use crate::security::ListenerSecurity;
use crate::shutdown::Shutdown;

pub async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    security: Arc<ListenerSecurity>,
    limit: Arc<Semaphore>,
    mut shutdown: Shutdown,
) {
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
        let security = security.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = handle(broker.clone(), &security, socket, peer.to_string()) => {}
                () = conn_shutdown.recv() => {}
            }
            broker.metrics.connections_open.dec();
            drop(permit);
        });
    }
}

/// One accepted socket: TLS first where the listener has it, then the Kafka connection.
async fn handle(broker: Arc<Broker>, security: &ListenerSecurity, socket: TcpStream, peer: String) {
    let Some(tls) = &security.tls else {
        connection::serve(broker, socket, peer, security.session(None)).await;
        return;
    };
    let timeout = Duration::from_millis(broker.config.limits.request_read_timeout_ms);
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(socket)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            broker
                .metrics
                .connections_closed_on_error
                .with_label_values(&["tls_handshake"])
                .inc();
            // A client can cause this (an untrusted certificate, plaintext on a TLS port).
            tracing::info!(%peer, listener = %security.name, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            broker
                .metrics
                .connections_closed_on_error
                .with_label_values(&["tls_handshake"])
                .inc();
            tracing::info!(%peer, listener = %security.name, "TLS handshake timed out");
            return;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| CertificateIdentity::of(cert));
    if let Some(identity) = &identity {
        tracing::debug!(%peer, principal = %identity.principal, "client certificate accepted");
    }
    connection::serve(broker, stream, peer, security.session(identity)).await;
}

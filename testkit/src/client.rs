//! One logged-in SDK client.

use std::path::Path;
use std::sync::Arc;

use iggy::prelude::{
    AutoLogin, Client, IggyError, TcpClient, TcpClientConfig, TcpClientReconnectionConfig,
    UserClient,
};

/// What failed while opening a client, with the SDK's error as the source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot create Iggy client")]
    Create(#[source] IggyError),
    #[error("cannot connect to Iggy at {address}")]
    Connect {
        address: String,
        #[source]
        source: IggyError,
    },
    #[error("cannot log in to Iggy at {address} as {username}")]
    Login {
        address: String,
        username: String,
        #[source]
        source: IggyError,
    },
}

/// Connects to the TCP transport at `address` and logs in. The client uses the proxy pool's
/// settings (TCP_NODELAY, no automatic reconnection or login), so a benchmark baseline measures
/// the SDK as the proxy drives it, and a lost server shows as an error instead of a retry loop.
pub async fn connect(
    address: &str,
    username: &str,
    password: &str,
) -> Result<TcpClient, ConnectError> {
    connect_with(address, username, password, None).await
}

/// [`connect`], over TLS when `tls_ca_file` names the CA that signed the server's certificate.
pub async fn connect_with(
    address: &str,
    username: &str,
    password: &str,
    tls_ca_file: Option<&Path>,
) -> Result<TcpClient, ConnectError> {
    let config = TcpClientConfig {
        server_address: address.to_string(),
        tls_enabled: tls_ca_file.is_some(),
        tls_ca_file: tls_ca_file.map(|p| p.to_string_lossy().into_owned()),
        auto_login: AutoLogin::Disabled,
        reconnection: TcpClientReconnectionConfig {
            enabled: false,
            ..TcpClientReconnectionConfig::default()
        },
        nodelay: true,
        ..TcpClientConfig::default()
    };
    let client = TcpClient::create(Arc::new(config)).map_err(ConnectError::Create)?;
    Client::connect(&client)
        .await
        .map_err(|source| ConnectError::Connect {
            address: address.to_string(),
            source,
        })?;
    client
        .login_user(username, password)
        .await
        .map_err(|source| ConnectError::Login {
            address: address.to_string(),
            username: username.to_string(),
            source,
        })?;
    Ok(client)
}

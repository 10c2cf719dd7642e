//! What the proxy's integration tests and the benchmark need to run against a real Iggy server:
//! [`IggyServer`] starts the binary as a child process on a fresh data directory and a free port
//! and kills it when dropped; [`connect`] opens a logged-in SDK client with the settings the
//! proxy's connection pool uses.
//!
//! ```no_run
//! # async fn example() {
//! let Some(server) = iggy_testkit::IggyServer::from_env().await else {
//!     return; // IGGY_SERVER_BIN is unset: the skip notice has been printed
//! };
//! let client = iggy_testkit::connect(server.address(), server.username(), server.password())
//!     .await
//!     .expect("connect");
//! # drop(client);
//! # }
//! ```

mod client;
mod files;
pub mod kube;
mod server;
pub mod tls;

pub use client::{connect, connect_with, ConnectError};
pub use files::{tail, temp_dir};
pub use server::{IggyServer, Options, ENV_BIN, PASSWORD, USERNAME};

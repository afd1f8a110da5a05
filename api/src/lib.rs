//! The NodeDebugService protocol: how the host looks into a cairn node.
//!
//! `proto/cairn/debug/v1/debug.proto` is the contract; `build.rs` compiles it with protox
//! (pure Rust, no host `protoc`) and tonic generates the messages, the client and the
//! server trait into [`v1`]. The agent implements the server (feature `debug-service`);
//! `dbg` and the boot tests use the client through [`client::connect`], which fails
//! within a deadline and names the endpoint it could not reach.
//!
//! [`validate`] holds the limits every request must respect. The server applies them to
//! untrusted input and answers INVALID_ARGUMENT; clients may call the same functions to
//! refuse a bad request before sending it.
//!
//! Without its `proto` feature the crate is the part every cairn binary shares and no
//! protobuf: the port, the limits, and [`error_chain`], the one way the binaries turn an
//! error and its causes into text.

#[cfg(feature = "client")]
pub mod client;
mod error_chain;
pub mod names;
#[cfg(feature = "client")]
pub mod node_client;
#[cfg(feature = "node-config")]
pub mod node_config;
#[cfg(feature = "client")]
pub mod owner_client;
#[cfg(any(feature = "client", feature = "node-config"))]
pub mod pem;
pub mod validate;

pub use error_chain::error_chain;

/// Generated code of package `cairn.debug.v1`.
#[cfg(feature = "proto")]
pub mod v1 {
    #![allow(missing_docs, missing_debug_implementations, clippy::all)]
    tonic::include_proto!("cairn.debug.v1");
}

/// Package `cairn.debug.v1` under its proto path, where the generated code of
/// `cairn.node.v1` looks for the messages it imports.
#[cfg(feature = "proto")]
pub mod debug {
    pub use crate::v1;
}

/// Generated code of package `cairn.node.v1`, the owner's node API. Its messages are
/// [`v1`]'s; only the service and `GetKubeconfigRequest` are its own.
#[cfg(feature = "proto")]
pub mod node {
    /// The package itself.
    pub mod v1 {
        #![allow(missing_docs, missing_debug_implementations, clippy::all)]
        tonic::include_proto!("cairn.node.v1");
    }
}

/// The TCP port the agent serves on (docs/interfaces.md).
pub const DEBUG_PORT: u16 = names::port::DEBUG;

#[cfg(feature = "client")]
pub use client::{connect, connect_within, Client, ConnectError};
#[cfg(feature = "client")]
pub use node_client::NodeClient;

//! Compiles the NodeDebugService and NodeService `.proto` files with protox (pure Rust), so building needs no
//! host `protoc`, then generates the prost messages and tonic client and server.

use std::error::Error;

#[cfg_attr(not(feature = "proto"), allow(dead_code))]
const PROTOS: [&str; 2] = [
    "proto/cairn/debug/v1/debug.proto",
    "proto/cairn/node/v1/node.proto",
];

#[cfg(not(feature = "proto"))]
fn main() -> Result<(), Box<dyn Error>> {
    Ok(())
}

#[cfg(feature = "proto")]
fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        // Our own `client::connect` builds the channel, with a deadline and a clear
        // error; the generated `connect` would only add a second, vaguer way.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}

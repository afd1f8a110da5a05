//! The one error type of the benchmarks. Every variant names what it was working on (a
//! file, a program, a node, an API call), so a benchmark that cannot measure says
//! where; causes stay in `#[source]` and the binary prints the whole chain.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a benchmark could not measure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    #[error("invalid JSON in {}", .0.display())]
    Json(PathBuf, #[source] serde_json::Error),
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed ({status})\n--- output tail ---\n{tail}")]
    Failed {
        what: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("cannot read the initramfs {}", .0.display())]
    Initramfs(PathBuf, #[source] Box<cairn_initramfs::ReadError>),
    #[error("cannot assemble the initramfs {}", .0.display())]
    Archive(PathBuf, #[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot load the image config {}", .0.display())]
    Config(PathBuf, #[source] Box<cairn_image::config::ConfigError>),
    #[error("debian package {0}")]
    Deb(String, #[source] Box<cairn_image::deb::DebError>),
    #[error("node `{0}`")]
    Node(String, #[source] Box<cairn_qemu::NodeError>),
    #[error("image {}", .0.display())]
    Image(PathBuf, #[source] Box<cairn_qemu::image::ImageError>),
    #[error("cannot connect to node `{0}`")]
    Connect(String, #[source] Box<cairn_api::ConnectError>),
    #[error("debug API call {call} on node `{node}`")]
    Api {
        node: String,
        call: &'static str,
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("kubectl {args}: {stderr}")]
    Kubectl { args: String, stderr: String },
    #[error("{0}")]
    Unmeasurable(String),
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),
}

impl Error {
    /// A closure mapping an I/O error on `path` while reading.
    pub fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read(path, source)
    }

    /// A closure mapping an I/O error on `path` while writing.
    pub fn write(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Write(path, source)
    }

    /// A closure mapping a failed debug API call on `node`.
    pub fn api(node: &str, call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
        let node = node.to_owned();
        move |source| Error::Api {
            node,
            call,
            source: Box::new(source),
        }
    }

    /// A closure mapping a failed boot or wait of node `name`.
    pub fn node(name: &str) -> impl Fn(cairn_qemu::NodeError) -> Error + '_ {
        move |source| Error::Node(name.to_owned(), Box::new(source))
    }

    /// A closure mapping a Debian package error about `name`.
    pub fn deb(name: &str) -> impl FnOnce(cairn_image::deb::DebError) -> Error + '_ {
        move |source| Error::Deb(name.to_owned(), Box::new(source))
    }

    /// A closure mapping an error reading the initramfs at `path`.
    pub fn initramfs(path: impl Into<PathBuf>) -> impl FnOnce(cairn_initramfs::ReadError) -> Error {
        let path = path.into();
        move |source| Error::Initramfs(path, Box::new(source))
    }
}

/// `err` and every cause, one per `: `.
pub fn chain(err: &dyn std::error::Error) -> String {
    cairn_qemu::node::error_chain(err)
}

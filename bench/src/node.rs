//! Booting a node for a measurement, and talking to its debug service.

use std::path::PathBuf;
use std::time::Duration;

use cairn_api::Client;
use cairn_qemu::{AccelChoice, Image, Node, NodeConfig};

/// The CAIRN_READY line under TCG on a loaded 2-core host, with margin.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every benchmark needs.
#[derive(Debug, Clone)]
pub struct Bench {
    pub image_dir: PathBuf,
    pub results: PathBuf,
    pub accel: AccelChoice,
}

/// A booted node with a connected debug client; stopped when dropped.
pub struct Booted {
    pub node: Node,
    pub client: Client,
    pub accel: String,
}

impl Bench {
    /// Boots the image once (state under `target/bench/<name>`) and connects.
    pub async fn boot(&self, name: &str) -> Result<Booted, Error> {
        let image = Image::open(&self.image_dir)?;
        let accel = cairn_qemu::accel::resolve(self.accel, &image.kernel);
        let state = PathBuf::from("target/bench").join(name);
        let mut node = Node::start(&NodeConfig::new(image, accel, &state))?;
        node.wait_ready(READY_TIMEOUT)?;
        let endpoint = node
            .debug_endpoint()
            .ok_or("the launcher forwarded no debug port")?
            .to_owned();
        let client = cairn_api::connect_within(&endpoint, CONNECT_TIMEOUT).await?;
        Ok(Booted {
            node,
            client,
            accel: format!("{accel:?}").to_lowercase(),
        })
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = self.node.stop(Duration::from_secs(30));
    }
}

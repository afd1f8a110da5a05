//! Whether cluster DNS's upstream resolvers answer. CoreDNS forwards every name
//! outside `cluster.local` to the resolvers in the node's resolv.conf; when none of
//! them answers, cluster names still resolve, so the `cluster-dns` condition stays
//! true, but its reason names each silent upstream: pods then see outside lookups time
//! out, and the node says why.
//!
//! The check asks each upstream what CoreDNS's own health check asks (`. IN NS`, over
//! UDP), all at once, [`TRIES`] times [`TRY_WAIT`] each. Any answer counts, whatever its
//! code: a resolver that refuses or fails a query is reachable, and the pods get its
//! answer instead of a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::net::UdpSocket;

use crate::supervisor::{Probe, ProbeFuture};

/// Tries per upstream, and how long each waits for the answer: one lost datagram
/// (resolvers rate-limit bursts) is not an unreachable upstream.
pub const TRIES: u32 = 2;
pub const TRY_WAIT: Duration = Duration::from_secs(1);

/// Longest a check takes: the probe's timeout must be longer.
pub const CHECK_TIME: Duration = Duration::from_secs(TRY_WAIT.as_secs() * TRIES as u64);

/// `ready` (CoreDNS's own readiness), then the upstream check on the resolvers in
/// `resolv_conf`, read at each check (it is the file CoreDNS forwards by).
pub fn probe(ready: Arc<dyn Probe>, resolv_conf: PathBuf) -> Arc<dyn Probe> {
    Arc::new(UpstreamProbe {
        ready,
        resolv_conf,
        port: 53,
    })
}

struct UpstreamProbe {
    ready: Arc<dyn Probe>,
    resolv_conf: PathBuf,
    /// 53 but in tests, whose resolvers listen where they can.
    port: u16,
}

impl Probe for UpstreamProbe {
    fn check(&self) -> ProbeFuture {
        let ready = self.ready.check();
        let (resolv_conf, port) = (self.resolv_conf.clone(), self.port);
        Box::pin(async move {
            let note = ready.await?;
            // A few lines in a tmpfs: not worth a blocking-pool thread.
            let text = std::fs::read_to_string(&resolv_conf).unwrap_or_default();
            let silent = silent(&nameservers(&text, port)).await;
            Ok(note.or_else(|| describe(&silent)))
        })
    }
}

/// The name servers a resolv.conf lists, on `port` (53); lines that are not an
/// address are skipped (CoreDNS skips them too).
pub fn nameservers(resolv_conf: &str, port: u16) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// The upstreams among `servers` that answered none of [`TRIES`] queries.
pub async fn silent(servers: &[SocketAddr]) -> Vec<SocketAddr> {
    let answered = join_all(servers.iter().map(|server| answers(*server))).await;
    (servers.iter().zip(answered))
        .filter(|(_, answered)| !answered)
        .map(|(server, _)| *server)
        .collect()
}

/// The condition's note for `silent` upstreams, `None` when every one answered.
pub fn describe(silent: &[SocketAddr]) -> Option<String> {
    if silent.is_empty() {
        return None;
    }
    let list: Vec<String> = silent.iter().map(ToString::to_string).collect();
    let (noun, verb) = match silent.len() {
        1 => ("resolver", "does"),
        _ => ("resolvers", "do"),
    };
    Some(format!(
        "upstream {noun} {} {verb} not answer ({TRIES} queries, {}s each): \
         names outside the cluster fail",
        list.join(", "),
        TRY_WAIT.as_secs(),
    ))
}

/// Whether `server` answers a `. IN NS` query within [`TRIES`] × [`TRY_WAIT`].
async fn answers(server: SocketAddr) -> bool {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = UdpSocket::bind(local).await else {
        return false;
    };
    if socket.connect(server).await.is_err() {
        return false;
    }
    static NEXT_ID: AtomicU16 = AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let query = root_ns_query(id);
    let mut reply = [0u8; 512];
    for _ in 0..TRIES {
        if socket.send(&query).await.is_err() {
            return false;
        }
        let wait = tokio::time::timeout(TRY_WAIT, async {
            loop {
                match socket.recv(&mut reply).await {
                    Ok(n) if n >= 12 && reply[..2] == id.to_be_bytes() => return true,
                    Ok(_) => continue,
                    // ECONNREFUSED (ICMP port unreachable) and the like: no answer.
                    Err(_) => return false,
                }
            }
        });
        if let Ok(true) = wait.await {
            return true;
        }
    }
    false
}

/// A standard query, recursion desired, for the root's NS records.
fn root_ns_query(id: u16) -> Vec<u8> {
    let mut packet = Vec::with_capacity(17);
    packet.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no other records.
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    // QNAME "." (the empty label), QTYPE NS (2), QCLASS IN (1).
    packet.extend_from_slice(&[0, 0, 2, 0, 1]);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_give_port_53_addresses() {
        let text = "# cairn\nnameserver 10.0.2.3\nnameserver fd00::3\nsearch x\n\
                    nameserver not-an-address\n# nameserver 1.1.1.1\n";
        let expected: [SocketAddr; 2] = [
            "10.0.2.3:53".parse().unwrap(),
            "[fd00::3]:53".parse().unwrap(),
        ];
        assert_eq!(nameservers(text, 53), expected);
        assert!(nameservers("", 53).is_empty());
    }

    /// A resolver on loopback that answers every query with its id and a SERVFAIL.
    async fn answering() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80; // QR
                reply[3] = 0x02; // SERVFAIL: still an answer
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        address
    }

    /// A resolver that never answers: bound, never read, so no ICMP comes back either.
    fn quiet() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap()
    }

    #[tokio::test]
    async fn a_resolver_that_answers_is_not_silent_and_one_that_never_does_is() {
        let good = answering().await;
        let quiet = quiet();
        let bad = quiet.local_addr().unwrap();
        assert!(silent(&[good]).await.is_empty());
        assert_eq!(silent(&[good, bad]).await, [bad]);
        assert_eq!(describe(&[]), None);
        let note = describe(&[bad]).unwrap();
        assert!(
            note.starts_with(&format!("upstream resolver {bad} does not answer")),
            "{note}"
        );
    }

    fn probe_on(ready: Arc<dyn Probe>, resolv_conf: PathBuf, port: u16) -> UpstreamProbe {
        UpstreamProbe {
            ready,
            resolv_conf,
            port,
        }
    }

    #[tokio::test]
    async fn the_probe_is_ready_and_names_the_upstream_that_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
        let ready = || crate::supervisor::probe_fn(|| async { Ok(()) });
        let good = answering().await;
        let probe = probe_on(ready(), resolv.clone(), good.port());
        assert_eq!(probe.check().await, Ok(None));
        let quiet = quiet();
        let bad = quiet.local_addr().unwrap();
        let probe = probe_on(ready(), resolv.clone(), bad.port());
        let note = probe.check().await.unwrap().unwrap();
        assert!(
            note.contains(&format!("resolver {bad} does not answer")),
            "{note}"
        );
        std::fs::write(&resolv, "# no name server\n").unwrap();
        assert_eq!(probe.check().await, Ok(None), "no upstream, nothing to say");
        let unready = crate::supervisor::probe_fn(|| async { Err("not ready".to_owned()) });
        let probe = probe_on(unready, resolv, bad.port());
        assert_eq!(probe.check().await, Err("not ready".to_owned()));
    }
}

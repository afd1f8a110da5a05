//! Host ports for guest TCP forwards.
//!
//! A forward names the guest port and optionally the host port; without one the launcher
//! asks the kernel for a free port on 127.0.0.1 (bind to port 0, read it back, close) and
//! reports it. QEMU binds it a moment later; the gap is a race a busy CI host could lose,
//! which shows up as QEMU failing to start with the port named in `qemu.log`.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::str::FromStr;

use crate::command::PortForward;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No free port could be reserved.
    #[error("cannot find a free host port for guest port {guest}")]
    NoFreePort {
        /// The guest port being forwarded.
        guest: u16,
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// Two forwards use the same host port.
    #[error("host port {0} is forwarded twice")]
    Duplicate(u16),
}

/// A requested forward: `GUEST` (host port picked free) or `HOST:GUEST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRequest {
    /// Host port, or `None` for any free one.
    pub host: Option<u16>,
    /// Guest port.
    pub guest: u16,
}

impl FromStr for ForwardRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |text: &str| match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("invalid port {text:?} in forward {s:?}")),
            Ok(port) => Ok(port),
        };
        match s.split_once(':') {
            Some((host, guest)) => Ok(ForwardRequest {
                host: Some(port(host)?),
                guest: port(guest)?,
            }),
            None => Ok(ForwardRequest {
                host: None,
                guest: port(s)?,
            }),
        }
    }
}

/// A free TCP port on 127.0.0.1, as the kernel hands it out right now.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Turns requests into forwards, picking free host ports where none was given.
pub fn resolve(requests: &[ForwardRequest]) -> Result<Vec<PortForward>, PortError> {
    let mut forwards: Vec<PortForward> = Vec::with_capacity(requests.len());
    for request in requests {
        let host = match request.host {
            Some(host) => host,
            None => pick_unused(&forwards, request.guest)?,
        };
        if forwards.iter().any(|f| f.host == host) {
            return Err(PortError::Duplicate(host));
        }
        forwards.push(PortForward {
            host,
            guest: request.guest,
        });
    }
    Ok(forwards)
}

/// A free port not already taken by an earlier forward of the same node.
fn pick_unused(taken: &[PortForward], guest: u16) -> Result<u16, PortError> {
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "every try collided");
    for _ in 0..16 {
        match free_port() {
            Ok(port) if taken.iter().all(|f| f.host != port) => return Ok(port),
            Ok(_) => {}
            Err(err) => last_error = err,
        }
    }
    Err(PortError::NoFreePort {
        guest,
        source: last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_guest_or_host_colon_guest() {
        assert_eq!(
            "7837".parse(),
            Ok(ForwardRequest {
                host: None,
                guest: 7837
            })
        );
        assert_eq!(
            "17837:7837".parse(),
            Ok(ForwardRequest {
                host: Some(17837),
                guest: 7837
            })
        );
        for bad in ["", "0", "x", "1:0", "70000", "1:2:3"] {
            assert!(bad.parse::<ForwardRequest>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn resolve_keeps_fixed_ports_and_picks_distinct_free_ones() {
        let requests = [
            ForwardRequest {
                host: None,
                guest: 7837,
            },
            ForwardRequest {
                host: None,
                guest: 6443,
            },
            ForwardRequest {
                host: Some(1),
                guest: 22,
            },
        ];
        let forwards = resolve(&requests).unwrap();
        assert_eq!(forwards.len(), 3);
        assert_ne!(forwards[0].host, forwards[1].host);
        assert_eq!(forwards[2], PortForward { host: 1, guest: 22 });
    }

    #[test]
    fn the_same_host_port_twice_is_refused() {
        let requests = [
            ForwardRequest {
                host: Some(5000),
                guest: 1,
            },
            ForwardRequest {
                host: Some(5000),
                guest: 2,
            },
        ];
        assert!(matches!(
            resolve(&requests),
            Err(PortError::Duplicate(5000))
        ));
    }
}

//! The kernel command line's `ip=` parameter, nfsroot format
//! (Documentation/admin-guide/nfs/nfsroot.rst), static configuration only:
//!
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`
//!
//! The command line is untrusted input: [`parse`] is a pure function that never
//! panics and names the offending field in its error.

use std::net::Ipv4Addr;

/// Interface configured when `<device>` is empty.
pub const DEFAULT_DEVICE: &str = "eth0";
/// Longest interface name the kernel accepts (IFNAMSIZ - 1, netdevice(7)).
const MAX_DEVICE: usize = 15;
/// Longest `ip=` value accepted; real ones are well under 200 bytes.
const MAX_VALUE: usize = 1024;

/// A static IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: Ipv4Addr,
    /// Prefix length from the netmask.
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// `<hostname>`; the agent names the node itself and only reports this.
    pub hostname: Option<String>,
    pub device: String,
    /// `<dns0-ip>`, `<dns1-ip>`, in order.
    pub dns: Vec<Ipv4Addr>,
}

/// Why an `ip=` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("ip= is {0} bytes long, more than {MAX_VALUE}")]
    TooLong(usize),
    #[error("ip={0} asks for no configuration")]
    Off(String),
    #[error("ip= has {0} fields, at most 10")]
    TooManyFields(usize),
    #[error("ip= field {field} is empty")]
    Missing { field: &'static str },
    #[error("ip= field {field} {value:?} is not an IPv4 address")]
    Address { field: &'static str, value: String },
    #[error("ip= field {field} {value:?} is not a usable host address")]
    Unusable { field: &'static str, value: String },
    #[error("ip= field netmask {0:?} is not a contiguous netmask")]
    Netmask(String),
    #[error("ip= field device {0:?} is not a valid interface name")]
    Device(String),
    #[error("ip= field hostname {0:?} is not a valid host name")]
    Hostname(String),
    #[error("ip= field autoconf {0:?} is not supported (static only: off or none)")]
    Autoconf(String),
}

const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// The value of the last `ip=` word of a kernel command line (later words override
/// earlier ones, as for the kernel), if any.
pub fn find(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .rev()
        .find_map(|word| word.strip_prefix("ip="))
}

/// Parses an `ip=` value (without the `ip=`).
pub fn parse(value: &str) -> Result<IpConfig, ParseError> {
    if value.len() > MAX_VALUE {
        return Err(ParseError::TooLong(value.len()));
    }
    if matches!(value, "off" | "none" | "") {
        return Err(ParseError::Off(value.to_owned()));
    }
    // The kernel's short forms `ip=dhcp`, `ip=on`, ... are autoconf alone.
    if matches!(value, "on" | "any" | "dhcp" | "bootp" | "rarp" | "both") {
        return Err(ParseError::Autoconf(value.to_owned()));
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > FIELDS.len() {
        return Err(ParseError::TooManyFields(fields.len()));
    }
    let field = |index: usize| fields.get(index).copied().unwrap_or("");
    let autoconf = field(6);
    if !matches!(autoconf, "" | "off" | "none") {
        return Err(ParseError::Autoconf(autoconf.to_owned()));
    }
    let address = host_address(FIELDS[0], field(0))?;
    optional_address(FIELDS[1], field(1))?;
    let gateway = optional_address(FIELDS[2], field(2))?;
    let prefix = netmask_prefix(field(3))?;
    let hostname = hostname(field(4))?;
    let device = device(field(5))?;
    let mut dns = Vec::new();
    for index in [7, 8] {
        dns.extend(optional_address(FIELDS[index], field(index))?);
    }
    optional_address(FIELDS[9], field(9))?;
    Ok(IpConfig {
        address,
        prefix,
        gateway,
        hostname,
        device,
        dns,
    })
}

fn required_address(field: &'static str, value: &str) -> Result<Ipv4Addr, ParseError> {
    optional_address(field, value)?.ok_or(ParseError::Missing { field })
}

/// The node's own address must be one others can reach it at. `0.0.0.0`, broadcast,
/// multicast and loopback addresses would otherwise set `network` true and fail
/// later, less clearly, in the certificates and components that advertise the address.
fn host_address(field: &'static str, value: &str) -> Result<Ipv4Addr, ParseError> {
    let address = required_address(field, value)?;
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(ParseError::Unusable {
            field,
            value: value.to_owned(),
        });
    }
    Ok(address)
}

fn optional_address(field: &'static str, value: &str) -> Result<Option<Ipv4Addr>, ParseError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| ParseError::Address {
        field,
        value: value.to_owned(),
    })
}

fn netmask_prefix(value: &str) -> Result<u8, ParseError> {
    let mask = required_address(FIELDS[3], value)?.to_bits();
    let prefix = mask.leading_ones();
    // Contiguous: every bit after the leading ones is zero.
    if mask.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(ParseError::Netmask(value.to_owned()));
    }
    // leading_ones of a u32 is at most 32.
    Ok(prefix as u8)
}

fn hostname(value: &str) -> Result<Option<String>, ParseError> {
    if value.is_empty() {
        return Ok(None);
    }
    let valid = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(ParseError::Hostname(value.to_owned()));
    }
    Ok(Some(value.to_owned()))
}

fn device(value: &str) -> Result<String, ParseError> {
    if value.is_empty() {
        return Ok(DEFAULT_DEVICE.to_owned());
    }
    let valid = value.len() <= MAX_DEVICE
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !valid {
        return Err(ParseError::Device(value.to_owned()));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: &str = "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3";

    #[test]
    fn the_launchers_value_parses() {
        assert_eq!(
            parse(QEMU),
            Ok(IpConfig {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                hostname: None,
                device: "eth0".into(),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            })
        );
    }

    #[test]
    fn good_values() {
        let cases: &[(&str, u8, Option<&str>, &str, usize)] = &[
            (
                "192.168.1.5::192.168.1.1:255.255.0.0:node1:ens3:none:1.1.1.1:8.8.8.8",
                16,
                Some("node1"),
                "ens3",
                2,
            ),
            ("10.0.0.2:10.0.0.9::255.255.255.255", 32, None, "eth0", 0),
            ("10.0.0.2:::0.0.0.0:::off", 0, None, "eth0", 0),
            (
                "10.0.0.2:::255.255.255.128::eth1::::10.0.0.1",
                25,
                None,
                "eth1",
                0,
            ),
        ];
        for &(value, prefix, hostname, device, dns) in cases {
            let config = parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(config.prefix, prefix, "{value}");
            assert_eq!(config.hostname.as_deref(), hostname, "{value}");
            assert_eq!(config.device, device, "{value}");
            assert_eq!(config.dns.len(), dns, "{value}");
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "asks for no configuration"),
            ("off", "asks for no configuration"),
            ("dhcp", "autoconf"),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0::eth0:dhcp",
                "autoconf \"dhcp\"",
            ),
            ("::10.0.2.2:255.255.255.0", "field client-ip is empty"),
            (
                "10.0.2.300::10.0.2.2:255.255.255.0",
                "client-ip \"10.0.2.300\"",
            ),
            (
                "0.0.0.0::10.0.2.2:255.255.255.0",
                "client-ip \"0.0.0.0\" is not a usable host address",
            ),
            ("255.255.255.255::::::off", "client-ip \"255.255.255.255\""),
            ("224.0.0.1:::255.255.255.0", "client-ip \"224.0.0.1\""),
            ("127.0.0.2:::255.0.0.0", "client-ip \"127.0.0.2\""),
            ("10.0.2.15:x:10.0.2.2:255.255.255.0", "server-ip"),
            ("10.0.2.15::gateway:255.255.255.0", "gw-ip"),
            ("10.0.2.15::10.0.2.2:255.0.255.0", "netmask \"255.0.255.0\""),
            ("10.0.2.15::10.0.2.2:", "field netmask is empty"),
            ("10.0.2.15::10.0.2.2:24", "netmask"),
            ("10.0.2.15::10.0.2.2:255.255.255.0:bad_host", "hostname"),
            ("10.0.2.15::10.0.2.2:255.255.255.0::eth0/x", "device"),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0::averyveryverylongname",
                "device",
            ),
            ("10.0.2.15::10.0.2.2:255.255.255.0::..", "device"),
            ("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:dns", "dns0-ip"),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off::1.2.3",
                "dns1-ip",
            ),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:::ntp",
                "ntp0-ip",
            ),
            ("1:2:3:4:5:6:7:8:9:10:11", "11 fields"),
            ("::::::::::::::::::::", "fields"),
            ("10.0.2.15::10.0.2.2:255.255.255.0:\u{e9}", "hostname"),
        ];
        for &(value, expected) in cases {
            let err = parse(value).expect_err(value).to_string();
            assert!(err.contains(expected), "{value}: {err}");
        }
        let long = "1".repeat(2000);
        assert_eq!(parse(&long), Err(ParseError::TooLong(2000)));
    }

    #[test]
    fn find_takes_the_last_ip_word() {
        assert_eq!(find("console=ttyS0 quiet"), None);
        assert_eq!(find("ip=1 console=ttyS0 ip=2"), Some("2"));
        assert_eq!(find(&format!("console=ttyS0 ip={QEMU}\n")), Some(QEMU));
        assert_eq!(find("vip=1"), None);
    }
}

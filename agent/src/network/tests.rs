//! Bad `ip=` input end to end: what the console says (the error chain the network step
//! logs and puts in the `network` condition) and the fallback it takes: loopback only,
//! `/etc/hosts` with `localhost` and the node name, an empty `/etc/resolv.conf`.
//!
//! [`read_config`] runs against a fixture root. [`configure`] itself needs rtnetlink,
//! so its test runs in a network namespace of its own (a thread that unshare(2)s
//! `CLONE_NEWNET`) and is skipped, saying so, where the test may not create one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use nix::net::if_::InterfaceFlags;
use nix::sched::{unshare, CloneFlags};

use super::*;
use cairn_api::error_chain;

const NODE: &str = "cairn-0123456789abcdef0123456789abcdef";
/// A device wait short enough for a test that expects the device to be missing.
const SHORT_WAIT: Duration = Duration::from_millis(50);

/// A fixture root whose `/proc/cmdline` holds `cmdline`.
fn root_with_cmdline(cmdline: &[u8]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("proc/cmdline"), cmdline).unwrap();
    root
}

/// Kernel command lines (as `/proc/cmdline` holds them, newline included) and a piece
/// of the message the node must print for each.
fn malformed() -> Vec<(Vec<u8>, String)> {
    let cases: &[(&str, &str)] = &[
        (
            "console=ttyS0 quiet\n",
            "no ip= parameter on the kernel command line",
        ),
        (
            "console=ttyS0 ip=\n",
            "malformed ip= parameter: ip= asks for no configuration",
        ),
        (
            "console=ttyS0 ip=dhcp\n",
            "malformed ip= parameter: ip= field autoconf \"dhcp\" is not supported",
        ),
        (
            "ip=10.0.2.15::10.0.2.2:255.0.255.0::eth0:off:10.0.2.3\n",
            "malformed ip= parameter: ip= field netmask \"255.0.255.0\" is not a contiguous netmask",
        ),
        (
            "ip=10.0.2.300::10.0.2.2:255.255.255.0::eth0:off\n",
            "malformed ip= parameter: ip= field client-ip \"10.0.2.300\" is not an IPv4 address",
        ),
        (
            "ip=0.0.0.0::10.0.2.2:255.255.255.0::eth0:off\n",
            "malformed ip= parameter: ip= field client-ip \"0.0.0.0\" is not a usable host address",
        ),
        (
            "ip=::10.0.2.2:255.255.255.0::eth0:off\n",
            "malformed ip= parameter: ip= field client-ip is empty",
        ),
        (
            "ip=10.0.2.15::10.0.2.2:255.255.255.0::../../x:off\n",
            "malformed ip= parameter: ip= field device \"../../x\" is not a valid interface name",
        ),
        (
            "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:dns.example\n",
            "malformed ip= parameter: ip= field dns0-ip \"dns.example\" is not an IPv4 address",
        ),
        (
            "ip=1:2:3:4:5:6:7:8:9:10:11\n",
            "malformed ip= parameter: ip= has 11 fields, at most 10",
        ),
        // The last ip= wins, as for the kernel: a good one earlier does not help.
        (
            "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off ip=bogus\n",
            "malformed ip= parameter: ip= field client-ip \"bogus\" is not an IPv4 address",
        ),
    ];
    let mut cases: Vec<(Vec<u8>, String)> = cases
        .iter()
        .map(|(cmdline, message)| (cmdline.as_bytes().to_vec(), (*message).to_owned()))
        .collect();
    cases.push((
        format!("ip={}\n", "1".repeat(4000)).into_bytes(),
        "malformed ip= parameter: ip= is 4000 bytes long, more than 1024".to_owned(),
    ));
    // The kernel passes the command line through as bytes; it need not be UTF-8.
    cases.push((
        b"console=ttyS0 ip=\xff\xfe\n".to_vec(),
        "/proc/cmdline: stream did not contain valid UTF-8".to_owned(),
    ));
    cases
}

#[test]
fn malformed_command_lines_give_a_message_naming_the_problem() {
    for (cmdline, expected) in malformed() {
        let root = root_with_cmdline(&cmdline);
        let shown = String::from_utf8_lossy(&cmdline);
        let err = read_config(&Paths::under_root(root.path()))
            .expect_err(&format!("{shown:?} was accepted"));
        let message = error_chain(&err);
        assert!(
            message.contains(&expected),
            "{shown:?}: expected `{expected}` in `{message}`"
        );
    }
}

#[test]
fn the_launchers_command_line_is_read() {
    let root = root_with_cmdline(
        b"console=ttyS0 panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3\n",
    );
    let config = read_config(&Paths::under_root(root.path())).unwrap();
    assert_eq!(config.address, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(
        describe(&config),
        "eth0 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3"
    );
}

/// What [`configure`] leaves behind after bad input, checked inside the namespace.
struct Outcome {
    returned: Option<Configured>,
    condition: Option<crate::conditions::Condition>,
    hosts: String,
    resolv_conf: String,
    lo_up: bool,
    up_devices: BTreeSet<String>,
    /// IPv4 addresses of the stand-in cluster NIC `cl0`.
    cluster_addresses: Vec<String>,
}

/// Runs [`configure`] for `cmdline` (and `cluster`) in a new network namespace that
/// has a bridge named after each of `devices` as a stand-in NIC (this kernel has no
/// dummy links); `None` if this test may not create the namespace (not root).
fn configure_in_own_netns(
    cmdline: &[u8],
    cluster: Option<Cluster>,
    devices: &'static [&'static str],
) -> Option<Outcome> {
    let root = root_with_cmdline(cmdline);
    let dir = root.path().to_owned();
    // unshare(2) moves only the calling thread into the new namespace; netlink and
    // ioctl sockets this thread opens then see only that namespace.
    let outcome = std::thread::spawn(move || -> nix::Result<Outcome> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let paths = Paths::under_root(&dir);
        let conditions = Conditions::new();
        runtime.block_on(add_bridges(devices));
        let returned = runtime.block_on(configure(
            &paths,
            NODE,
            &conditions,
            SHORT_WAIT,
            cluster.as_ref(),
        ));
        let up: BTreeSet<String> = nix::ifaddrs::getifaddrs()
            .unwrap()
            .filter(|i| i.flags.contains(InterfaceFlags::IFF_UP))
            .map(|i| i.interface_name)
            .collect();
        let read = |path: &str| std::fs::read_to_string(paths.resolve(path)).unwrap();
        Ok(Outcome {
            returned,
            condition: conditions.get(CONDITION),
            hosts: read("/etc/hosts"),
            resolv_conf: read("/etc/resolv.conf"),
            lo_up: up.iter().any(|name| name == "lo"),
            up_devices: up,
            cluster_addresses: addresses_of("cl0"),
        })
    })
    .join()
    .unwrap();
    match outcome {
        Ok(outcome) => Some(outcome),
        Err(errno) => {
            eprintln!("skipped: cannot create a network namespace ({errno}); needs root");
            None
        }
    }
}

async fn add_bridges(names: &[&str]) {
    let (connection, handle, _) = rtnetlink::new_connection().unwrap();
    let connection = tokio::spawn(connection);
    for name in names {
        handle
            .link()
            .add(rtnetlink::LinkBridge::new(name).build())
            .execute()
            .await
            .unwrap_or_else(|err| panic!("cannot add the stand-in NIC {name}: {err}"));
    }
    connection.abort();
}

/// The addresses of `device` in the namespace the calling thread is in.
fn addresses_of(device: &str) -> Vec<String> {
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter(|i| i.interface_name == device)
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip().to_string()))
        .collect()
}

const UPLINK_CMDLINE: &[u8] = b"ip=10.0.2.15::10.0.2.2:255.255.255.0::up0:off:10.0.2.3\n";

fn cluster(address: &str, device: &str) -> Cluster {
    Cluster {
        address: address.to_owned(),
        device: device.to_owned(),
        role: Default::default(),
        join: None,
    }
}

#[test]
fn a_cluster_nic_gets_the_nodes_address_beside_the_uplink() {
    let Some(outcome) = configure_in_own_netns(
        UPLINK_CMDLINE,
        Some(cluster("192.168.100.10/24", "cl0")),
        &["up0", "cl0"],
    ) else {
        return;
    };
    let condition = outcome.condition.unwrap();
    assert!(condition.value, "{}", condition.reason);
    assert_eq!(
        condition.reason,
        "up0 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3; cluster cl0 192.168.100.10/24"
    );
    let configured = outcome.returned.unwrap();
    assert_eq!(configured.cluster, Some(Ipv4Addr::new(192, 168, 100, 10)));
    assert_eq!(configured.node_ip(), Ipv4Addr::new(192, 168, 100, 10));
    assert_eq!(configured.uplink.address, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(
        outcome.up_devices,
        BTreeSet::from(["lo", "up0", "cl0"].map(str::to_owned))
    );
    assert_eq!(outcome.cluster_addresses, ["192.168.100.10"]);
    assert!(
        outcome
            .hosts
            .ends_with(&format!("192.168.100.10\t{NODE}\n")),
        "{}",
        outcome.hosts
    );
}

#[test]
fn a_cluster_nic_that_cannot_be_set_up_fails_the_network_step() {
    for (cluster, expected) in [
        (
            cluster("10.0.2.20/24", "cl0"),
            "cluster address 10.0.2.20/24: shares a network with ip='s 10.0.2.15/24",
        ),
        (
            cluster("192.168.100.10/24", "up0"),
            "cluster address 192.168.100.10/24: up0 is ip='s device",
        ),
        (
            cluster("192.168.100.10/24", "cl9"),
            "network device cl9 did not appear within 50ms",
        ),
    ] {
        let Some(outcome) = configure_in_own_netns(UPLINK_CMDLINE, Some(cluster), &["up0", "cl0"])
        else {
            return;
        };
        assert_eq!(outcome.returned, None, "{expected}");
        let condition = outcome.condition.unwrap();
        assert!(!condition.value, "{expected}");
        assert!(
            condition.reason.contains(expected),
            "expected `{expected}` in `{}`",
            condition.reason
        );
        assert!(outcome.cluster_addresses.is_empty(), "{expected}");
    }
}

#[test]
fn bad_input_leaves_loopback_only_and_says_why() {
    let mut cases = malformed();
    // Well-formed, but naming a device the node does not have.
    cases.push((
        b"ip=10.0.2.15::10.0.2.2:255.255.255.0::cairn-none0:off:10.0.2.3\n".to_vec(),
        "network device cairn-none0 did not appear within 50ms".to_owned(),
    ));
    for (cmdline, expected) in cases {
        let shown = String::from_utf8_lossy(&cmdline).into_owned();
        let Some(outcome) = configure_in_own_netns(&cmdline, None, &[]) else {
            return;
        };
        assert_eq!(outcome.returned, None, "{shown:?}");
        let condition = outcome
            .condition
            .unwrap_or_else(|| panic!("{shown:?}: no network condition"));
        assert!(!condition.value, "{shown:?}: network is true");
        assert!(
            condition.reason.contains(&expected),
            "{shown:?}: expected `{expected}` in the reason `{}`",
            condition.reason
        );
        assert!(outcome.lo_up, "{shown:?}: lo is not up");
        assert_eq!(
            outcome.up_devices,
            BTreeSet::from(["lo".to_owned()]),
            "{shown:?}"
        );
        assert_eq!(
            outcome.hosts,
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 127.0.1.1\t{NODE}\n"
            ),
            "{shown:?}"
        );
        assert!(
            !outcome.resolv_conf.contains("nameserver"),
            "{shown:?}: {}",
            outcome.resolv_conf
        );
    }
}

/// The main table's routes in the calling thread's namespace as `dst/len via gw proto
/// N`, sorted.
async fn route_table(handle: &Handle) -> Vec<String> {
    use futures_util::TryStreamExt;
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = handle.route().get(query).execute();
    let mut found = Vec::new();
    while let Some(message) = routes.try_next().await.unwrap() {
        if let Some(route) = pod_routes::gateway_route(&message) {
            let protocol = u8::from(message.header.protocol);
            found.push(format!("{route} proto {protocol}"));
        }
    }
    found.sort();
    found
}

/// [`pod_routes::sync`] in a namespace of its own: a stand-in cluster NIC `cl0`
/// (192.168.100.10/24) and somebody else's static route, which must survive.
#[test]
fn pod_routes_become_exactly_the_wanted_ones_and_leave_other_routes_alone() {
    let outcome = std::thread::spawn(|| -> nix::Result<Vec<Vec<String>>> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Ok(runtime.block_on(async {
            add_bridges(&["cl0"]).await;
            let (connection, handle, _) = rtnetlink::new_connection().unwrap();
            let connection = tokio::spawn(connection);
            let index = if_nametoindex("cl0").unwrap();
            let own: Ipv4Addr = "192.168.100.10".parse().unwrap();
            handle
                .address()
                .add(index, IpAddr::V4(own), 24)
                .execute()
                .await
                .unwrap();
            set_up(&handle, "cl0").await.unwrap();
            let foreign = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix("10.77.0.0".parse().unwrap(), 16)
                .gateway("192.168.100.99".parse().unwrap())
                .output_interface(index)
                .build();
            handle.route().add(foreign).execute().await.unwrap();
            let route = |cidr: &str, via: &str| pod_routes::PodRoute {
                cidr: cidr.parse().unwrap(),
                prefix: 24,
                via: via.parse().unwrap(),
            };
            let mut tables = Vec::new();
            let first = [
                route("10.88.1.0", "192.168.100.11"),
                route("10.88.2.0", "192.168.100.12"),
            ];
            let changes = pod_routes::sync("cl0", &first).await.unwrap();
            assert_eq!(changes.added, first);
            assert_eq!(changes.removed, []);
            tables.push(route_table(&handle).await);
            // Again: nothing to do.
            let changes = pod_routes::sync("cl0", &first).await.unwrap();
            assert_eq!(changes, pod_routes::Changes::default());
            // Node .11 left, .12's CIDR moved to .13.
            let second = [route("10.88.2.0", "192.168.100.13")];
            let changes = pod_routes::sync("cl0", &second).await.unwrap();
            assert_eq!(changes.added, second);
            assert_eq!(changes.removed, first);
            tables.push(route_table(&handle).await);
            connection.abort();
            tables
        }))
    })
    .join()
    .unwrap();
    let Ok(tables) = outcome else {
        eprintln!("skipped: cannot create a network namespace; needs root");
        return;
    };
    assert_eq!(
        tables[0],
        [
            "10.77.0.0/16 via 192.168.100.99 proto 4",
            "10.88.1.0/24 via 192.168.100.11 proto 202",
            "10.88.2.0/24 via 192.168.100.12 proto 202",
        ]
    );
    assert_eq!(
        tables[1],
        [
            "10.77.0.0/16 via 192.168.100.99 proto 4",
            "10.88.2.0/24 via 192.168.100.13 proto 202",
        ]
    );
}

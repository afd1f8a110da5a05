//! QEMU command-line construction.
//!
//! Everything here is pure: [`QemuCommand::args`] turns a description of the machine into
//! the argument vector, so unit tests can check every flag without starting QEMU.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The QEMU binary used unless `CAIRN_QEMU` names another one.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Guest memory in MiB unless the caller asks for more.
pub const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Guest vCPUs unless the caller asks for more.
pub const DEFAULT_CPUS: u32 = 2;
/// The kernel parameter giving the guest the static address QEMU user networking
/// expects (docs/interfaces.md): 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3.
pub const USER_NET_IP_PARAM: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3";
/// Guest port of the NodeDebugService (docs/interfaces.md "Network ports").
pub const DEBUG_PORT: u16 = cairn_api::names::port::DEBUG;
/// Guest port of kube-apiserver (docs/interfaces.md "Network ports").
pub const APISERVER_PORT: u16 = cairn_api::names::port::APISERVER;
/// Guest port of the kubelet's API (docs/interfaces.md "Network ports").
pub const KUBELET_PORT: u16 = cairn_api::names::port::KUBELET;
/// Guest port of the owner's node API, mTLS (docs/interfaces.md "Network ports").
pub const NODE_API_PORT: u16 = cairn_api::names::port::NODE_API;

/// An accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// Software emulation, one host thread per vCPU (`thread=multi`).
    Tcg,
}

impl Accel {
    /// The value of QEMU's `-accel` option.
    fn qemu_value(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg,thread=multi",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// A host TCP port forwarded to a guest TCP port through QEMU user networking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// Port on 127.0.0.1 of the host.
    pub host: u16,
    /// Port the guest listens on.
    pub guest: u16,
}

/// A second NIC on a segment the nodes of one cluster share: QEMU's multicast socket
/// backend bound to loopback (`-netdev socket,mcast=GROUP:PORT,localaddr=127.0.0.1`).
/// No root and no helper process: every frame one node sends reaches every QEMU that
/// joined the group (a hub), and nothing leaves the host. After `net0`, it is the
/// guest's `eth1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNic {
    /// The segment: a multicast group and UDP port, shared by the cluster's nodes and
    /// different for every cluster on the host.
    pub segment: std::net::SocketAddrV4,
    /// The NIC's address; unique per node (QEMU's default MAC is the same in every
    /// QEMU process).
    pub mac: Mac,
}

impl ClusterNic {
    /// Parses `GROUP:PORT`: an IPv4 multicast group and a UDP port other than 0.
    pub fn parse_segment(text: &str) -> Result<std::net::SocketAddrV4, String> {
        let segment: std::net::SocketAddrV4 = text
            .parse()
            .map_err(|_| format!("{text:?} is not GROUP:PORT (e.g. 239.255.10.1:47000)"))?;
        if !segment.ip().is_multicast() {
            return Err(format!(
                "{} is not a multicast group (224.0.0.0/4; use 239.255.0.0/16)",
                segment.ip()
            ));
        }
        if segment.port() == 0 {
            return Err(format!("{text:?}: the port must not be 0"));
        }
        Ok(segment)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally chosen address in QEMU's `52:54:00` range whose last three bytes are
    /// an FNV-1a hash of `seed`: the same for the same seed (a node's state dir), so a
    /// restarted node keeps its NIC, and different for different seeds.
    pub fn derived(seed: &[u8]) -> Mac {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in seed {
            hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
        }
        let [_, a, b, c] = hash.to_be_bytes();
        Mac([0x52, 0x54, 0x00, a, b, c])
    }
}

impl FromStr for Mac {
    type Err = String;

    /// `aa:bb:cc:dd:ee:ff`, unicast (the first byte's lowest bit clear).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = || format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return Err(form());
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            *byte = u8::from_str_radix(part, 16).map_err(|_| form())?;
        }
        if mac[0] & 1 == 1 {
            return Err(format!(
                "{s:?} is a multicast address; a NIC needs a unicast one"
            ));
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The on-disk format of an extra disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain image file or block device.
    Raw,
    /// A QEMU copy-on-write image.
    Qcow2,
}

impl FromStr for DiskFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            other => Err(format!(
                "unknown disk format {other:?} (expected raw or qcow2)"
            )),
        }
    }
}

/// An extra virtio block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Image file on the host.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Attach it read-only.
    pub read_only: bool,
}

/// Everything that goes on QEMU's command line. Kept in the state dir (`launch.json`),
/// so the same machine can be started again after a guest reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuCommand {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// The kernel (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`); the accel probe boots without one.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`-append`).
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest vCPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// File the first serial port (the guest's `ttyS0` console) is written to.
    pub console_log: PathBuf,
    /// Unix socket QMP listens on, if any.
    pub qmp_socket: Option<PathBuf>,
    /// Add a virtio-rng device so early `getrandom` does not block.
    pub rng: bool,
    /// Attach a virtio NIC on QEMU user networking (`net0`).
    pub network: bool,
    /// Host-to-guest TCP forwards through the user network (they need `network`).
    pub forwards: Vec<PortForward>,
    /// A second NIC on a cluster segment (`net1`, the guest's `eth1`).
    pub cluster_nic: Option<ClusterNic>,
    /// Extra virtio block devices, in order (`vda`, `vdb`, ...).
    pub disks: Vec<Disk>,
    /// Firmware config items (`-fw_cfg name=NAME,file=PATH`), e.g. the per-node config.
    pub fw_cfg: Vec<(String, PathBuf)>,
}

impl QemuCommand {
    /// A machine with the default size, an RNG device and a user-network NIC, and no
    /// QMP socket, forwards or disks.
    pub fn new(kernel: &Path, console_log: &Path, accel: Accel) -> Self {
        QemuCommand {
            binary: std::env::var_os("CAIRN_QEMU")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU)),
            kernel: kernel.to_owned(),
            initrd: None,
            cmdline: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            accel,
            console_log: console_log.to_owned(),
            qmp_socket: None,
            rng: true,
            network: true,
            forwards: Vec::new(),
            cluster_nic: None,
            disks: Vec::new(),
            fw_cfg: Vec::new(),
        }
    }

    /// The argument vector, without the binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = Args::default();
        self.push_machine(&mut args);
        self.push_console(&mut args);
        self.push_boot(&mut args);
        if self.rng {
            args.push(["-device", "virtio-rng-pci"]);
        }
        self.push_network(&mut args);
        self.push_disks(&mut args);
        for (name, path) in &self.fw_cfg {
            let mut item = OsString::from(format!("name={name},file="));
            item.push(escape(path.as_os_str()));
            args.push([OsString::from("-fw_cfg"), item]);
        }
        args.0
    }

    /// A [`Command`] running the binary with [`QemuCommand::args`].
    pub fn to_command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(self.args());
        command
    }

    fn push_machine(&self, args: &mut Args) {
        args.push(["-machine", "q35"]);
        args.push(["-accel", self.accel.qemu_value()]);
        // `max` rather than `host`: `-cpu host` aborts on MSR 0x10a on the nested hosts.
        args.push(["-cpu", "max"]);
        args.push(["-m".to_owned(), self.memory_mib.to_string()]);
        args.push(["-smp".to_owned(), self.cpus.to_string()]);
        // No default NIC, VGA, monitor or serial: every device is listed below.
        args.push(["-nodefaults", "-display", "none"]);
        // A guest reboot ends QEMU; the launcher starts a fresh one on the same disks
        // (crate::relaunch). Under TCG a reset in place costs ~25 s more: the kernel
        // unpacks the initramfs over RAM that held the last boot's translated code.
        args.push(["-action", "reboot=shutdown"]);
    }

    fn push_console(&self, args: &mut Args) {
        // Appended to: a QEMU started again after a guest reboot goes on with the log.
        let mut chardev = OsString::from("file,id=console,append=on,path=");
        chardev.push(escape(self.console_log.as_os_str()));
        args.push([OsString::from("-chardev"), chardev]);
        args.push(["-serial", "chardev:console"]);
        if let Some(socket) = &self.qmp_socket {
            let mut chardev = OsString::from("socket,id=qmp,server=on,wait=off,path=");
            chardev.push(escape(socket.as_os_str()));
            args.push([OsString::from("-chardev"), chardev]);
            args.push(["-mon", "chardev=qmp,mode=control"]);
        }
    }

    fn push_boot(&self, args: &mut Args) {
        args.push([OsStr::new("-kernel"), self.kernel.as_os_str()]);
        if let Some(initrd) = &self.initrd {
            args.push([OsStr::new("-initrd"), initrd.as_os_str()]);
        }
        args.push(["-append", self.cmdline.as_str()]);
    }

    fn push_network(&self, args: &mut Args) {
        if !self.network {
            return;
        }
        let mut netdev = String::from("user,id=net0");
        for forward in &self.forwards {
            netdev.push_str(&format!(
                ",hostfwd=tcp:127.0.0.1:{}-:{}",
                forward.host, forward.guest
            ));
        }
        args.push(["-netdev".to_owned(), netdev]);
        args.push(["-device", "virtio-net-pci,netdev=net0"]);
        if let Some(nic) = &self.cluster_nic {
            args.push([
                "-netdev".to_owned(),
                format!("socket,id=net1,mcast={},localaddr=127.0.0.1", nic.segment),
            ]);
            args.push([
                "-device".to_owned(),
                format!("virtio-net-pci,netdev=net1,mac={}", nic.mac),
            ]);
        }
    }

    fn push_disks(&self, args: &mut Args) {
        for (index, disk) in self.disks.iter().enumerate() {
            let mut drive = OsString::from("file=");
            drive.push(escape(disk.path.as_os_str()));
            let format = match disk.format {
                DiskFormat::Raw => "raw",
                DiskFormat::Qcow2 => "qcow2",
            };
            drive.push(format!(",if=none,id=disk{index},format={format}"));
            if disk.read_only {
                drive.push(",readonly=on");
            }
            args.push([OsString::from("-drive"), drive]);
            args.push([
                "-device".to_owned(),
                format!("virtio-blk-pci,drive=disk{index},serial=cairn-disk{index}"),
            ]);
        }
    }
}

/// Argument accumulator accepting anything string-like.
#[derive(Debug, Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<const N: usize, S: AsRef<OsStr>>(&mut self, items: [S; N]) {
        self.0
            .extend(items.iter().map(|item| item.as_ref().to_owned()));
    }
}

/// Escapes a value inside a QEMU option list: a literal comma is written twice.
fn escape(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(command: &QemuCommand) -> Vec<String> {
        command
            .args()
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    fn pair_after(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].clone())
            .collect()
    }

    fn sample() -> QemuCommand {
        let mut command = QemuCommand::new(
            Path::new("/img/vmlinuz"),
            Path::new("/state/console.log"),
            Accel::Tcg,
        );
        command.initrd = Some(PathBuf::from("/img/initramfs.img"));
        command.cmdline = "console=ttyS0 quiet".to_owned();
        command.qmp_socket = Some(PathBuf::from("/state/qmp.sock"));
        command
    }

    #[test]
    fn default_machine_is_headless_q35_with_console_file_and_qmp() {
        let args = strings(&sample());
        assert_eq!(pair_after(&args, "-machine"), ["q35"]);
        assert_eq!(pair_after(&args, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(pair_after(&args, "-m"), ["2048"]);
        assert_eq!(pair_after(&args, "-smp"), ["2"]);
        assert_eq!(pair_after(&args, "-display"), ["none"]);
        assert!(!args.contains(&"-no-reboot".to_owned()));
        assert_eq!(pair_after(&args, "-action"), ["reboot=shutdown"]);
        assert!(args.contains(&"-nodefaults".to_owned()));
        assert!(!args.contains(&"-nographic".to_owned()));
        assert_eq!(
            pair_after(&args, "-chardev"),
            [
                "file,id=console,append=on,path=/state/console.log",
                "socket,id=qmp,server=on,wait=off,path=/state/qmp.sock"
            ]
        );
        assert_eq!(pair_after(&args, "-serial"), ["chardev:console"]);
        assert_eq!(pair_after(&args, "-mon"), ["chardev=qmp,mode=control"]);
        assert_eq!(
            pair_after(&args, "-device"),
            ["virtio-rng-pci", "virtio-net-pci,netdev=net0"]
        );
        assert_eq!(pair_after(&args, "-netdev"), ["user,id=net0"]);
    }

    #[test]
    fn boot_files_and_cmdline_are_passed_verbatim() {
        let args = strings(&sample());
        assert_eq!(pair_after(&args, "-kernel"), ["/img/vmlinuz"]);
        assert_eq!(pair_after(&args, "-initrd"), ["/img/initramfs.img"]);
        assert_eq!(pair_after(&args, "-append"), ["console=ttyS0 quiet"]);
    }

    #[test]
    fn kvm_probe_machine_has_no_initrd_and_no_qmp() {
        let mut command = QemuCommand::new(Path::new("/k"), Path::new("/c"), Accel::Kvm);
        command.rng = false;
        command.network = false;
        let args = strings(&command);
        assert_eq!(pair_after(&args, "-accel"), ["kvm"]);
        assert!(pair_after(&args, "-initrd").is_empty());
        assert!(pair_after(&args, "-mon").is_empty());
        assert!(pair_after(&args, "-device").is_empty());
    }

    #[test]
    fn firmware_config_items_name_their_file() {
        let mut command = sample();
        assert!(!strings(&command).contains(&"-fw_cfg".to_owned()));
        command.fw_cfg = vec![(
            "opt/cairn/node.toml".to_owned(),
            PathBuf::from("/state,1/node.toml"),
        )];
        assert_eq!(
            pair_after(&strings(&command), "-fw_cfg"),
            ["name=opt/cairn/node.toml,file=/state,,1/node.toml"]
        );
    }

    #[test]
    fn forwards_add_one_user_netdev_and_a_virtio_nic() {
        let mut command = sample();
        command.forwards = vec![
            PortForward {
                host: 40000,
                guest: 7837,
            },
            PortForward {
                host: 40001,
                guest: 6443,
            },
        ];
        let args = strings(&command);
        assert_eq!(
            pair_after(&args, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:40000-:7837,hostfwd=tcp:127.0.0.1:40001-:6443"]
        );
        assert!(pair_after(&args, "-device").contains(&"virtio-net-pci,netdev=net0".to_owned()));
    }

    #[test]
    fn a_cluster_nic_follows_the_user_nic_on_a_loopback_multicast_segment() {
        let mut command = sample();
        command.cluster_nic = Some(ClusterNic {
            segment: ClusterNic::parse_segment("239.255.10.1:47000").unwrap(),
            mac: "52:54:00:ca:01:02".parse().unwrap(),
        });
        let args = strings(&command);
        assert_eq!(
            pair_after(&args, "-netdev"),
            [
                "user,id=net0",
                "socket,id=net1,mcast=239.255.10.1:47000,localaddr=127.0.0.1"
            ]
        );
        assert_eq!(
            pair_after(&args, "-device")[1..],
            [
                "virtio-net-pci,netdev=net0",
                "virtio-net-pci,netdev=net1,mac=52:54:00:ca:01:02"
            ]
        );
    }

    #[test]
    fn segments_and_macs_are_checked() {
        for (text, problem) in [
            ("239.255.10.1", "is not GROUP:PORT"),
            ("10.0.0.1:47000", "not a multicast group"),
            ("239.255.10.1:0", "must not be 0"),
        ] {
            let err = ClusterNic::parse_segment(text).unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
        for (text, problem) in [
            ("52:54:00:ca:01", "not a MAC address"),
            ("52:54:00:ca:01:zz", "not a MAC address"),
            ("01:00:5e:00:00:01", "multicast"),
        ] {
            let err = text.parse::<Mac>().unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
        let derived = Mac::derived(b"/state/a");
        assert_eq!(derived, Mac::derived(b"/state/a"));
        assert_ne!(derived, Mac::derived(b"/state/b"));
        assert_eq!(derived.0[..3], [0x52, 0x54, 0x00]);
        assert_eq!(derived.to_string().parse::<Mac>().unwrap(), derived);
    }

    #[test]
    fn disks_become_virtio_blk_devices_in_order() {
        let mut command = sample();
        command.disks = vec![
            Disk {
                path: "/d/data.img".into(),
                format: DiskFormat::Raw,
                read_only: false,
            },
            Disk {
                path: "/d/seed.qcow2".into(),
                format: DiskFormat::Qcow2,
                read_only: true,
            },
        ];
        let args = strings(&command);
        assert_eq!(
            pair_after(&args, "-drive"),
            [
                "file=/d/data.img,if=none,id=disk0,format=raw",
                "file=/d/seed.qcow2,if=none,id=disk1,format=qcow2,readonly=on"
            ]
        );
        let devices = pair_after(&args, "-device");
        assert!(devices.contains(&"virtio-blk-pci,drive=disk0,serial=cairn-disk0".to_owned()));
        assert!(devices.contains(&"virtio-blk-pci,drive=disk1,serial=cairn-disk1".to_owned()));
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut command = sample();
        command.console_log = PathBuf::from("/a,b/console.log");
        let args = strings(&command);
        assert_eq!(
            pair_after(&args, "-chardev")[0],
            "file,id=console,append=on,path=/a,,b/console.log"
        );
    }
}

//go:build linux

// cairn: tests for mount_native_linux.go. Pure parsing and the "not native"
// decisions only: nothing here calls mount(2), so no root is needed. Run with
// third_party/check.sh test (see third_party/README.md).

package mount

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		name        string
		options     []string
		set, clear  uintptr
		propagation uintptr
		data        []string
	}{
		{name: "none"},
		{name: "ro", options: []string{"ro"}, set: unix.MS_RDONLY},
		{name: "rw clears ro", options: []string{"rw"}, clear: unix.MS_RDONLY},
		{name: "later rw wins", options: []string{"ro", "rw"}, clear: unix.MS_RDONLY},
		{name: "later ro wins", options: []string{"rw", "ro"}, set: unix.MS_RDONLY},
		{
			name:    "secure defaults",
			options: []string{"nosuid", "nodev", "noexec"},
			set:     unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC,
		},
		{
			name:    "inverses clear",
			options: []string{"suid", "dev", "exec", "async", "nomand", "loud"},
			clear: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_SYNCHRONOUS |
				unix.MS_MANDLOCK | unix.MS_SILENT,
		},
		{
			name:    "sync family",
			options: []string{"sync", "dirsync", "mand", "silent"},
			set:     unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_MANDLOCK | unix.MS_SILENT,
		},
		{
			name:    "atime family",
			options: []string{"noatime", "nodiratime", "relatime", "strictatime", "lazytime"},
			set:     unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_LAZYTIME,
		},
		{
			name:    "atime inverses",
			options: []string{"atime", "diratime", "norelatime", "nostrictatime", "nolazytime"},
			clear:   unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_LAZYTIME,
		},
		{name: "bind", options: []string{"bind"}, set: unix.MS_BIND},
		{name: "rbind", options: []string{"rbind"}, set: unix.MS_BIND | unix.MS_REC},
		{
			// What the kubelet passes for a read-only bind (MakeBindOpts):
			// the flags are parsed together, nativeMount splits the calls.
			name:    "read-only bind",
			options: []string{"bind", "ro"},
			set:     unix.MS_BIND | unix.MS_RDONLY,
		},
		{
			name:    "bind remount",
			options: []string{"bind", "remount", "ro", "nosuid"},
			set:     unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID,
		},
		{
			// emptyDir sizeLimit resize: the size goes to the kernel as data.
			name:    "tmpfs resize",
			options: []string{"remount", "size=65536k"},
			set:     unix.MS_REMOUNT,
			data:    []string{"size=65536k"},
		},
		{name: "private", options: []string{"private"}, propagation: unix.MS_PRIVATE},
		{name: "rprivate", options: []string{"rprivate"}, propagation: unix.MS_PRIVATE | unix.MS_REC},
		{name: "shared", options: []string{"shared"}, propagation: unix.MS_SHARED},
		{name: "rshared", options: []string{"rshared"}, propagation: unix.MS_SHARED | unix.MS_REC},
		{name: "slave", options: []string{"slave"}, propagation: unix.MS_SLAVE},
		{name: "rslave", options: []string{"rslave"}, propagation: unix.MS_SLAVE | unix.MS_REC},
		{name: "unbindable", options: []string{"unbindable"}, propagation: unix.MS_UNBINDABLE},
		{name: "runbindable", options: []string{"runbindable"}, propagation: unix.MS_UNBINDABLE | unix.MS_REC},
		{
			// Propagation never leaks into the mount flags (a separate call).
			name:        "bind with propagation",
			options:     []string{"rbind", "rshared"},
			set:         unix.MS_BIND | unix.MS_REC,
			propagation: unix.MS_SHARED | unix.MS_REC,
		},
		{
			name:    "userspace options dropped",
			options: []string{"defaults", "auto", "noauto", "nofail", "_netdev", "x-systemd.automount", "x-mount.mkdir", ""},
		},
		{
			// tmpfs/hugetlbfs data, unknown words included, in order.
			name:    "data passthrough",
			options: []string{"size=1024k", "mode=0755", "uid=1000", "gid=0", "noswap", "nr_inodes=0", "pagesize=2M", "whatever"},
			data:    []string{"size=1024k", "mode=0755", "uid=1000", "gid=0", "noswap", "nr_inodes=0", "pagesize=2M", "whatever"},
		},
		{
			// A sensitive option (doMount appends them last) is data too.
			name:    "emptyDir medium Memory",
			options: []string{"nosuid", "nodev", "defaults", "size=128m", "mode=1777", "relatime", "x-cairn", "password=secret"},
			set:     unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RELATIME,
			data:    []string{"size=128m", "mode=1777", "password=secret"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, clear, propagation, data := parseMountOptions(tt.options)
			if set != tt.set || clear != tt.clear || propagation != tt.propagation {
				t.Errorf("parseMountOptions(%q) flags: set %#x clear %#x propagation %#x; want set %#x clear %#x propagation %#x",
					tt.options, set, clear, propagation, tt.set, tt.clear, tt.propagation)
			}
			if !reflect.DeepEqual(data, tt.data) {
				t.Errorf("parseMountOptions(%q) data = %q, want %q", tt.options, data, tt.data)
			}
		})
	}
}

// Every flag option, in either order with its inverse: set and clear never
// share a bit, and the later option decides.
func TestParseMountOptionsSetClearDisjoint(t *testing.T) {
	for name, f := range mountFlagOptions {
		for inverse, g := range mountFlagOptions {
			if f.flag != g.flag || f.clear == g.clear {
				continue
			}
			set, clear, _, _ := parseMountOptions([]string{name, inverse})
			if set&clear != 0 {
				t.Errorf("%s,%s: set %#x and clear %#x overlap", name, inverse, set, clear)
			}
			if g.clear && (set&g.flag != 0 || clear&g.flag == 0) {
				t.Errorf("%s,%s: %s should win (set %#x clear %#x)", name, inverse, inverse, set, clear)
			}
			if !g.clear && (set&g.flag == 0 || clear&g.flag != 0) {
				t.Errorf("%s,%s: %s should win (set %#x clear %#x)", name, inverse, inverse, set, clear)
			}
		}
	}
}

// Requests nativeMount must leave to mount(8). These return before any
// syscall, so they are safe to run unprivileged.
func TestNativeMountNotHandled(t *testing.T) {
	tests := []struct {
		name                   string
		source, target, fstype string
		options, mountFlags    []string
	}{
		{name: "nfs", source: "server:/export", target: "/mnt/x", fstype: "nfs", options: []string{"vers=4"}},
		{name: "block device", source: "/dev/vdb", target: "/mnt/x", fstype: "ext4", options: []string{"defaults"}},
		{name: "ext4 remount", source: "/dev/vdb", target: "/mnt/x", fstype: "ext4", options: []string{"remount", "ro"}},
		{name: "no type, no bind", source: "none", target: "/mnt/x", options: []string{"size=1m"}},
		{
			// Propagation alone is native only without a type or data.
			name: "propagation with a type", source: "/dev/vdb", target: "/mnt/x", fstype: "ext4",
			options: []string{"rshared"},
		},
		{
			name: "unknown mount(8) flag", source: "tmpfs", target: "/mnt/x", fstype: "tmpfs",
			options: []string{"size=1m"}, mountFlags: []string{"--no-canonicalize", "-s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handled, err := nativeMount(tt.source, tt.target, tt.fstype, tt.options, tt.mountFlags, "test")
			if handled || err != nil {
				t.Errorf("nativeMount(%q, %q, %q, %q, %q) = %v, %v; want false, nil",
					tt.source, tt.target, tt.fstype, tt.options, tt.mountFlags, handled, err)
			}
		})
	}
}

// The types nativeMount claims are exactly the helper-free ones.
func TestNativeFSTypes(t *testing.T) {
	want := map[string]bool{"tmpfs": true, "ramfs": true, "hugetlbfs": true, "proc": true, "sysfs": true}
	if !reflect.DeepEqual(nativeFSTypes, want) {
		t.Errorf("nativeFSTypes = %v, want %v", nativeFSTypes, want)
	}
}

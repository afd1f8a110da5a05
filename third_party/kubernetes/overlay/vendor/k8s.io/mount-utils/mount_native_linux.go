//go:build linux

// cairn: mount(2)/umount2(2) instead of exec'ing mount(8)/umount(8).
//
// cairn images ship no mount or umount binary. The kubelet's own volumes
// (emptyDir, secret, configMap, projected, downwardAPI, hugepages, subPath
// binds) only need filesystems the kernel mounts without a userspace helper,
// so the Mounter does those mounts itself. Any other type (nfs, cifs, ext4 on
// a block device, ...) still goes through mount(8) and fails with a clear
// error when the binary is absent.
//
// This file is ours, not upstream's: it lives in cairn's
// third_party/kubernetes/overlay/vendor/k8s.io/mount-utils/ and build.sh
// copies it into the vendored tree; patch 0001 makes mount_linux.go call it.

package mount

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// nativeFSTypes are mounted with mount(2). Bind mounts and bind remounts are
// native whatever the type.
var nativeFSTypes = map[string]bool{
	"tmpfs": true, "ramfs": true, "hugetlbfs": true, "proc": true, "sysfs": true,
}

// mountFlagOptions maps mount(8) options to MS_* flags; clear means the option
// removes the flag ("rw" clears MS_RDONLY).
var mountFlagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"dirsync": {false, unix.MS_DIRSYNC}, "silent": {false, unix.MS_SILENT}, "loud": {true, unix.MS_SILENT},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "diratime": {true, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime": {false, unix.MS_LAZYTIME}, "nolazytime": {true, unix.MS_LAZYTIME},
	"remount": {false, unix.MS_REMOUNT},
	"bind":    {false, unix.MS_BIND},
	"rbind":   {false, unix.MS_BIND | unix.MS_REC},
}

// propagationOptions need a mount(2) call of their own, as mount(8) makes.
var propagationOptions = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// userspaceOptions are consumed by mount(8) itself and never reach the kernel.
var userspaceOptions = map[string]bool{
	"defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
}

// nativeMountFlags are mount(8) command-line flags with nothing to do for a
// syscall (mount(2) never canonicalizes paths).
var nativeMountFlags = map[string]bool{"--no-canonicalize": true}

// parseMountOptions splits mount(8) options into MS_* flags to set and to
// clear, propagation flags and filesystem data (everything else: size=, mode=,
// uid=, noswap, ...). A later option wins over an earlier one ("ro,rw").
func parseMountOptions(options []string) (set, clear, propagation uintptr, data []string) {
	for _, o := range options {
		if f, ok := mountFlagOptions[o]; ok {
			if f.clear {
				set, clear = set&^f.flag, clear|f.flag
			} else {
				set, clear = set|f.flag, clear&^f.flag
			}
		} else if p, ok := propagationOptions[o]; ok {
			propagation |= p
		} else if o != "" && !userspaceOptions[o] && !strings.HasPrefix(o, "x-") {
			data = append(data, o)
		}
	}
	return set, clear, propagation, data
}

// statfsFlags maps statfs(2) f_flags to the MS_* flags a remount must repeat
// to keep them. Like mount(8), a remount changes only the flags it names;
// mount(2) itself would reset the rest. The kernel keeps atime flags itself.
var statfsFlags = map[int64]uintptr{
	unix.ST_RDONLY: unix.MS_RDONLY, unix.ST_NOSUID: unix.MS_NOSUID,
	unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
	unix.ST_SYNCHRONOUS: unix.MS_SYNCHRONOUS, unix.ST_MANDLOCK: unix.MS_MANDLOCK,
}

func currentMountFlags(target string) (uintptr, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return 0, err
	}
	var flags uintptr
	for stFlag, ms := range statfsFlags {
		if st.Flags&stFlag != 0 {
			flags |= ms
		}
	}
	return flags, nil
}

// nativeMount mounts with mount(2) when the request needs no helper program:
// a native filesystem type (mount or remount), a bind mount, a bind remount,
// or a propagation change alone. handled is false for anything else, and the
// caller then runs mount(8). logStr is the caller's log-safe argument string
// (sensitive options masked).
func nativeMount(source, target, fstype string, options, mountFlags []string, logStr string) (handled bool, err error) {
	for _, f := range mountFlags {
		if !nativeMountFlags[f] {
			return false, nil
		}
	}
	flags, clear, propagation, data := parseMountOptions(options)
	bind := flags&unix.MS_BIND != 0
	onlyPropagation := propagation != 0 && flags|clear == 0 && fstype == "" && len(data) == 0
	if !bind && !nativeFSTypes[fstype] && !onlyPropagation {
		return false, nil
	}

	klog.V(4).Infof("Mounting with mount(2): %s", logStr)
	fail := func(op string, err error) (bool, error) {
		klog.Errorf("Mount failed: %s: %v\nMounting arguments: %s", op, err, logStr)
		return true, fmt.Errorf("mount failed: %s: %v\nMounting arguments: %s", op, err, logStr)
	}
	// remount applies flags on top of target's current ones.
	remount := func(flags uintptr, data string) error {
		current, err := currentMountFlags(target)
		if err != nil {
			return err
		}
		return unix.Mount("", target, fstype, (current&^clear)|flags, data)
	}
	switch {
	case onlyPropagation:
	case bind && flags&unix.MS_REMOUNT == 0:
		// The kernel ignores every flag but MS_REC on a new bind mount; like
		// mount(8), apply the others with a second, remounting call.
		if err := unix.Mount(source, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return fail("bind", err)
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest|clear != 0 {
			if err := remount(unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
				return fail("bind remount", err)
			}
		}
	case bind: // bind remount: per-mount flags only, no data
		if err := remount(flags, ""); err != nil {
			return fail("bind remount", err)
		}
	case flags&unix.MS_REMOUNT != 0:
		if err := remount(flags, strings.Join(data, ",")); err != nil {
			return fail("remount", err)
		}
	default:
		if err := unix.Mount(source, target, fstype, flags, strings.Join(data, ",")); err != nil {
			return fail(fstype, err)
		}
	}
	if propagation != 0 {
		if err := unix.Mount("", target, "", propagation, ""); err != nil {
			return fail("propagation", err)
		}
	}
	return true, nil
}

// nativeUnmount unmounts with umount2(2). EINVAL means target is not a mount
// point: that is umount(8)'s "not mounted", ignored with safe "not mounted"
// behavior as upstream does.
func nativeUnmount(target string, flags int, withSafeNotMountedBehavior bool) error {
	err := unix.Unmount(target, flags)
	if err == nil {
		return nil
	}
	if err == unix.EINVAL && withSafeNotMountedBehavior {
		klog.V(4).Infof("ignoring 'not mounted' error for %s", target)
		return nil
	}
	return fmt.Errorf("unmount failed: %v\nUnmounting arguments: %s", err, target)
}

//! `ls -l`-style listing of archive entries, for `cairn-image inspect`.

use crate::entry::{Entry, FileType};

/// One line per entry, in archive order, each ending in a newline.
pub fn format_listing(entries: &[Entry]) -> String {
    entries.iter().map(|e| format_entry(e) + "\n").collect()
}

/// Formats one entry like `ls -l`: mode, uid/gid, size (or `major, minor` for devices),
/// path, and `-> target` for symlinks.
///
/// ```text
/// drwxr-xr-x 0/0          0 etc
/// -rw-r--r-- 0/0        212 etc/os-release
/// crw------- 0/0       5, 1 dev/console
/// lrwxrwxrwx 0/0          7 lib -> usr/lib
/// ```
pub fn format_entry(entry: &Entry) -> String {
    let size = match entry.file_type() {
        FileType::CharDevice | FileType::BlockDevice => {
            format!("{}, {}", entry.rdev_major, entry.rdev_minor)
        }
        _ => entry.data.len().to_string(),
    };
    let mut line = format!(
        "{} {}/{} {size:>10} {}",
        mode_string(entry.mode),
        entry.uid,
        entry.gid,
        entry.path.escape_debug()
    );
    if let Some(target) = entry.symlink_target() {
        line.push_str(&format!(" -> {}", target.escape_debug()));
    }
    line
}

/// `drwxr-xr-x` and friends, with `s`/`S` and `t`/`T` for setuid, setgid and sticky.
pub fn mode_string(mode: u32) -> String {
    let kind = match FileType::from_mode(mode) {
        FileType::Directory => 'd',
        FileType::Regular => '-',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    };
    let mut out = String::with_capacity(10);
    out.push(kind);
    // (shift of the rwx triple, special bit, letter for special+x)
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: u32, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            ino: 1,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
            data: data.to_vec(),
        }
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o040_755), "drwxr-xr-x");
        assert_eq!(mode_string(0o100_644), "-rw-r--r--");
        assert_eq!(mode_string(0o104_755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o041_777), "drwxrwxrwt");
        assert_eq!(mode_string(0o102_640), "-rw-r-S---");
        assert_eq!(mode_string(0o000_600), "?rw-------");
    }

    #[test]
    fn entries_format_like_ls() {
        let mut console = entry("dev/console", 0o020_600, b"");
        (console.rdev_major, console.rdev_minor) = (5, 1);
        let entries = [
            entry("etc", 0o040_755, b""),
            entry("etc/os-release", 0o100_644, b"ID=cairn\n"),
            console,
            entry("lib", 0o120_777, b"usr/lib"),
        ];
        let expected = "\
drwxr-xr-x 0/0          0 etc
-rw-r--r-- 0/0          9 etc/os-release
crw------- 0/0       5, 1 dev/console
lrwxrwxrwx 0/0          7 lib -> usr/lib
";
        assert_eq!(format_listing(&entries), expected);
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        let line = format_entry(&entry("a\nb", 0o100_644, b""));
        assert!(line.ends_with("a\\nb"), "{line}");
    }
}

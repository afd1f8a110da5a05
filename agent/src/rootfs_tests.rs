use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::*;
use crate::syscall::fake::{Call, RecordingSyscall};

fn mount(source: &Path, target: &Path, flags: MsFlags) -> Call {
    Call::Mount {
        source: Some(source.to_owned()),
        target: target.to_owned(),
        fstype: None,
        flags,
        data: None,
    }
}

#[test]
fn moves_the_root_then_reexecs_with_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(dir.path());
    let sys = RecordingSyscall::new();
    let argv = [OsString::from("/init"), OsString::from("quiet")];
    let env = [(OsString::from("TERM"), OsString::from("linux"))];

    let err = move_root_and_reexec(&sys, &paths, argv, env).unwrap_err();

    assert!(matches!(err, RootError::Exec(Errno::ENOSYS)));
    let bind_dir = dir.path().join(".cairn-root");
    assert_eq!(
        sys.calls(),
        vec![
            Call::CreateDirAll(bind_dir.clone()),
            mount(dir.path(), &bind_dir, MsFlags::MS_BIND),
            Call::Chdir(bind_dir),
            mount(Path::new("."), dir.path(), MsFlags::MS_MOVE),
            Call::Chroot(PathBuf::from(".")),
            Call::Chdir(PathBuf::from("/")),
            Call::Execve {
                path: PathBuf::from("/init"),
                argv: vec![c"/init".to_owned(), c"quiet".to_owned()],
                env: vec![c"TERM=linux".to_owned(), c"CAIRN_ROOT_MOVED=1".to_owned()],
            },
        ]
    );
    assert_eq!(root_state(&paths, Some("1".as_ref())), RootState::Moved);
}

#[test]
fn stops_before_chroot_when_the_move_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sys = RecordingSyscall::new();
    sys.fail_when(
        |call| matches!(call, Call::Mount { flags, .. } if *flags == MsFlags::MS_MOVE),
        Errno::EINVAL,
    );

    let err = move_root_and_reexec(&sys, &Paths::under_root(dir.path()), [], []).unwrap_err();

    assert!(matches!(err, RootError::Move(_, Errno::EINVAL)));
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Chroot(_))));
}

#[test]
fn marker_from_the_command_line_alone_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under_root(dir.path());
    assert_eq!(root_state(&paths, None), RootState::Initramfs);
    assert_eq!(root_state(&paths, Some("1".as_ref())), RootState::Initramfs);

    std::fs::write(dir.path().join(".cairn-root-moved"), "").unwrap();
    assert_eq!(
        root_state(&paths, Some("yes".as_ref())),
        RootState::Initramfs
    );
    assert_eq!(root_state(&paths, Some("1".as_ref())), RootState::Moved);
}

#[test]
fn reexec_env_replaces_a_marker_passed_by_the_kernel() {
    let env = [
        (OsString::from("CAIRN_ROOT_MOVED"), OsString::from("0")),
        (OsString::from("HOME"), OsString::from("/")),
    ];
    let expected: Vec<CString> = vec![c"HOME=/".to_owned(), c"CAIRN_ROOT_MOVED=1".to_owned()];
    assert_eq!(reexec_env(env).unwrap(), expected);
}

#[test]
fn clean_up_removes_the_marker_and_the_bind_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".cairn-root-moved"), "").unwrap();
    std::fs::create_dir(dir.path().join(".cairn-root")).unwrap();

    clean_up(&Paths::under_root(dir.path()));

    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

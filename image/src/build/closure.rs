//! What the planned files need at run time: the interpreter and shared libraries of
//! every ELF file (from the library packages), and the kernel modules the config
//! names with their dependencies, in load order.

use super::plan::{Content, Plan};
use super::{BuildError, MODULES_LOAD};
use crate::config::Validated;
use crate::deb::DebCache;
use crate::elf;
use crate::manifest::ModuleInfo;
use crate::modules::KernelTree;

/// The modules put into the image, for the manifest.
#[derive(Debug, Default)]
pub(super) struct Modules {
    /// In load order (dependencies first), as in `/etc/cairn/modules.load`.
    pub loaded: Vec<ModuleInfo>,
    /// Named in the config but built into the kernel: nothing to load.
    pub builtin: Vec<String>,
}

/// Adds the interpreter and DT_NEEDED closure of every ELF file planned so far.
pub(super) fn add_libraries(
    plan: &mut Plan,
    config: &Validated,
    debs: &DebCache,
) -> Result<(), BuildError> {
    let mut roots = Vec::new();
    for package in &config.libraries.packages {
        let deb = debs.fetch(package, None)?;
        plan.add_deb_source("libraries", &deb);
        roots.push((debs.unpacked(&deb)?, deb.control.package.clone()));
    }
    for resolved in elf::closure(&loader_inputs(plan), &roots)? {
        match resolved.symlink_target {
            Some(target) => plan.add(
                &resolved.image_path,
                0o777,
                Content::Symlink(target),
                &resolved.component,
            )?,
            None => plan.add_host_file(
                &resolved.image_path,
                &resolved.host_path,
                0o755,
                &resolved.component,
            )?,
        }
    }
    Ok(())
}

/// The planned files ld.so would load (image path and bytes, borrowed).
fn loader_inputs(plan: &Plan) -> Vec<(String, &[u8])> {
    plan.entries
        .iter()
        .filter_map(|(path, planned)| match &planned.content {
            Content::File(data) if needs_loader(data, planned.mode) => {
                Some((path.clone(), &data[..]))
            }
            _ => None,
        })
        .collect()
}

/// Executables, and shared objects whatever their mode: plugins such as the xtables
/// extensions are 0644 and dlopen(3)ed, and their DT_NEEDED must be present too.
/// Kernel modules are ELF relocatable objects (`ET_REL`) and never loaded by ld.so.
fn needs_loader(data: &[u8], mode: u32) -> bool {
    const ET_DYN: u16 = 3;
    if !data.starts_with(b"\x7fELF") || data.len() < 18 {
        return false;
    }
    // e_type follows the 16-byte e_ident; x86_64 ELF is little-endian.
    let e_type = u16::from_le_bytes([data[16], data[17]]);
    mode & 0o111 != 0 || e_type == ET_DYN
}

/// Adds the module closure and `/etc/cairn/modules.load`.
pub(super) fn add_modules(
    plan: &mut Plan,
    config: &Validated,
    kernel: &KernelTree,
) -> Result<Modules, BuildError> {
    let closure = kernel.closure(&config.kernel.modules)?;
    let mut list =
        String::from("# Written by cairn-image: load in this order (dependencies first).\n");
    let mut loaded = Vec::new();
    for module in &closure.modules {
        let image_path = format!("/{}", module.path.display());
        plan.add_host_file(
            &image_path,
            &kernel.root().join(&module.path),
            0o644,
            "kernel",
        )?;
        list.push_str(&image_path);
        list.push('\n');
        loaded.push(ModuleInfo {
            name: module.name.clone(),
            path: image_path,
        });
    }
    plan.add(
        MODULES_LOAD,
        0o644,
        Content::File(list.into_bytes().into()),
        "kernel",
    )?;
    Ok(Modules {
        loaded,
        builtin: closure.builtin.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    /// The first 18 bytes of an x86_64 ELF header with type `e_type`.
    fn elf_header(e_type: u16) -> Vec<u8> {
        let mut data = b"\x7fELF\x02\x01\x01".to_vec();
        data.resize(16, 0);
        data.extend_from_slice(&e_type.to_le_bytes());
        data
    }

    #[test]
    fn executables_and_shared_objects_need_the_loader_modules_and_data_do_not() {
        const ET_REL: u16 = 1;
        const ET_EXEC: u16 = 2;
        const ET_DYN: u16 = 3;
        assert!(needs_loader(&elf_header(ET_EXEC), 0o755));
        // A dlopen(3)ed plugin: not executable, still needs its DT_NEEDED.
        assert!(needs_loader(&elf_header(ET_DYN), 0o644));
        // A kernel module, whatever its mode.
        assert!(!needs_loader(&elf_header(ET_REL), 0o644));
        assert!(!needs_loader(b"#!/bin/sh\n", 0o755));
        assert!(!needs_loader(b"\x7fELF", 0o755), "truncated header");
    }

    #[test]
    fn a_dynamic_executable_pulls_in_its_loader_and_a_static_one_nothing() {
        // Host binaries, as in elf.rs's tests: /bin/true has PT_INTERP, ldconfig none.
        let libc = tempfile::tempdir().unwrap();
        let lib = libc.path().join("lib/x86_64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        for name in ["libc.so.6", "ld-linux-x86-64.so.2"] {
            fs::copy(
                Path::new("/lib/x86_64-linux-gnu").join(name),
                lib.join(name),
            )
            .unwrap();
        }
        fs::create_dir(libc.path().join("lib64")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            libc.path().join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        let roots = [(libc.path().to_owned(), "libc6".to_owned())];
        let planned = |host: &str| {
            let mut plan = Plan::default();
            plan.add_host_file("/bin/x", Path::new(host), 0o755, "x")
                .unwrap();
            elf::closure(&loader_inputs(&plan), &roots).unwrap()
        };
        let dynamic = planned("/bin/true");
        assert!(dynamic
            .iter()
            .any(|r| r.image_path == "/lib64/ld-linux-x86-64.so.2"));
        assert!(planned("/sbin/ldconfig").is_empty());
    }
}

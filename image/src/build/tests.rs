//! The builder's planning steps on fixture files (no apt, no cargo, no network).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::inputs::{add_components, add_container_images, Inputs};
use super::plan::{Content, Plan};
use super::*;
use crate::config::{Component, ContainerImage, SingleFile, Source};

/// Inputs whose repository files are in `dir`; nothing else is ever reached.
fn inputs<'a>(dir: &'a Path, debs: &'a DebCache) -> Inputs<'a> {
    Inputs {
        workspace: dir,
        config_dir: dir,
        debs,
        go_out: dir.join("go-out"),
        go_built: OnceCell::new(),
        cargo_profile: crate::cargo::RELEASE_PROFILE,
        cargo_built: Default::default(),
    }
}

/// A component installing the repository file `file` at `install`.
fn repo(name: &str, install: &str, file: impl Into<PathBuf>) -> Component {
    Component {
        name: name.to_owned(),
        source: Source::Single {
            install: install.to_owned(),
            file: SingleFile::Repo(file.into()),
        },
        symlinks: BTreeMap::new(),
    }
}

fn plan_components(dir: &Path, components: &[Component]) -> Result<Plan, BuildError> {
    let debs = DebCache::new(dir.join("debs"));
    let mut plan = Plan::default();
    add_components(
        &mut plan,
        components,
        &inputs(dir, &debs),
        &Progress::new(1),
    )?;
    Ok(plan)
}

fn fixture_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn conflict(err: BuildError) -> (String, String, String) {
    match err {
        BuildError::Conflict {
            path,
            first,
            second,
        } => (path, first, second),
        other => panic!("not a conflict: {other:?}"),
    }
}

#[test]
fn two_components_installing_one_path_differently_conflict() {
    let dir = fixture_dir(&[("a", b"a"), ("b", b"b")]);
    let components = [
        repo("one", "/usr/bin/x", "a"),
        repo("two", "/usr/bin/x", "b"),
    ];
    let err = plan_components(dir.path(), &components).unwrap_err();
    let expected = ("/usr/bin/x".into(), "one".into(), "two".into());
    assert_eq!(conflict(err), expected);
}

#[test]
fn two_components_installing_identical_files_share_the_entry() {
    let dir = fixture_dir(&[("a", b"same"), ("b", b"same")]);
    let components = [
        repo("one", "/usr/bin/x", "a"),
        repo("two", "/usr/bin/x", "b"),
    ];
    let plan = plan_components(dir.path(), &components).unwrap();
    assert_eq!(plan.entries["/usr/bin/x"].component, "one");
    // Both are still recorded as sources of the image.
    assert_eq!(plan.sources.len(), 2);
}

#[test]
fn a_symlink_over_another_components_file_conflicts() {
    let dir = fixture_dir(&[("a", b"a"), ("b", b"b")]);
    let mut alias = repo("alias", "/usr/bin/b", "b");
    alias.symlinks.insert("/usr/bin/a".into(), "b".into());
    let components = [repo("tool", "/usr/bin/a", "a"), alias];
    let err = plan_components(dir.path(), &components).unwrap_err();
    let expected = ("/usr/bin/a".into(), "tool".into(), "alias".into());
    assert_eq!(conflict(err), expected);
}

#[test]
fn a_component_cannot_replace_a_base_entry() {
    let dir = fixture_dir(&[("os-release", b"ID=other\n")]);
    let config = Validated::parse(Path::new("test.toml"), CONFIG).unwrap();
    let info = BuildInfo::detect(dir.path(), Some(0), crate::cargo::RELEASE_PROFILE);
    let debs = DebCache::new(dir.path().join("debs"));
    let mut plan = Plan::default();
    plan::add_base(&mut plan, &config, &info).unwrap();
    let component = [repo("mine", "/etc/os-release", "os-release")];
    let progress = Progress::new(1);
    let err =
        add_components(&mut plan, &component, &inputs(dir.path(), &debs), &progress).unwrap_err();
    let expected = ("/etc/os-release".into(), "os-release".into(), "mine".into());
    assert_eq!(conflict(err), expected);
}

#[test]
fn a_missing_repository_file_names_component_and_path() {
    let dir = fixture_dir(&[]);
    let err = plan_components(dir.path(), &[repo("x", "/x", "missing")]).unwrap_err();
    assert!(
        err.to_string().starts_with("component `x`: cannot read ")
            && err.to_string().ends_with("/missing"),
        "{err}"
    );
}

fn image_of(host_file: &str) -> ContainerImage {
    ContainerImage {
        name: "pause".into(),
        reference: "localhost/cairn/pause:1".into(),
        entrypoint: vec!["/pause".into()],
        cmd: Vec::new(),
        env: Vec::new(),
        components: vec![repo("pause", "/pause", host_file)],
    }
}

fn plan_image(image: ContainerImage) -> Result<Plan, BuildError> {
    let dir = tempfile::tempdir().unwrap();
    let debs = DebCache::new(dir.path().join("debs"));
    let info = BuildInfo::detect(dir.path(), Some(0), crate::cargo::RELEASE_PROFILE);
    let mut plan = Plan::default();
    let inputs = inputs(Path::new("/"), &debs);
    add_container_images(&mut plan, &[image], &inputs, &info, &Progress::new(1))?;
    Ok(plan)
}

#[test]
fn a_dynamic_executable_in_a_container_image_is_refused_naming_its_interpreter() {
    // /bin/true has a PT_INTERP (the host's dynamic loader); a container has none.
    let err = plan_image(image_of("bin/true")).unwrap_err();
    match &err {
        BuildError::DynamicInImage {
            image,
            path,
            interpreter,
        } => {
            assert_eq!((image.as_str(), path.as_str()), ("pause", "/pause"));
            assert!(interpreter.contains("ld-linux"), "{interpreter}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_static_executable_in_a_container_image_is_archived() {
    // ldconfig is linked statically: no PT_INTERP.
    let plan = plan_image(image_of("sbin/ldconfig")).unwrap();
    let archive = "/usr/share/cairn/images/pause.tar";
    assert!(matches!(plan.entries[archive].content, Content::File(_)));
    assert_eq!(plan.entries[archive].component, "image/pause");
    assert_eq!(plan.images[0].archive, archive);
    assert_eq!(plan.sources[0].component, "image/pause/pause");
    // The image's own files are in its layer, not the initramfs.
    assert!(!plan.entries.contains_key("/pause"));
}

#[test]
fn scripts_in_a_container_image_are_not_elf_and_pass() {
    let dir = fixture_dir(&[("run", b"#!/pause\n")]);
    let image = image_of(dir.path().join("run").to_str().unwrap());
    plan_image(image).unwrap();
}

const CONFIG: &str = r#"
[os_release]
name = "cairn"
id = "cairn"
pretty_name = "cairn node"
image_id = "cairn-node"
home_url = "https://example.invalid/cairn"

[initramfs]
compression = "none"

[kernel]
package = "linux-image-cloud-amd64"
cmdline = "console=ttyS0"

[libraries]
packages = ["libc6"]

[[component]]
name = "agent"
install = "/init"
file = "agent"

[[component]]
name = "busybox"
deb = { package = "busybox-static", version = "1:1.35", files = ["/bin/busybox"] }
"#;

#[test]
fn every_debian_package_is_resolved_ahead() {
    let config = Validated::parse(Path::new("test.toml"), CONFIG).unwrap();
    assert_eq!(
        deb_specs(&config),
        [
            ("linux-image-cloud-amd64", None),
            ("busybox-static", Some("1:1.35")),
            ("libc6", None),
        ]
    );
}

fn registries_plan(dir: &Path, table: &str) -> Result<Plan, BuildError> {
    let text = format!(
        "[os_release]\nname = \"c\"\nid = \"c\"\npretty_name = \"c\"\nimage_id = \"c\"\n\
         home_url = \"https://x.invalid\"\n[initramfs]\ncompression = \"none\"\n\
         [kernel]\npackage = \"linux-image-x\"\ncmdline = \"c\"\n[libraries]\npackages = [\"libc6\"]\n\
         [[component]]\nname = \"agent\"\ninstall = \"/init\"\nfile = \"init\"\n{table}"
    );
    let config_path = dir.join("image.toml");
    let config = crate::config::Validated::parse(&config_path, &text).unwrap();
    let mut plan = Plan::default();
    super::plan::add_registries(&mut plan, &config, &config_path)?;
    Ok(plan)
}

#[test]
fn declared_registries_are_written_for_the_agent_with_their_ca() {
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["ca.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let dir = fixture_dir(&[("ca.pem", ca.as_bytes())]);
    let none = registries_plan(dir.path(), "").unwrap();
    assert!(none.entries.is_empty(), "no registries, no file");
    let table = "[[registry]]\nhost = \"reg.test:5000\"\nmirrors = [\"https://m.test\"]\nca_file = \"ca.pem\"\n";
    let plan = registries_plan(dir.path(), table).unwrap();
    let Content::File(bytes) = &plan.entries["/etc/cairn/registries.toml"].content else {
        panic!("not a file");
    };
    let written =
        cairn_api::node_config::NodeConfig::parse(std::str::from_utf8(bytes).unwrap()).unwrap();
    assert_eq!(written.registries.len(), 1);
    assert_eq!(written.registries[0].host, "reg.test:5000");
    assert_eq!(written.registries[0].mirrors, ["https://m.test"]);
    assert_eq!(written.registries[0].ca.as_deref(), Some(ca.as_str()));
}

#[test]
fn a_registry_ca_that_is_no_certificate_is_named() {
    let dir = fixture_dir(&[("ca.pem", b"not a certificate\n")]);
    let table = "[[registry]]\nhost = \"reg.test\"\nca_file = \"ca.pem\"\n";
    let message = cairn_api::error_chain(&registries_plan(dir.path(), table).unwrap_err());
    assert!(message.contains("image.toml"), "{message}");
    assert!(
        message.contains("field `registry[0].ca_file`: ca.pem: holds no PEM certificate"),
        "{message}"
    );
    let missing = "[[registry]]\nhost = \"reg.test\"\nca_file = \"gone.pem\"\n";
    let message = cairn_api::error_chain(&registries_plan(dir.path(), missing).unwrap_err());
    assert!(message.contains("gone.pem"), "{message}");
}

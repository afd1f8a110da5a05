use super::*;

const GOOD: &str = r#"
[os_release]
name = "cairn"
id = "cairn"
pretty_name = "cairn node"
image_id = "cairn-node"
home_url = "https://example.invalid/cairn"

[initramfs]
compression = "zstd"
level = 3

[kernel]
package = "linux-image-cloud-amd64"
cmdline = "console=ttyS0"
modules = ["virtio_net"]

[libraries]
packages = ["libc6"]

[[component]]
name = "agent"
install = "/init"
cargo = { package = "cairn-agent", bin = "cairn-agent" }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("image/test.toml"), text)
}

/// The whole error chain, as the CLI prints it.
fn chain(err: &ConfigError) -> String {
    cairn_api::error_chain(err)
}

#[test]
fn the_repository_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cairn.toml");
    let config = Config::load(&path).unwrap();
    assert!(config
        .components
        .iter()
        .any(|c| c.install.as_deref() == Some("/init")));
}

#[test]
fn good_config_parses() {
    let config = Validated::parse(Path::new("image/test.toml"), GOOD).unwrap();
    assert_eq!(config.kernel.modules, ["virtio_net"]);
    let source = &config.components[0].source;
    assert!(matches!(
        source,
        Source::Single { install, file: SingleFile::Cargo(c) }
            if c.bin == "cairn-agent" && install == "/init"
    ));
}

/// Each malformed config and a piece of the message it must produce.
#[test]
fn malformed_configs_name_the_file_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown top-level table",
            "[extra]\nx = 1\n",
            "unknown field `extra`",
        ),
        ("unknown field", "", "unknown field `colour`"),
        ("wrong type", "", "invalid type"),
        ("bad compression", "", "unknown variant `lz4`"),
        (
            "level out of range",
            "",
            "field `initramfs.level`: must be in 1..=19",
        ),
        ("bad os id", "", "field `os_release.id`"),
        ("bad module", "", "field `kernel.modules[1]`"),
        ("bad package", "", "field `libraries.packages[0]`"),
        (
            "no source",
            "",
            "field `component[1]`: needs exactly one source",
        ),
        (
            "two sources",
            "",
            "field `component[1]`: needs exactly one source",
        ),
        ("relative install", "", "field `component[1].install`"),
        (
            "duplicate install",
            "",
            "field `component[1].install`: `/init` is used twice",
        ),
        ("unknown source kind", "", "unknown field `rpm`"),
        (
            "go path escapes",
            "",
            "field `component[1].go.path`: `../x` must be a relative path",
        ),
        (
            "symlink twice",
            "",
            "field `component[1].symlinks.\"/init\"`: `/init` is used twice",
        ),
        (
            "image bad name",
            "",
            "field `container_image[0].name`: may only contain",
        ),
        (
            "image bad reference",
            "",
            "field `container_image[0].reference`: `pause` is not a `host/path:tag`",
        ),
        (
            "image nothing to run",
            "",
            "field `container_image[0].entrypoint`: an image needs",
        ),
        (
            "image bad env",
            "",
            "field `container_image[0].env[0]`: must be",
        ),
        (
            "image no components",
            "",
            "field `container_image[0].component`: must list at least one",
        ),
        (
            "image component without install",
            "",
            "field `container_image[0].component[0].install`: is required",
        ),
        (
            "image duplicate reference",
            "",
            "field `container_image[1].reference`: `localhost/cairn/pause:1` is used twice",
        ),
        ("image unknown field", "", "unknown field `layers`"),
    ];
    for (name, extra, expected) in cases {
        let text = mutate(name, extra);
        let err = parse(&text).expect_err(name);
        let message = chain(&err);
        assert!(
            message.contains("image/test.toml"),
            "{name}: no file in {message}"
        );
        assert!(
            message.contains(expected),
            "{name}: expected `{expected}` in {message}"
        );
    }
}

fn mutate(case: &str, extra: &str) -> String {
    let with = |component: &str| format!("{GOOD}\n[[component]]\nname = \"x\"\n{component}\n");
    match case {
        "unknown field" => GOOD.replace("pretty_name", "colour = 1\npretty_name"),
        "wrong type" => GOOD.replace("level = 3", "level = \"high\""),
        "bad compression" => GOOD.replace("\"zstd\"", "\"lz4\""),
        "level out of range" => GOOD.replace("level = 3", "level = 40"),
        "bad os id" => GOOD.replace("id = \"cairn\"", "id = \"Cairn OS\""),
        "bad module" => GOOD.replace("[\"virtio_net\"]", "[\"virtio_net\", \"bad/name\"]"),
        "bad package" => GOOD.replace("[\"libc6\"]", "[\"LibC\"]"),
        "no source" => with("install = \"/x\""),
        "two sources" => {
            with("install = \"/x\"\nfile = \"a\"\ncargo = { package = \"a\", bin = \"a\" }")
        }
        "relative install" => with("install = \"x\"\nfile = \"a\""),
        "duplicate install" => with("install = \"/init\"\nfile = \"a\""),
        "unknown source kind" => with("install = \"/x\"\nrpm = \"a\""),
        "go path escapes" => with("install = \"/x\"\ngo = { path = \"../x\" }"),
        "symlink twice" => with("install = \"/x\"\nfile = \"a\"\nsymlinks = { \"/init\" = \"x\" }"),
        "image bad name" => image("Pause", "localhost/cairn/pause:1", PAUSE_BODY),
        "image bad reference" => image("pause", "pause", PAUSE_BODY),
        "image nothing to run" => image("pause", "localhost/cairn/pause:1", COMPONENT),
        "image bad env" => image(
            "pause",
            "localhost/cairn/pause:1",
            &format!("env = [\"NOEQUALS\"]\n{PAUSE_BODY}"),
        ),
        "image no components" => image(
            "pause",
            "localhost/cairn/pause:1",
            "cmd = [\"/x\"]\ncomponent = []\n",
        ),
        "image component without install" => image(
            "pause",
            "localhost/cairn/pause:1",
            "cmd = [\"/x\"]\n[[container_image.component]]\nname = \"p\"\nfile = \"a\"\n",
        ),
        "image duplicate reference" => format!(
            "{}{}",
            image("pause", "localhost/cairn/pause:1", PAUSE_BODY),
            image("other", "localhost/cairn/pause:1", PAUSE_BODY).replace(GOOD, "")
        ),
        "image unknown field" => image(
            "pause",
            "localhost/cairn/pause:1",
            &format!("layers = 2\n{PAUSE_BODY}"),
        ),
        _ => format!("{GOOD}{extra}"),
    }
}

const COMPONENT: &str = "[[container_image.component]]\nname = \"pause\"\ninstall = \"/pause\"\n\
    cargo = { package = \"cairn-pause\", bin = \"cairn-pause\", static = true }\n";
const PAUSE_BODY: &str = "entrypoint = [\"/pause\"]\n\
    [[container_image.component]]\nname = \"pause\"\ninstall = \"/pause\"\n\
    cargo = { package = \"cairn-pause\", bin = \"cairn-pause\", static = true }\n";

/// GOOD plus one `[[container_image]]` with `body` after its name and reference.
fn image(name: &str, reference: &str, body: &str) -> String {
    format!("{GOOD}\n[[container_image]]\nname = \"{name}\"\nreference = \"{reference}\"\n{body}")
}

#[test]
fn container_images_and_go_components_parse() {
    let text = format!(
        "{}\n[[component]]\nname = \"runc\"\ninstall = \"/usr/bin/runc\"\ngo = {{ path = \"bin/runc\" }}\n",
        image("pause", "localhost/cairn/pause:1", PAUSE_BODY)
    );
    let config = Validated::parse(Path::new("image/test.toml"), &text).unwrap();
    let image = &config.container_images[0];
    assert_eq!(image.archive_path(), "/usr/share/cairn/images/pause.tar");
    assert_eq!(image.entrypoint, ["/pause"]);
    let pause = &image.components[0].source;
    assert!(matches!(pause, Source::Single { file: SingleFile::Cargo(c), .. } if c.static_link));
    let go = &config.components[1].source;
    assert!(matches!(go, Source::Single { file: SingleFile::Go(g), .. } if g.path == "bin/runc"));
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::load(Path::new("/nonexistent/cairn.toml")).unwrap_err();
    assert!(chain(&err).contains("cannot read config /nonexistent/cairn.toml"));
}

#[test]
fn no_level_is_fine_and_level_without_compression_is_not() {
    let none = GOOD.replace("\"zstd\"", "\"none\"");
    let err = parse(&none).unwrap_err();
    assert!(chain(&err).contains("initramfs.level"));
    parse(&none.replace("level = 3", "")).unwrap();
}

#[test]
fn the_production_config_is_the_debug_one_without_the_debug_service() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let debug = Config::load(&dir.join("cairn.toml")).unwrap();
    let production = Config::load(&dir.join("production.toml")).unwrap();
    let features = |config: &Config| {
        let agent = config
            .components
            .iter()
            .find(|c| c.name == "agent")
            .unwrap();
        agent.cargo.as_ref().unwrap().features.clone()
    };
    assert_eq!(features(&debug), ["debug-service"]);
    assert!(features(&production).is_empty());
    assert_eq!(debug.kernel, production.kernel);
    assert_eq!(debug.components.len(), production.components.len());
    assert_ne!(debug.os_release.image_id, production.os_release.image_id);
}

/// A `[[component]]` appended to GOOD.
fn with_component(body: &str) -> String {
    format!("{GOOD}\n[[component]]\n{body}\n")
}

/// Malformed configs through [`Config::load`], the path the builder's CLI takes
/// (files on disk, `extends` merged before validation): the config file written as
/// `cairn.toml` (with GOOD as `base.toml` beside it, for `extends`), the file the
/// message must name, and a piece of the message naming the field or component.
#[test]
fn malformed_config_files_name_the_file_and_the_field() {
    let variant = |body: &str| format!("extends = \"base.toml\"\n{body}");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // Unknown fields, at every level.
        (
            "unknown top-level key",
            format!("colour = 1\n{GOOD}"),
            "cairn.toml",
            "unknown field `colour`, expected one of `os_release`",
        ),
        (
            "unknown field in a table",
            GOOD.replace("pretty_name", "colour = 1\npretty_name"),
            "cairn.toml",
            "unknown field `colour`, expected one of `name`, `id`, `pretty_name`, `image_id`, `home_url`\nin `os_release`",
        ),
        (
            "unknown field in a component",
            with_component("name = \"x\"\ninstall = \"/x\"\nrpm = \"a\""),
            "cairn.toml",
            "unknown field `rpm`, expected one of `name`, `install`, `cargo`, `file`, `deb`, `go`, `symlinks`\nin `component`",
        ),
        (
            "unknown field in a component's source",
            with_component("name = \"x\"\ninstall = \"/x\"\ngo = { path = \"bin/x\", tag = \"v1\" }"),
            "cairn.toml",
            "unknown field `tag`, expected `path`\nin `component.go`",
        ),
        // Wrong types.
        (
            "wrong type of a scalar",
            GOOD.replace("level = 3", "level = \"high\""),
            "cairn.toml",
            "invalid type: string \"high\", expected i32\nin `initramfs.level`",
        ),
        (
            "wrong type of a list",
            GOOD.replace("[\"virtio_net\"]", "\"virtio_net\""),
            "cairn.toml",
            "invalid type: string \"virtio_net\", expected a sequence\nin `kernel.modules`",
        ),
        (
            "wrong type in a component",
            with_component("name = \"x\"\ninstall = 5\nfile = \"a\""),
            "cairn.toml",
            "invalid type: integer `5`, expected a string\nin `component.install`",
        ),
        (
            "unknown enum value",
            GOOD.replace("\"zstd\"", "\"lz4\""),
            "cairn.toml",
            "unknown variant `lz4`, expected one of `zstd`, `gzip`, `none`\nin `initramfs.compression`",
        ),
        // Missing pieces.
        (
            "missing table",
            GOOD.replace("[libraries]\npackages = [\"libc6\"]", ""),
            "cairn.toml",
            "missing field `libraries`",
        ),
        (
            "missing required field",
            GOOD.replace("cmdline = \"console=ttyS0\"\n", ""),
            "cairn.toml",
            "missing field `cmdline`\nin `kernel`",
        ),
        (
            "component without a name",
            with_component("install = \"/x\"\nfile = \"a\""),
            "cairn.toml",
            "missing field `name`\nin `component`",
        ),
        (
            "component without a source",
            with_component("name = \"x\"\ninstall = \"/x\""),
            "cairn.toml",
            "field `component[1]`: needs exactly one source: `cargo`, `file`, `deb` or `go`",
        ),
        (
            "cargo source without a binary",
            with_component("name = \"x\"\ninstall = \"/x\"\ncargo = { package = \"a\" }"),
            "cairn.toml",
            "missing field `bin`\nin `component.cargo`",
        ),
        (
            "deb source without files",
            with_component("name = \"x\"\ndeb = { package = \"iptables\", files = [] }"),
            "cairn.toml",
            "field `component[1].deb.files`: must list at least one file",
        ),
        (
            "no library packages",
            GOOD.replace("[\"libc6\"]", "[]"),
            "cairn.toml",
            "field `libraries.packages`: must name at least one package",
        ),
        // Names used twice.
        (
            "duplicate component name",
            with_component("name = \"agent\"\ninstall = \"/x\"\nfile = \"a\""),
            "cairn.toml",
            "field `component[1].name`: `agent` is used twice",
        ),
        (
            "duplicate image name",
            format!(
                "{}{}",
                image("pause", "localhost/cairn/pause:1", PAUSE_BODY),
                image("pause", "localhost/cairn/other:1", PAUSE_BODY).replace(GOOD, "")
            ),
            "cairn.toml",
            "field `container_image[1].name`: `pause` is used twice",
        ),
        // Kernel modules.
        (
            "module with a path",
            GOOD.replace("[\"virtio_net\"]", "[\"kernel/drivers/net/virtio_net\"]"),
            "cairn.toml",
            "field `kernel.modules[0]`: `kernel/drivers/net/virtio_net` is not a kernel module name",
        ),
        (
            "module file name",
            GOOD.replace("[\"virtio_net\"]", "[\"virtio_net\", \"overlay.ko\"]"),
            "cairn.toml",
            "field `kernel.modules[1]`: `overlay.ko` is not a kernel module name",
        ),
        (
            "empty module name",
            GOOD.replace("[\"virtio_net\"]", "[\"\"]"),
            "cairn.toml",
            "field `kernel.modules[0]`: `` is not a kernel module name",
        ),
        (
            "bad kernel package",
            GOOD.replace("\"linux-image-cloud-amd64\"", "\"Linux Image\""),
            "cairn.toml",
            "field `kernel.package`: `Linux Image` is not a valid Debian package name",
        ),
        // Paths.
        (
            "relative install path",
            with_component("name = \"x\"\ninstall = \"usr/bin/x\"\nfile = \"a\""),
            "cairn.toml",
            "field `component[1].install`: `usr/bin/x` must be an absolute file path without `..`",
        ),
        (
            "install path escaping with ..",
            with_component("name = \"x\"\ninstall = \"/usr/../../x\"\nfile = \"a\""),
            "cairn.toml",
            "field `component[1].install`: `/usr/../../x` must be an absolute file path",
        ),
        (
            "install path naming a directory",
            with_component("name = \"x\"\ninstall = \"/usr/bin/\"\nfile = \"a\""),
            "cairn.toml",
            "field `component[1].install`: `/usr/bin/` must be an absolute file path",
        ),
        (
            "relative package file",
            with_component(
                "name = \"x\"\ndeb = { package = \"iptables\", files = [\"usr/sbin/iptables\"] }",
            ),
            "cairn.toml",
            "field `component[1].deb.files[0]`: `usr/sbin/iptables` must be an absolute file path",
        ),
        (
            "absolute go path",
            with_component("name = \"x\"\ninstall = \"/x\"\ngo = { path = \"/usr/bin/x\" }"),
            "cairn.toml",
            "field `component[1].go.path`: `/usr/bin/x` must be a relative path without `..`",
        ),
        (
            "relative symlink path",
            with_component(
                "name = \"x\"\ninstall = \"/x\"\nfile = \"a\"\nsymlinks = { \"bin/y\" = \"x\" }",
            ),
            "cairn.toml",
            "field `component[1].symlinks.\"bin/y\"`: `bin/y` must be an absolute file path",
        ),
        (
            "empty symlink target",
            with_component(
                "name = \"x\"\ninstall = \"/x\"\nfile = \"a\"\nsymlinks = { \"/y\" = \"\" }",
            ),
            "cairn.toml",
            "field `component[1].symlinks.\"/y\"`: must not be empty",
        ),
        // Not TOML at all: the line and column.
        (
            "syntax error",
            GOOD.replace("[kernel]", "[kernel"),
            "cairn.toml",
            "TOML parse error at line 13, column 8",
        ),
        // `extends`.
        (
            "extends not a string",
            "extends = 3\n".to_owned(),
            "cairn.toml",
            "`extends` must be a file name",
        ),
        (
            "extends a missing file",
            "extends = \"gone.toml\"\n".to_owned(),
            "gone.toml",
            "cannot read config",
        ),
        (
            "extends itself",
            "extends = \"cairn.toml\"\n".to_owned(),
            "cairn.toml",
            "`extends` chain is longer than 4 files",
        ),
        (
            "unknown field in a variant",
            variant("[kernel]\nmodule = [\"overlay\"]\n"),
            "cairn.toml",
            "unknown field `module`, expected one of `package`, `version`, `cmdline`, `modules`\nin `kernel`",
        ),
        (
            "wrong type in a variant",
            variant("[initramfs]\nlevel = \"max\"\n"),
            "cairn.toml",
            "invalid type: string \"max\", expected i32\nin `initramfs.level`",
        ),
        (
            "invalid value in a variant",
            variant("[kernel]\nmodules = [\"bad/name\"]\n"),
            "cairn.toml",
            "field `kernel.modules[0]`: `bad/name` is not a kernel module name",
        ),
        (
            "variant adding a component without a source",
            variant("[[component]]\nname = \"extra\"\ninstall = \"/extra\"\n"),
            "cairn.toml",
            "field `component[1]`: needs exactly one source",
        ),
        (
            "variant merging into a misspelt component",
            variant("[[component]]\nname = \"agnet\"\ninstall = \"/init\"\n"),
            "base.toml",
            "(`agnet` is not a component of",
        ),
    ];
    for (name, text, file, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), GOOD).unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, &text).unwrap();
        let err = Config::load(&path).expect_err(name);
        let message = chain(&err);
        let file = dir.path().join(file);
        assert!(
            message.contains(&file.display().to_string()),
            "{name}: expected the file {} in `{message}`",
            file.display()
        );
        assert!(
            message.contains(expected),
            "{name}: expected `{expected}` in `{message}`"
        );
    }
}

/// The base of a variant is validated as part of the merged config, and an error
/// in the base's own syntax names the base.
#[test]
fn a_broken_base_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.toml");
    std::fs::write(&base, GOOD.replace("[kernel]", "[kernel")).unwrap();
    let path = dir.path().join("variant.toml");
    std::fs::write(&path, "extends = \"base.toml\"\n").unwrap();
    let message = chain(&Config::load(&path).unwrap_err());
    assert!(
        message.contains(&format!("invalid config {}", base.display()))
            && message.contains("line 13, column 8"),
        "{message}"
    );
}

#[test]
fn an_image_without_init_or_with_a_host_file_is_refused() {
    let without_init = GOOD.replace("install = \"/init\"", "install = \"/usr/bin/agent\"");
    let err = chain(&parse(&without_init).unwrap_err());
    assert!(
        err.contains("`component`") && err.contains("no component installs `/init`"),
        "{err}"
    );
    for file in ["/etc/passwd", "../../secret", ""] {
        let text =
            format!("{GOOD}\n[[component]]\nname = \"x\"\ninstall = \"/x\"\nfile = {file:?}\n");
        let err = chain(&parse(&text).unwrap_err());
        assert!(
            err.contains("`component[1].file`") && err.contains("must be a relative path"),
            "{file}: {err}"
        );
    }
}

#[test]
fn registries_are_checked_field_by_field() {
    let with = |table: &str| format!("{GOOD}\n{table}");
    let good = with(
        "[[registry]]\nhost = \"10.0.2.2:5000\"\nmirrors = [\"https://m:5443\"]\nca_file = \"ca.pem\"\n",
    );
    let config = Validated::parse(Path::new("image/test.toml"), &good).unwrap();
    assert_eq!(
        config.registries[0].ca_file.as_deref(),
        Some(Path::new("ca.pem"))
    );
    let cases = [
        ("host = \"https://x\"\n", "field `registry[0].host`"),
        (
            "host = \"x\"\nmirrors = [\"http://m\"]\n",
            "field `registry[0].mirrors[0]`: \"http://m\" is plain HTTP",
        ),
        (
            "host = \"x\"\nca_file = \"../ca.pem\"\n",
            "field `registry[0].ca_file`",
        ),
        (
            "host = \"x\"\nclient_key = \"k.pem\"\n",
            "unknown field `client_key`",
        ),
    ];
    for (table, expected) in cases {
        let err = parse(&with(&format!("[[registry]]\n{table}"))).unwrap_err();
        let message = chain(&err);
        assert!(message.contains("image/test.toml"), "{message}");
        assert!(message.contains(expected), "{table}: {message}");
    }
    let twice = with("[[registry]]\nhost = \"x\"\n[[registry]]\nhost = \"x\"\n");
    assert!(chain(&parse(&twice).unwrap_err())
        .contains("field `registry[1].host`: \"x\" is declared twice"));
}

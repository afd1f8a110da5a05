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
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    let config = parse(GOOD).unwrap();
    assert_eq!(config.kernel.modules, ["virtio_net"]);
    let source = config.components[0].source().unwrap();
    assert!(matches!(source, Source::Cargo(c) if c.bin == "cairn-agent"));
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
    let config = parse(&text).unwrap();
    let image = &config.container_images[0];
    assert_eq!(image.archive_path(), "/usr/share/cairn/images/pause.tar");
    assert_eq!(image.entrypoint, ["/pause"]);
    assert!(matches!(image.components[0].source(), Some(Source::Cargo(c)) if c.static_link));
    let go = config.components[1].source().unwrap();
    assert!(matches!(go, Source::Go(g) if g.path == "bin/runc"));
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

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
        _ => format!("{GOOD}{extra}"),
    }
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

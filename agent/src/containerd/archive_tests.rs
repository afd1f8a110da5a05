use super::*;

/// A minimal archive as the builder writes it, with `edit` applied to index.json.
fn archive(reference: &str, layers: &[&[u8]], edit: impl Fn(String) -> String) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let descriptor = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": sha256_digest(data), "size": data.len()});
    let layer_descriptors: Vec<_> = layers
        .iter()
        .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
        .collect();
    let manifest = serde_json::json!({"schemaVersion": 2,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": layer_descriptors})
    .to_string();
    let mut entry = descriptor(MEDIA_TYPE_MANIFEST, manifest.as_bytes());
    entry["annotations"] = serde_json::json!({ REF_NAME: reference });
    let index = edit(serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string());
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.json".into(), index.into_bytes()),
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
    ];
    for data in [config.as_bytes(), manifest.as_bytes()]
        .into_iter()
        .chain(layers.iter().copied())
    {
        let hex = &sha256_digest(data)[7..];
        files.push((format!("blobs/sha256/{hex}"), data.to_vec()));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, data.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn parses_reference_layers_and_chain_ids() {
    let bytes = archive(
        "localhost/cairn/toolbox:1",
        &[b"layer one", b"layer two"],
        |i| i,
    );
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.reference, "localhost/cairn/toolbox:1");
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.blob(&image.layers[1].digest), b"layer two");
    let chain = image.chain_ids();
    assert_eq!(chain[0], sha256_digest(b"layer one"));
    let expected = sha256_digest(
        format!(
            "{} {}",
            sha256_digest(b"layer one"),
            sha256_digest(b"layer two")
        )
        .as_bytes(),
    );
    assert_eq!(chain[1], expected);
}

#[test]
fn malformed_archives_are_errors_naming_the_problem() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("not a tar", b"garbage that is long enough".repeat(40)),
        (
            "no reference",
            archive("x", &[b"l"], |i| i.replace(REF_NAME, "other")),
        ),
        (
            "two manifests",
            archive("x", &[b"l"], |i| {
                i.replace("[{", r#"[{"mediaType":"m","digest":"d","size":1},{"#)
            }),
        ),
        (
            "bad digest",
            archive("x", &[b"l"], |i| i.replace("sha256:", "sha256:00")),
        ),
    ];
    for (name, bytes) in cases {
        let err = Image::parse(&bytes).expect_err(name);
        let text = err.to_string();
        let expected = match name {
            "not a tar" => "tar",
            "no reference" => "annotation",
            "two manifests" => "exactly one manifest",
            _ => "blobs/sha256/00",
        };
        assert!(text.contains(expected), "{name}: {text}");
    }
}

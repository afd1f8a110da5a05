use super::*;

const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A tar written entry by entry with raw headers, so tests can forge what the `tar`
/// crate's builder refuses to write (`..` paths, sizes the data does not have).
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn raw(&mut self, path: &[u8], kind: tar::EntryType, size: u64, data: &[u8], link: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
    }

    fn file(&mut self, path: &str, data: &[u8]) {
        self.raw(
            path.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            data,
            b"",
        );
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 1024, 0);
        self.0
    }
}

fn blob_path(data: &[u8]) -> String {
    format!("blobs/sha256/{}", &sha256_digest(data)[7..])
}

/// An OCI image layout as the builder writes it, file by file, for tests to edit:
/// config, manifest, the layers, index.json, oci-layout.
fn oci_files(reference: &str, layers: &[&[u8]]) -> Vec<(String, Vec<u8>)> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let descriptor = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": sha256_digest(data), "size": data.len()});
    let layer_descriptors: Vec<_> = layers.iter().map(|l| descriptor(LAYER_TAR, l)).collect();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": layer_descriptors})
    .to_string();
    let mut entry = descriptor(MEDIA_TYPE_MANIFEST, manifest.as_bytes());
    entry["annotations"] = serde_json::json!({ REF_NAME: reference });
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
    let mut files = vec![
        (blob_path(config.as_bytes()), config.into_bytes()),
        (blob_path(manifest.as_bytes()), manifest.into_bytes()),
    ];
    files.extend(layers.iter().map(|l| (blob_path(l), l.to_vec())));
    files.push(("index.json".into(), index.into_bytes()));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    files
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = Tar::default();
    for (path, data) in files {
        tar.file(path, data);
    }
    tar.finish()
}

/// Records what reaches the content store.
#[derive(Debug, Default)]
struct Recorder {
    begun: Vec<(u64, Option<String>)>,
    bytes: u64,
    committed: Vec<String>,
    /// Refuse the blob after this many.
    stop_after: Option<usize>,
}

impl BlobSink for Recorder {
    fn begin(&mut self, size: u64, expected: Option<&str>) -> Result<(), Stopped> {
        if self.stop_after == Some(self.begun.len()) {
            return Err(Stopped);
        }
        self.begun.push((size, expected.map(str::to_owned)));
        Ok(())
    }

    fn data(&mut self, chunk: Vec<u8>) -> Result<(), Stopped> {
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    fn commit(&mut self, digest: &str) -> Result<(), Stopped> {
        self.committed.push(digest.to_owned());
        Ok(())
    }
}

fn read_all(bytes: &[u8], sink: &mut Recorder) -> Result<Contents, ArchiveError> {
    read(bytes, bytes.len() as u64, &Limits::default(), sink)
}

/// The archive's error, and what reached the store before it.
fn refused(bytes: &[u8]) -> (ArchiveError, Recorder) {
    let mut sink = Recorder::default();
    let err = read_all(bytes, &mut sink)
        .and_then(|contents| images(&contents).map(drop))
        .expect_err("the archive must be refused");
    (err, sink)
}

#[test]
fn an_oci_layout_streams_every_blob_and_names_its_image() {
    let bytes = tar_of(&oci_files(
        "localhost/cairn/toolbox:1",
        &[b"layer one", b"layer two"],
    ));
    let mut sink = Recorder::default();
    let contents = read_all(&bytes, &mut sink).unwrap();
    let [plan] = <[ImagePlan; 1]>::try_from(images(&contents).unwrap()).unwrap();
    assert_eq!(plan.references, ["localhost/cairn/toolbox:1"]);
    assert_eq!(plan.layers.len(), 2);
    assert_eq!(plan.diff_ids[1], sha256_digest(b"layer two"));
    assert!(plan.written_manifest.is_none());
    // Config, manifest and both layers went to the store, each with its name's digest.
    assert_eq!(sink.committed.len(), 4);
    assert!(sink.begun.iter().all(|(_, expected)| expected.is_some()));
    assert!(sink.committed.contains(&plan.manifest.digest));
    assert_eq!(contents.bytes, bytes.len() as u64);
    let chain = chain_ids(&plan.diff_ids);
    assert_eq!(chain[0], sha256_digest(b"layer one"));
    let second = format!("{} {}", chain[0], sha256_digest(b"layer two"));
    assert_eq!(chain[1], sha256_digest(second.as_bytes()));
}

#[test]
fn a_docker_save_archive_gets_a_manifest_and_normalized_names() {
    let layer = b"a layer tar".to_vec();
    let diff_id = sha256_digest(&layer);
    let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]}})
        .to_string();
    let config_file = format!("{}.json", &sha256_digest(config.as_bytes())[7..]);
    let manifest = serde_json::json!([{"Config": config_file, "RepoTags": ["busybox:1.37", "example.com:5000/team/app"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}])
    .to_string();
    let mut tar = Tar::default();
    tar.file(&config_file, config.as_bytes());
    tar.raw(b"aaa/", tar::EntryType::Directory, 0, b"", b"");
    tar.file("aaa/layer.tar", &layer);
    tar.file("aaa/json", b"{}");
    // docker save links a layer it has written already.
    tar.raw(
        b"bbb/layer.tar",
        tar::EntryType::Symlink,
        0,
        b"",
        b"../aaa/layer.tar",
    );
    tar.file("manifest.json", manifest.as_bytes());
    let bytes = tar.finish();
    let mut sink = Recorder::default();
    let contents = read_all(&bytes, &mut sink).unwrap();
    let [plan] = <[ImagePlan; 1]>::try_from(images(&contents).unwrap()).unwrap();
    assert_eq!(
        plan.references,
        [
            "docker.io/library/busybox:1.37",
            "example.com:5000/team/app:latest"
        ]
    );
    assert_eq!(plan.layers.len(), 2);
    assert_eq!(plan.layers[1].digest, diff_id);
    assert_eq!(plan.layers[0].media_type, LAYER_TAR);
    let written = plan
        .written_manifest
        .as_ref()
        .expect("the node writes a manifest");
    assert_eq!(plan.manifest.digest, sha256_digest(written));
    let body: serde_json::Value = serde_json::from_slice(written).unwrap();
    assert_eq!(body["config"]["digest"], sha256_digest(config.as_bytes()));
    // Blobs without a digest in their name are committed with the one computed.
    assert!(sink.begun.iter().all(|(_, expected)| expected.is_none()));
    assert!(sink.committed.contains(&diff_id));
}

#[test]
fn a_nested_index_yields_its_linux_amd64_manifest() {
    let mut files = oci_files("ignored", &[b"layer"]);
    let manifest = files[1].1.clone();
    let absent = serde_json::json!({"mediaType": MEDIA_TYPE_MANIFEST, "digest": format!("sha256:{}", "0".repeat(64)),
        "size": 10, "platform": {"architecture": "arm64", "os": "linux"}});
    let present = serde_json::json!({"mediaType": MEDIA_TYPE_MANIFEST, "digest": sha256_digest(&manifest),
        "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}});
    let nested =
        serde_json::json!({"schemaVersion": 2, "manifests": [absent, present]}).to_string();
    let entry = serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha256_digest(nested.as_bytes()), "size": nested.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/busybox:latest", REF_NAME: "latest"}});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
    let last = files.len() - 2;
    files[last].1 = index.into_bytes();
    files.insert(0, (blob_path(nested.as_bytes()), nested.into_bytes()));
    let mut sink = Recorder::default();
    let contents = read_all(&tar_of(&files), &mut sink).unwrap();
    let [plan] = <[ImagePlan; 1]>::try_from(images(&contents).unwrap()).unwrap();
    assert_eq!(plan.references, ["docker.io/library/busybox:latest"]);
    assert_eq!(plan.manifest.digest, sha256_digest(&manifest));
}

#[test]
fn a_truncated_archive_is_refused_and_its_cut_blob_never_committed() {
    let files = oci_files("localhost/x:1", &[&[7u8; 3000]]);
    let bytes = tar_of(&files);
    // Cut inside the layer's data: the layer is the third entry.
    let padded = |i: usize| files[i].1.len().next_multiple_of(512);
    let cut = 512 * 3 + padded(0) + padded(1) + 1000;
    let (err, sink) = refused(&bytes[..cut]);
    assert!(matches!(err, ArchiveError::ClaimsTooMuch { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(sink.committed.len(), 2, "only the blobs before the cut");
    // The same cut with the full size declared: the stream ends early.
    let mut sink = Recorder::default();
    let err = read(
        &bytes[..cut],
        bytes.len() as u64,
        &Limits::default(),
        &mut sink,
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err}");
    assert_eq!(sink.committed.len(), 2);
    // Cut inside the second header.
    let (err, _) = refused(&bytes[..512 + padded(0) + 100]);
    assert!(matches!(err, ArchiveError::Cut(_)), "{err}");
}

#[test]
fn a_stream_longer_than_declared_is_refused() {
    let bytes = tar_of(&oci_files("localhost/x:1", &[b"l"]));
    let mut sink = Recorder::default();
    let declared = bytes.len() as u64 - 512;
    let err = read(&bytes[..], declared, &Limits::default(), &mut sink).unwrap_err();
    assert!(
        matches!(err, ArchiveError::LongerThanDeclared { .. }),
        "{err}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_name_is_never_committed() {
    let mut files = oci_files("localhost/x:1", &[b"layer one", b"layer two"]);
    files[3].1 = b"layer 2wo".to_vec();
    let (err, sink) = refused(&tar_of(&files));
    assert!(matches!(err, ArchiveError::Digest { .. }), "{err}");
    assert!(err.to_string().contains(&files[3].0), "{err}");
    assert_eq!(
        sink.committed.len(),
        3,
        "the bad blob is streamed but not committed"
    );
    assert_eq!(sink.begun.len(), 4);
}

#[test]
fn paths_and_links_that_leave_the_archive_are_refused_before_their_data() {
    let files = oci_files("localhost/x:1", &[b"l"]);
    let cases: [(&[u8], tar::EntryType, &[u8]); 5] = [
        (b"../evil", tar::EntryType::Regular, b""),
        (b"blobs/../../evil", tar::EntryType::Regular, b""),
        (b"/etc/passwd", tar::EntryType::Regular, b""),
        (b"blobs/link", tar::EntryType::Symlink, b"../../etc/passwd"),
        (b"blobs/link", tar::EntryType::Symlink, b"/etc/passwd"),
    ];
    for (path, kind, link) in cases {
        let mut tar = Tar::default();
        tar.file(&files[0].0, &files[0].1);
        tar.raw(path, kind, 4, b"evil", link);
        tar.file(&files[2].0, &files[2].1);
        let (err, sink) = refused(&tar.finish());
        let shown = String::from_utf8_lossy(path);
        assert!(
            matches!(
                err,
                ArchiveError::UnsafePath { .. } | ArchiveError::UnsafeLink { .. }
            ),
            "{shown}: {err}"
        );
        assert!(err.to_string().contains(&*shown), "{err}");
        assert_eq!(sink.begun.len(), 1, "{shown}: nothing after it is read");
    }
}

#[test]
fn a_pax_path_is_checked_and_a_pax_size_refused() {
    // `<length> <key>=<value>\n`, the length counting its own digits.
    let record = |key: &str, value: &str| {
        let body = format!(" {key}={value}\n");
        let mut len = body.len();
        while len != body.len() + len.to_string().len() {
            len = body.len() + len.to_string().len();
        }
        format!("{len}{body}")
    };
    for (records, expected) in [
        (record("path", "../../evil"), "leaves the archive"),
        (record("size", "12"), "PAX size"),
    ] {
        let mut tar = Tar::default();
        let data = records.as_bytes();
        tar.raw(
            b"PaxHeader",
            tar::EntryType::XHeader,
            data.len() as u64,
            data,
            b"",
        );
        tar.file("innocent", b"data");
        let (err, _) = refused(&tar.finish());
        assert!(err.to_string().contains(expected), "{records:?}: {err}");
    }
}

#[test]
fn sizes_claimed_beyond_the_archive_are_refused_before_reading() {
    for kind in [
        tar::EntryType::Regular,
        tar::EntryType::GNULongName,
        tar::EntryType::XHeader,
    ] {
        let mut tar = Tar::default();
        tar.raw(b"blobs/sha256/huge", kind, 5 << 30, b"only a little", b"");
        let (err, sink) = refused(&tar.finish());
        assert!(
            matches!(err, ArchiveError::ClaimsTooMuch { size, .. } if size == 5 << 30),
            "{kind:?}: {err}"
        );
        assert!(sink.begun.is_empty(), "{kind:?}: refused before any data");
    }
    // Within the archive but past what a metadata file may be.
    let limits = Limits {
        metadata: 16,
        ..Limits::default()
    };
    let bytes = tar_of(&[("index.json".into(), vec![b' '; 100])]);
    let err = read(
        &bytes[..],
        bytes.len() as u64,
        &limits,
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
}

#[test]
fn manifests_pointing_at_missing_or_wrong_blobs_are_refused() {
    let files = oci_files("localhost/x:1", &[b"layer one", b"layer two"]);
    // Drop the second layer, then the config.
    for (dropped, what) in [(3, "layer"), (0, "config")] {
        let mut files = files.clone();
        let (_, gone) = files.remove(dropped);
        let (err, _) = refused(&tar_of(&files));
        assert!(matches!(err, ArchiveError::MissingBlob { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(what) && text.contains(&sha256_digest(&gone)),
            "{text}"
        );
    }
    // A descriptor whose size is not the blob's.
    let mut files = files.clone();
    let index = String::from_utf8(files[4].1.clone()).unwrap();
    let size = files[1].1.len();
    files[4].1 = index
        .replace(
            &format!("\"size\":{size}"),
            &format!("\"size\":{}", size + 1),
        )
        .into_bytes();
    let (err, _) = refused(&tar_of(&files));
    assert!(matches!(err, ArchiveError::Size { .. }), "{err}");
}

#[test]
fn malformed_json_is_refused_naming_the_document() {
    let files = oci_files("localhost/x:1", &[b"l"]);
    let mut bad_index = files.clone();
    bad_index[3].1 = b"{\"manifests\": [".to_vec();
    let (err, _) = refused(&tar_of(&bad_index));
    assert!(
        matches!(err, ArchiveError::Json { ref what, .. } if what == "index.json"),
        "{err}"
    );
    // A manifest of the wrong shape, under its true digest (the index follows it).
    let mut bad_manifest = files.clone();
    let manifest = b"{\"config\": 1}".to_vec();
    let index = String::from_utf8(files[3].1.clone()).unwrap();
    let old = &files[1].1;
    let index = index
        .replace(&sha256_digest(old), &sha256_digest(&manifest))
        .replace(
            &format!("\"size\":{}", old.len()),
            &format!("\"size\":{}", manifest.len()),
        );
    bad_manifest[1] = (blob_path(&manifest), manifest);
    bad_manifest[3].1 = index.into_bytes();
    let (err, _) = refused(&tar_of(&bad_manifest));
    assert!(
        matches!(err, ArchiveError::Json { ref what, .. } if what.starts_with("manifest sha256:")),
        "{err}"
    );
    // No index at all.
    let (err, _) = refused(&tar_of(&files[..3]));
    assert!(matches!(err, ArchiveError::NoIndex), "{err}");
}

#[test]
fn an_uncompressed_layer_must_be_its_own_diff_id() {
    let mut files = oci_files("localhost/x:1", &[b"layer"]);
    let config = String::from_utf8(files[0].1.clone()).unwrap();
    let config = config.replace(&sha256_digest(b"layer"), &sha256_digest(b"other"));
    // Rewrite the config under its new digest, and the manifest and index after it.
    let manifest = String::from_utf8(files[1].1.clone()).unwrap().replace(
        &sha256_digest(&files[0].1),
        &sha256_digest(config.as_bytes()),
    );
    let index = String::from_utf8(files[3].1.clone()).unwrap().replace(
        &sha256_digest(&files[1].1),
        &sha256_digest(manifest.as_bytes()),
    );
    files[0] = (blob_path(config.as_bytes()), config.into_bytes());
    files[1] = (blob_path(manifest.as_bytes()), manifest.into_bytes());
    files[3].1 = index.into_bytes();
    let (err, _) = refused(&tar_of(&files));
    assert!(matches!(err, ArchiveError::DiffId { .. }), "{err}");
}

#[test]
fn a_config_must_list_one_diff_id_per_layer() {
    let files = oci_files("localhost/x:1", &[b"layer one", b"layer two"]);
    let config: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    let mut one = config.clone();
    one["rootfs"]["diff_ids"] = serde_json::json!([sha256_digest(b"layer one")]);
    let one = one.to_string();
    // The manifest and index name the config and the manifest by digest and size.
    let rename = |text: &[u8], old: &[u8], new: &[u8]| {
        String::from_utf8(text.to_vec())
            .unwrap()
            .replace(&sha256_digest(old), &sha256_digest(new))
            .replace(
                &format!("\"size\":{}", old.len()),
                &format!("\"size\":{}", new.len()),
            )
    };
    let manifest = rename(&files[1].1, &files[0].1, one.as_bytes());
    let index = rename(&files[4].1, &files[1].1, manifest.as_bytes());
    let mut files = files.clone();
    files[0] = (blob_path(one.as_bytes()), one.into_bytes());
    files[1] = (blob_path(manifest.as_bytes()), manifest.into_bytes());
    files[4].1 = index.into_bytes();
    let (err, _) = refused(&tar_of(&files));
    assert!(
        matches!(
            err,
            ArchiveError::LayerCount {
                diff_ids: 1,
                layers: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_number_of_entries_is_bounded() {
    let files: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("f{i}"), vec![b'x'])).collect();
    let bytes = tar_of(&files);
    let limits = Limits {
        entries: 4,
        ..Limits::default()
    };
    let err = read(
        &bytes[..],
        bytes.len() as u64,
        &limits,
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ArchiveError::TooManyEntries(4)), "{err}");
}

#[test]
fn entry_types_an_image_never_holds_are_refused() {
    let mut tar = Tar::default();
    tar.raw(b"dev/null", tar::EntryType::Char, 0, b"", b"");
    let (err, _) = refused(&tar.finish());
    assert!(matches!(err, ArchiveError::EntryType { .. }), "{err}");
    assert!(err.to_string().contains("dev/null"), "{err}");
}

#[test]
fn blob_names_must_be_sha256_digests() {
    for name in ["blobs/sha512/abcd", "blobs/sha256/ABCD", "blobs/sha256/xyz"] {
        let (err, sink) = refused(&tar_of(&[(name.into(), b"x".to_vec())]));
        assert!(matches!(err, ArchiveError::BlobName(_)), "{name}: {err}");
        assert!(sink.begun.is_empty());
    }
}

#[test]
fn an_importer_that_stops_stops_the_reader() {
    let bytes = tar_of(&oci_files("localhost/x:1", &[b"l"]));
    let mut sink = Recorder {
        stop_after: Some(1),
        ..Recorder::default()
    };
    let err = read_all(&bytes, &mut sink).unwrap_err();
    assert!(matches!(err, ArchiveError::Stopped), "{err}");
    assert_eq!(sink.begun.len(), 1);
}

#[test]
fn references_are_normalized_like_the_kubelet_does() {
    let digest = format!("sha256:{}", "a".repeat(64));
    for (name, expected) in [
        ("busybox", "docker.io/library/busybox:latest".to_owned()),
        ("busybox:1.37", "docker.io/library/busybox:1.37".to_owned()),
        ("team/app:v1", "docker.io/team/app:v1".to_owned()),
        (
            "localhost/cairn/toolbox:1",
            "localhost/cairn/toolbox:1".to_owned(),
        ),
        (
            "registry.example:5000/a/b",
            "registry.example:5000/a/b:latest".to_owned(),
        ),
        (
            &format!("quay.io/x/y@{digest}"),
            format!("quay.io/x/y@{digest}"),
        ),
    ] {
        assert_eq!(layout::normalize(name).unwrap(), expected, "{name}");
    }
    for bad in [
        "",
        "Busybox",
        "a//b",
        "a:b:c",
        "x@sha256:12",
        "-a",
        "a:-tag",
        "a b",
    ] {
        assert!(layout::normalize(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn two_images_of_one_name_are_refused() {
    let mut files = oci_files("localhost/x:1", &[b"l"]);
    let index: serde_json::Value = serde_json::from_slice(&files[3].1).unwrap();
    let entry = index["manifests"][0].clone();
    let doubled = serde_json::json!({"manifests": [entry.clone(), entry]}).to_string();
    files[3].1 = doubled.into_bytes();
    let (err, _) = refused(&tar_of(&files));
    assert!(matches!(err, ArchiveError::DuplicateReference(_)), "{err}");
}

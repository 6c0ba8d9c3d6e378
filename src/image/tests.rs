//! Unit tests of the image model: round trips, canonical JSON, chain ids.

use super::*;

const DOCKER_CONFIG: &str = include_str!("../../testdata/image/docker-config.json");

/// Drops `null` members: `Option` fields do not distinguish absent from null.
fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

#[test]
fn docker_config_round_trips_every_field() {
    let parsed: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
    let config = parsed.config.as_ref().unwrap();
    assert_eq!(config.user.as_deref(), Some("app"));
    assert_eq!(
        config.on_build.as_deref(),
        Some(&["RUN echo child".to_string()][..])
    );
    assert_eq!(config.shell.as_ref().unwrap()[0], "/bin/bash");
    assert_eq!(config.args_escaped, Some(true));
    assert_eq!(config.healthcheck.as_ref().unwrap().retries, Some(3));
    assert!(config.extra.contains_key("Hostname"));
    assert!(parsed.extra.contains_key("moby.buildkit.buildinfo.v1"));
    assert_eq!(parsed.variant.as_deref(), Some("v8"));
    assert!(parsed.history[1].empty_layer);
    assert_eq!(parsed.rootfs.diff_ids.len(), 2);

    let original: serde_json::Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
    let again: serde_json::Value =
        serde_json::from_slice(&canonical_json(&parsed).unwrap()).unwrap();
    assert_eq!(without_nulls(original), again);
}

#[test]
fn canonical_json_sorts_keys_at_every_level_and_has_no_whitespace() {
    let v = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 3} ]}, "a": "s p"});
    let out = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
    assert_eq!(out, r#"{"a":"s p","b":{"a":[{"x":3,"y":2}],"z":1}}"#);
}

#[test]
fn canonical_config_is_stable_across_runs() {
    let mut c = ImageConfig::new("linux", "amd64");
    let mut cfg = Config::default();
    for i in 0..50 {
        cfg.labels
            .get_or_insert_with(Default::default)
            .insert(format!("label{i}"), i.to_string());
    }
    c.config = Some(cfg);
    let first = canonical_json(&c).unwrap();
    for _ in 0..5 {
        assert_eq!(canonical_json(&c.clone()).unwrap(), first);
    }
}

#[test]
fn minimal_config_serializes_like_docker_omits_empties() {
    let mut c = ImageConfig::new("linux", "arm64");
    c.push_layer(
        Sha256Digest::of(b"layer"),
        History {
            created_by: Some("COPY . /".into()),
            ..History::default()
        },
    );
    c.push_empty_layer(History {
        created_by: Some("ENV A=b".into()),
        ..History::default()
    });
    let out = String::from_utf8(canonical_json(&c).unwrap()).unwrap();
    assert_eq!(
        out,
        format!(
            "{{\"architecture\":\"arm64\",\"history\":[{{\"created_by\":\"COPY . /\"}},\
             {{\"created_by\":\"ENV A=b\",\"empty_layer\":true}}],\"os\":\"linux\",\
             \"rootfs\":{{\"diff_ids\":[\"{}\"],\"type\":\"layers\"}}}}",
            Sha256Digest::of(b"layer")
        )
    );
}

#[test]
fn chain_ids_follow_the_oci_definition() {
    let a = Sha256Digest::of(b"a");
    let b = Sha256Digest::of(b"b");
    assert_eq!(ChainId::of(&[]), None);
    assert_eq!(ChainId::of(&[a]), Some(ChainId(a)));
    // printf 'sha256:<a> sha256:<b>' | sha256sum
    let expected: Sha256Digest =
        "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"
            .parse()
            .unwrap();
    assert_eq!(ChainId::of(&[a, b]), Some(ChainId(expected)));
    assert_eq!(ChainId::all(&[a, b]), vec![ChainId(a), ChainId(expected)]);
}

#[test]
fn manifests_in_both_formats() {
    let config = Descriptor::new(media_types::OCI_CONFIG, Sha256Digest::of(b"c"), 1);
    let layer = Descriptor::new(media_types::OCI_LAYER_GZIP, Sha256Digest::of(b"l"), 2);
    let m = oci_manifest(
        config.clone(),
        vec![layer.clone()],
        Some("2024-01-01T00:00:00Z"),
    );
    let v: serde_json::Value = serde_json::from_slice(&canonical_json(&m).unwrap()).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], media_types::OCI_MANIFEST);
    assert_eq!(v["annotations"][ANNOTATION_CREATED], "2024-01-01T00:00:00Z");
    let d = docker_manifest(&config, &[layer]).unwrap();
    assert_eq!(d.config.media_type, media_types::DOCKER_CONFIG);
    assert_eq!(d.layers[0].media_type, media_types::DOCKER_LAYER_GZIP);
    assert_eq!(d.media_type.as_deref(), Some(media_types::DOCKER_MANIFEST));
    let zstd = Descriptor::new(media_types::OCI_LAYER_ZSTD, Sha256Digest::of(b"z"), 3);
    assert!(matches!(
        docker_manifest(&config, &[zstd]),
        Err(ImageError::NoDockerMediaType { .. })
    ));
}

//! Pack into a layout directory and fetch back: every refusal, without a registry.

use std::path::Path;

use crate::{
    fetch, pack_layout, Built, FetchError, Origin, Platform, PluginFile, Signer, TrustedKey, Want,
};

const DESCRIPTION: &[u8] = br#"{"name":"demo","version":"1.0.0","components":[]}"#;

fn file(platform: &str, library: &[u8]) -> PluginFile {
    PluginFile {
        file_name: "libdemo.so".into(),
        library: bytes::Bytes::copy_from_slice(library),
        platform: platform.parse().unwrap(),
    }
}

fn packed(dir: &Path, signers: &[Signer]) -> Built {
    let files = [
        file("linux/amd64", b"amd64 library"),
        file("linux/arm64", b"arm64 library"),
    ];
    let built = Built::new(DESCRIPTION, &files, signers).unwrap();
    pack_layout(dir, "v1", &built).unwrap();
    built
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(
    dir: &Path,
    platform: &str,
    keys: &[TrustedKey],
    require: bool,
    store: &Path,
) -> Result<crate::Fetched, FetchError> {
    let origin = Origin::Layout {
        dir: dir.to_owned(),
        tag: "v1".into(),
    };
    let platform: Platform = platform.parse().unwrap();
    let want = Want {
        platform: &platform,
        keys,
        require_signature: require,
        store,
    };
    runtime().block_on(fetch(&origin, want))
}

#[test]
fn a_packed_artifact_fetches_each_platforms_library_with_its_description() {
    let (layout, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signer = Signer::generate().unwrap();
    let built = packed(layout.path(), std::slice::from_ref(&signer));
    let keys = [TrustedKey::new("release", &signer.public_base64()).unwrap()];
    let fetched = get(layout.path(), "linux/arm64", &keys, true, store.path()).unwrap();
    assert_eq!(std::fs::read(&fetched.library).unwrap(), b"arm64 library");
    assert_eq!(fetched.description.as_ref(), DESCRIPTION);
    assert_eq!(fetched.file_name, "libdemo.so");
    assert_eq!(fetched.digest, built.index.digest);
    assert_eq!(fetched.signed_by.as_deref(), Some("release"));
    assert_eq!(
        fetched.library_digest,
        crate::sha256_digest(b"arm64 library")
    );
}

#[test]
fn a_missing_platform_is_refused_naming_those_present() {
    let (layout, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    packed(layout.path(), &[]);
    let error = get(layout.path(), "windows/amd64", &[], false, store.path()).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, FetchError::NoPlatform { .. }), "{text}");
    assert!(
        text.contains("windows/amd64") && text.contains("linux/amd64, linux/arm64"),
        "{text}"
    );
}

#[test]
fn unsigned_unknown_key_and_tampered_artifacts_are_refused_naming_the_key_or_digest() {
    let (layout, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (signer, stranger) = (Signer::generate().unwrap(), Signer::generate().unwrap());
    let keys = [TrustedKey::new("release", &signer.public_base64()).unwrap()];
    packed(layout.path(), &[]);
    let unsigned = get(layout.path(), "linux/amd64", &keys, true, store.path()).unwrap_err();
    assert!(
        unsigned.to_string().contains("no signature")
            && unsigned.to_string().contains(&keys[0].label()),
        "{unsigned}"
    );
    assert!(
        get(layout.path(), "linux/amd64", &keys, false, store.path()).is_ok(),
        "signatures optional unless required"
    );

    packed(layout.path(), std::slice::from_ref(&stranger));
    let unknown = get(layout.path(), "linux/amd64", &keys, true, store.path()).unwrap_err();
    assert!(
        unknown.to_string().contains(&stranger.key_id()),
        "{unknown}"
    );

    let built = packed(layout.path(), std::slice::from_ref(&signer));
    let library = &built.blobs[1];
    std::fs::write(
        crate::layout::blob_path(layout.path(), &library.digest),
        b"evil library!",
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let tampered = get(layout.path(), "linux/amd64", &keys, true, fresh.path()).unwrap_err();
    assert!(
        matches!(&tampered, FetchError::Tampered { digest, .. } if *digest == library.digest),
        "{tampered}"
    );
    assert!(
        std::fs::read_dir(fresh.path().join("blobs/sha256"))
            .unwrap()
            .next()
            .is_none(),
        "nothing tampered is kept"
    );
}

#[test]
fn a_manifest_whose_signature_does_not_match_is_refused_even_when_signatures_are_optional() {
    let (layout, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signer = Signer::generate().unwrap();
    let keys = [TrustedKey::new("release", &signer.public_base64()).unwrap()];
    let built = packed(layout.path(), std::slice::from_ref(&signer));
    // Another library under the same signatures: the index entry's digest changes, the
    // signature no longer matches it.
    let index = String::from_utf8(built.index.bytes.to_vec()).unwrap();
    let other = Built::new(DESCRIPTION, &[file("linux/amd64", b"other library")], &[]).unwrap();
    let forged = index.replace(&built.manifests[0].digest, &other.manifests[0].digest);
    let forged_built = Built {
        index: crate::build::Blob::forged(crate::INDEX_MEDIA_TYPE, forged),
        ..other
    };
    pack_layout(layout.path(), "v1", &forged_built).unwrap();
    let error = get(layout.path(), "linux/amd64", &keys, false, store.path()).unwrap_err();
    assert!(matches!(error, FetchError::BadSignature { .. }), "{error}");
    assert!(error.to_string().contains(&keys[0].label()), "{error}");
}

#[test]
fn a_library_said_to_be_larger_than_a_gibibyte_is_refused_before_a_byte_is_fetched() {
    let (layout, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let built = Built::new(DESCRIPTION, &[file("linux/amd64", b"amd64 library")], &[]).unwrap();
    let manifest = String::from_utf8(built.manifests[0].bytes.to_vec()).unwrap();
    let huge = manifest.replace(r#""size":13"#, r#""size":1099511627776"#);
    assert_ne!(huge, manifest, "the layer's size is in the manifest");
    let huge = crate::build::Blob::forged(crate::MANIFEST_MEDIA_TYPE, huge);
    let index = String::from_utf8(built.index.bytes.to_vec()).unwrap();
    let index = index.replace(&built.manifests[0].digest, &huge.digest);
    let forged = Built {
        index: crate::build::Blob::forged(crate::INDEX_MEDIA_TYPE, index),
        manifests: vec![huge],
        blobs: built.blobs,
    };
    pack_layout(layout.path(), "v1", &forged).unwrap();
    let error = get(layout.path(), "linux/amd64", &[], false, store.path()).unwrap_err();
    assert!(error.to_string().contains("1099511627776 bytes"), "{error}");
    assert!(!store.path().join("blobs").exists(), "nothing fetched");
}

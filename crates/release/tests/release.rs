//! Releases against a real file bucket: create (build, upload, SBOM, provenance,
//! sign), list, verify; and refusal of tampered artifacts, unsigned manifests and
//! manifests signed with another key.

use std::path::Path;

use skiff_release::{ReleaseError, ReleaseInput, Signer, Verifier};
use skiff_state::{Ledger, keys};

fn setup() -> (tempfile::TempDir, Ledger, Signer, Verifier) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&format!("file://{}", dir.path().join("state").display()), &Default::default()).unwrap();
    let keys = skiff_release::generate(b"").unwrap();
    let signer = Signer::from_encrypted_pem(keys.private_pem.as_bytes(), b"").unwrap();
    let verifier = Verifier::from_pem(keys.public_pem.as_bytes()).unwrap();
    (dir, ledger, signer, verifier)
}

fn spec(dir: &Path) -> (std::path::PathBuf, skiff_ir::ServiceIr) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    let yaml = "service: demo\nartifact:\n  build: printf 'echo hi' > demo.sh\n  path: demo.sh\nrun: {command: [demo]}\nport: 8080\nsecrets: {DB: secret://demo-db/url}\n";
    std::fs::write(app.join("skiff.yaml"), yaml).unwrap();
    let s = skiff_spec::parse("skiff.yaml", yaml.as_bytes()).unwrap();
    (app.join("skiff.yaml"), skiff_ir::compile(&s))
}

#[tokio::test]
async fn create_list_verify_and_refuse_tampering() {
    let (dir, ledger, signer, verifier) = setup();
    let (path, ir) = spec(dir.path());
    let input = ReleaseInput { spec_path: &path, spec_shown: "app/skiff.yaml", ir: &ir, actor: "tester", build: true };
    let first = skiff_release::create(&ledger, &signer, &input).await.unwrap();
    assert!(first.built);
    assert!(first.manifest.release.ends_with(".1"));
    let second = skiff_release::create(&ledger, &signer, &input).await.unwrap();
    assert!(second.manifest.release.ends_with(".2"), "release numbers count up per day");
    assert_eq!(first.manifest.artifact.digest, second.manifest.artifact.digest, "same bytes, same blob");
    assert_eq!(first.manifest.secrets["DB"], "secret://demo-db/url", "references, never values");
    let listed = skiff_release::list(&ledger, "demo").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|l| l.signed));

    let ok = skiff_release::verify(&ledger, &verifier, "demo", &first.manifest.release).await.unwrap();
    assert_eq!(ok.artifact, b"echo hi");
    // SBOM and provenance are real documents.
    let sbom: serde_json::Value =
        serde_json::from_slice(&ledger.get_blob(skiff_release::hex_of(&ok.manifest.sbom)).await.unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let prov: serde_json::Value =
        serde_json::from_slice(&ledger.get_blob(skiff_release::hex_of(&ok.manifest.provenance)).await.unwrap())
            .unwrap();
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(prov["subject"][0]["digest"]["sha256"], skiff_release::hex_of(&ok.manifest.artifact.digest));
    assert!(ledger.verify().await.unwrap().is_clean(), "every reference resolves");

    // A manifest signed with another key is refused.
    let other = Verifier::from_pem(skiff_release::generate(b"").unwrap().public_pem.as_bytes()).unwrap();
    let e = skiff_release::verify(&ledger, &other, "demo", &first.manifest.release).await.unwrap_err();
    assert!(matches!(e, ReleaseError::SignatureInvalid { .. }), "{e}");
    assert_eq!(e.code(), skiff_sdk::Code::SignatureInvalid);

    // An unsigned manifest is refused.
    let sig_key = keys::release_signature("demo", &second.manifest.release);
    let sig = ledger.store().get(&sig_key).await.unwrap().unwrap();
    ledger.store().delete_if_match(&sig_key, &sig.version).await.unwrap();
    let e = skiff_release::verify(&ledger, &verifier, "demo", &second.manifest.release).await.unwrap_err();
    assert!(e.to_string().contains("not signed"), "{e}");

    // A tampered artifact blob is refused with DIGEST_MISMATCH.
    let blob_key = keys::blob(skiff_release::hex_of(&first.manifest.artifact.digest));
    let b = ledger.store().get(&blob_key).await.unwrap().unwrap();
    ledger.store().put_if_match(&blob_key, b"echo pwned".to_vec(), &b.version).await.unwrap();
    let e = skiff_release::verify(&ledger, &verifier, "demo", &first.manifest.release).await.unwrap_err();
    assert!(matches!(e, ReleaseError::DigestMismatch { .. }), "{e}");
    assert_eq!(e.code(), skiff_sdk::Code::DigestMismatch);

    // A changed manifest no longer matches its signature.
    let mkey = keys::release("demo", &first.manifest.release);
    let m = ledger.store().get(&mkey).await.unwrap().unwrap();
    let changed = String::from_utf8(m.bytes.clone()).unwrap().replace("tester", "mallory");
    ledger.store().put_if_match(&mkey, changed.into_bytes(), &m.version).await.unwrap();
    let e = skiff_release::verify(&ledger, &verifier, "demo", &first.manifest.release).await.unwrap_err();
    assert!(matches!(e, ReleaseError::SignatureInvalid { .. }), "{e}");
}

#[tokio::test]
async fn a_failing_build_says_what_failed() {
    let (dir, ledger, signer, _) = setup();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let yaml =
        "service: demo\nartifact: {build: 'echo compiling; exit 3', path: demo}\nrun: {command: [demo]}\nport: 8080\n";
    let ir = skiff_ir::compile(&skiff_spec::parse("s", yaml.as_bytes()).unwrap());
    let path = app.join("skiff.yaml");
    let input = ReleaseInput { spec_path: &path, spec_shown: "skiff.yaml", ir: &ir, actor: "t", build: true };
    let e = skiff_release::create(&ledger, &signer, &input).await.unwrap_err();
    assert!(matches!(&e, ReleaseError::Build { output, .. } if output.contains("compiling")), "{e}");
    let input = ReleaseInput { build: false, ..input };
    let e = skiff_release::create(&ledger, &signer, &input).await.unwrap_err();
    assert!(matches!(e, ReleaseError::Artifact { .. }), "{e}");
}

#[tokio::test]
async fn the_sbom_of_a_rust_artifact_lists_its_crates() {
    let (_dir, ledger, signer, verifier) = setup();
    // The hello example: a Rust binary in this workspace.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("hello");
    std::fs::write(&bin, b"binary bytes").unwrap();
    let yaml =
        format!("service: hello\nartifact: {{path: {}}}\nrun: {{command: [hello]}}\nport: 8080\n", bin.display());
    let ir = skiff_ir::compile(&skiff_spec::parse("s", yaml.as_bytes()).unwrap());
    let spec_path = root.join("skiff.yaml");
    let input = ReleaseInput {
        spec_path: &spec_path,
        spec_shown: "examples/hello/skiff.yaml",
        ir: &ir,
        actor: "t",
        build: false,
    };
    let created = skiff_release::create(&ledger, &signer, &input).await.unwrap();
    let v = skiff_release::verify(&ledger, &verifier, "hello", &created.manifest.release).await.unwrap();
    let sbom: serde_json::Value =
        serde_json::from_slice(&ledger.get_blob(skiff_release::hex_of(&v.manifest.sbom)).await.unwrap()).unwrap();
    assert_eq!(
        sbom["metadata"]["component"]["purl"],
        format!("pkg:cargo/skiff-example-hello@{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(sbom["components"].as_array().unwrap().is_empty(), "hello has no dependencies");
}

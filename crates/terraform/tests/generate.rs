//! `generate` for every example: the files match their snapshots, the real `terraform
//! fmt -check` accepts them unchanged, and every declared resource that takes tags
//! carries its Skiff logical id.

use std::path::Path;

fn examples() -> Vec<(String, skiff_ir::ServiceIr)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let file = dir.join("skiff.yaml");
        let Ok(bytes) = std::fs::read(&file) else { continue };
        let spec = skiff_spec::parse(&file.display().to_string(), &bytes).unwrap();
        out.push((dir.file_name().unwrap().to_string_lossy().into_owned(), skiff_ir::compile(&spec)));
    }
    out
}

#[test]
fn every_example_generates_formatted_deterministic_terraform() {
    let examples = examples();
    assert!(examples.len() >= 5, "the examples are read");
    for (name, ir) in examples {
        let generated = skiff_terraform::generate(&ir);
        assert_eq!(generated, skiff_terraform::generate(&ir), "{name}: deterministic");
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in &generated.files {
            std::fs::write(dir.path().join(file), text).unwrap();
            insta::assert_snapshot!(format!("{name}-{file}"), text);
        }
        let fmt = std::process::Command::new("terraform")
            .args(["fmt", "-check", "-diff", "-no-color"])
            .current_dir(dir.path())
            .output()
            .expect("the terraform binary is on PATH");
        assert!(
            fmt.status.success(),
            "{name}: terraform fmt would change the files:\n{}{}",
            String::from_utf8_lossy(&fmt.stdout),
            String::from_utf8_lossy(&fmt.stderr)
        );
        let main = &generated.files["main.tf"];
        for d in &generated.resources {
            let untaggable = d.address.starts_with("aws_iam_role_policy.");
            assert!(
                untaggable || main.contains(&format!("\"skiff:logical-id\" = \"{}\"", d.logical_id)),
                "{name}: {} is tagged with {}",
                d.address,
                d.logical_id
            );
        }
    }
}

//! `skiff import kube` end to end: a directory of manifests becomes a spec that
//! `skiff validate` accepts, the human loss report and the JSON answer (every path),
//! refusal to overwrite without `--force`, and several workloads into a directory.

mod common;

use common::{Sandbox, human, json, repo};

fn fixture(sandbox: &Sandbox, name: &str) -> std::path::PathBuf {
    let dir = sandbox.path().join("k8s").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(repo().join("crates/kube/tests/fixtures").join(name)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
    }
    dir
}

#[test]
fn a_directory_of_manifests_becomes_a_spec_that_validates() {
    let sandbox = Sandbox::new();
    fixture(&sandbox, "web-app");
    let run = sandbox.run(&["import", "kube", "k8s/web-app", "--out", "skiff.yaml"]);
    insta::assert_snapshot!("import_web_app_human", human(&run));
    assert_eq!(run.code, 0);
    let spec = std::fs::read_to_string(sandbox.path().join("skiff.yaml")).unwrap();
    assert!(spec.contains("service: web"), "{spec}");

    let valid = sandbox.run(&["validate", "-f", "skiff.yaml"]);
    assert_eq!(valid.code, 0, "{}", human(&valid));

    // Importing again would overwrite an edited spec: refused, file untouched.
    std::fs::write(sandbox.path().join("skiff.yaml"), format!("{spec}# edited\n")).unwrap();
    let again = sandbox.run(&["import", "kube", "k8s/web-app", "--out", "skiff.yaml", "--format", "json"]);
    let answer = json(&again);
    assert_eq!(again.code, 5, "{answer:#}");
    assert_eq!(answer["code"], "ALREADY_EXISTS");
    assert!(std::fs::read_to_string(sandbox.path().join("skiff.yaml")).unwrap().ends_with("# edited\n"));

    let forced = sandbox.run(&["import", "kube", "k8s/web-app", "--out", "skiff.yaml", "--force", "--format", "json"]);
    let answer = json(&forced);
    assert_eq!(forced.code, 0, "{answer:#}");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("skiff.yaml")).unwrap(), spec);
    // Every path is listed and classified; the counts add up.
    let report = answer["data"]["report"].as_array().unwrap();
    let counts = &answer["data"]["counts"];
    let total = ["mapped", "warned", "unsupported"].iter().map(|c| counts[c].as_u64().unwrap()).sum::<u64>();
    assert_eq!(report.len() as u64, total);
    assert!(
        report.iter().any(|e| e["path"].as_str().unwrap().starts_with("spec.template.spec.containers[1].")
            && e["class"] == "unsupported")
    );
    let secrets: Vec<&str> = answer["recommended_actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["command"].as_str())
        .filter(|c| c.contains("| skiff secrets set secret://"))
        .collect();
    assert!(!secrets.is_empty(), "{answer:#}");
}

#[test]
fn several_workloads_go_into_a_directory_and_refusals_do_not_stop_the_rest() {
    let sandbox = Sandbox::new();
    fixture(&sandbox, "refused");
    fixture(&sandbox, "helm");
    let run = sandbox.run(&["import", "kube", "k8s", "--out", "specs/", "--format", "json"]);
    let answer = json(&run);
    assert_eq!(run.code, 0, "{answer:#}");
    let specs = answer["data"]["specs"].as_array().unwrap();
    assert!(!specs.is_empty());
    for s in specs {
        let file = s["file"].as_str().unwrap();
        assert!(file.starts_with("specs/"), "{file}");
        let valid = sandbox.run(&["validate", "-f", file]);
        assert_eq!(valid.code, 0, "{}", human(&valid));
    }
    let refused = answer["data"]["refused"].as_array().unwrap();
    let kinds: Vec<&str> = refused.iter().map(|r| r["object"].as_str().unwrap()).collect();
    assert!(kinds.iter().any(|k| k.starts_with("StatefulSet/")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.starts_with("DaemonSet/")), "{kinds:?}");
}

#[test]
fn hostile_input_is_refused_with_where_and_nothing_written() {
    let sandbox = Sandbox::new();
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    std::fs::write(sandbox.path().join("bomb.yaml"), bomb).unwrap();
    let run = sandbox.run(&["import", "kube", "bomb.yaml", "--format", "json"]);
    let answer = json(&run);
    assert_ne!(run.code, 0, "{answer:#}");
    assert!(answer["summary"].as_str().unwrap().contains("bomb.yaml"), "{answer:#}");
    assert!(!sandbox.path().join("skiff.yaml").exists());
}

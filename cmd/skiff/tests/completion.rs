//! Shell completion: `skiff completion SHELL` writes a script for every shell, and bash
//! sourcing it completes `skiff saga show <TAB>` with the operation ids in the bucket,
//! asked of `skiff` itself at the TAB.

mod common;

use common::*;

#[test]
fn every_shell_gets_a_script_that_asks_skiff() {
    let s = Sandbox::new();
    let bin = assert_cmd::cargo::cargo_bin("skiff").display().to_string();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = s.run(&["completion", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains("COMPLETE") && r.stdout.contains("skiff"), "{shell}: {}", r.stdout);
        if shell == "bash" {
            insta::assert_snapshot!("completion-bash", r.stdout.replace(&bin, "[SKIFF]"));
        }
    }
    let r = s.run(&["completion", "tcsh", "--format", "json"]);
    assert_eq!((r.code, json(&r)["code"].as_str()), (2, Some("USAGE")), "{}", r.stdout);
}

#[test]
fn bash_completes_saga_show_with_the_operation_ids_in_the_bucket() {
    let s = Sandbox::new();
    let r = s.run(&["saga", "start", "selftest", "--yes", "--format", "json"]);
    assert_eq!(r.code, 9, "APPROVAL_REQUIRED: {}", r.stdout);
    let op = json(&r)["operation_id"].as_str().unwrap().to_owned();
    let bin = assert_cmd::cargo::cargo_bin("skiff").display().to_string();
    let script = format!(
        "source <('{bin}' completion bash)\n\
         COMP_WORDS=(skiff saga show ''); COMP_CWORD=3; COMP_LINE='skiff saga show '; COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9\n\
         _clap_complete_skiff skiff '' show\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(s.path())
        .env("HOME", s.path())
        .env("SKIFF_CONFIG", s.path().join("config.yaml"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed}\n{}", String::from_utf8_lossy(&out.stderr));
    // The one operation id, then the flags that may come here too.
    let values: Vec<&str> = listed.lines().filter(|l| !l.starts_with('-')).collect();
    assert_eq!(values, [op.as_str()], "the one operation id: {listed}");
}

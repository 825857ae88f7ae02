//! Man pages of the command line (clap_mangen): `skiff.1` and one `skiff-COMMAND.1` per
//! command, written to `docs/man` by `cargo xtask codegen` (through the hidden
//! `skiff __man DIR`) and checked by the CLI's tests against what is committed.

use clap::CommandFactory as _;

/// The hidden argument that writes the pages into a directory.
pub const MAN_ARG: &str = "__man";

/// Every page: its file name and its roff text.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cli = crate::cli::Cli::command();
    cli.build();
    let mut out = vec![("skiff.1".to_owned(), render(&cli))];
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("skiff-{}", sub.get_name());
        let page = sub.clone().name(name.clone()).bin_name(format!("skiff {}", sub.get_name()));
        out.push((format!("{name}.1"), render(&page)));
    }
    out
}

fn render(cmd: &clap::Command) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf).expect("rendering into memory");
    buf
}

/// Writes every page into `dir` (made if missing), removing pages of commands gone.
pub fn write(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let pages = pages();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") && !pages.iter().any(|(p, _)| *p == name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(pages.len())
}

//! The `skiff` binary: everything lives in the `skiff_cli` library.

fn main() -> std::process::ExitCode {
    skiff_cli::main()
}

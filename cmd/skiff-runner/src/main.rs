//! `skiff-runner`: everything lives in the `skiff_runner` library.

fn main() -> std::process::ExitCode {
    skiff_runner::main()
}

//! What the CLI test binaries share: running the `tracebench` binary and scratch directories.
// Each test binary uses a subset; what one of them leaves unused is not dead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `tracebench args` from the repository's root.
pub(crate) fn tracebench(args: &[&str]) -> Output {
    tracebench_with(args, &[])
}

/// `tracebench args` from the repository's root, with `env` added to its environment.
pub(crate) fn tracebench_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracebench"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("tracebench runs")
}

/// A fresh directory for test `name` under the system's temporary directory.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracebench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `tracebench report JSON --html HTML`, asserted to exit 0; returns the page.
pub(crate) fn report_html(json: &Path, html: &Path) -> String {
    let out = tracebench(&[
        "report",
        json.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(html).expect("the page")
}

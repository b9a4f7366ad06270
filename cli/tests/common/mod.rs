//! Helpers the end-to-end test binaries share: the `meshbench` binary, scratch directories and
//! the result files' typed readers.
#![allow(dead_code)] // each binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meshbench_report::Summary;

pub(crate) fn meshbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("meshbench runs")
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshbench-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(crate) fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

pub(crate) fn run_ok(args: &[&str]) -> String {
    let out = meshbench(args);
    assert!(
        out.status.success(),
        "meshbench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A result directory's summary.json, through the one typed schema.
pub(crate) fn summary(dir: &Path) -> Summary {
    Summary::read(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A metric's replication mean per strategy, from summary.json.
pub(crate) fn metric(dir: &Path, name: &str) -> std::collections::BTreeMap<String, f64> {
    summary(dir)
        .strategies
        .iter()
        .map(|s| (s.strategy.clone(), s.mean(name)))
        .collect()
}

//! Structured fuzzing of every result-file reader (`report`, `compare`, `check`, `merge`),
//! seeded with shipped result directories and a sharded run: each case corrupts one or two
//! files (emptied, truncated, a number replaced by an edge value, columns dropped, bytes
//! flipped, doubled) and runs every reader on the copy. Each must exit 0, 1 or 2 (never a
//! panic or a signal), on 2 with an error naming a file, and within a minute (a hang guard,
//! not a timing test). `PROPTEST_CASES=200` runs a longer campaign.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// The shard pair every merge case starts from, made once.
fn shards() -> &'static (PathBuf, PathBuf) {
    static SHARDS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    SHARDS.get_or_init(|| {
        let base = tmp("fuzz-shards");
        let dirs = (base.join("s0"), base.join("s1"));
        for (i, d) in [&dirs.0, &dirs.1].into_iter().enumerate() {
            run_ok(&[
                "run",
                "scenarios/one-slow-backend.yaml",
                "--quiet",
                "--shard",
                &format!("{i}/2"),
                "--out",
                d.to_str().unwrap(),
            ]);
        }
        dirs
    })
}

const SEEDS: &[&str] = &[
    "reports/one-slow-backend",
    "reports/hot-keys",
    "reports/load-sweep",
    "reports/zone-outage-failover",
];

const EDGE: &[&str] = &[
    "1e308",
    "-1",
    "NaN",
    "inf",
    "18446744073709551615",
    "99999999999999999999999",
    "0",
    "",
    "\"x\"",
    "null",
];

#[derive(Clone, Debug)]
enum Corrupt {
    Empty,
    Truncate(usize),
    Number(usize, usize),
    DropColumns(usize),
    Flip(usize, u8),
    Double,
}

fn corrupt() -> impl Strategy<Value = Corrupt> {
    prop_oneof![
        1 => Just(Corrupt::Empty),
        1 => any::<usize>().prop_map(Corrupt::Truncate),
        3 => (any::<usize>(), 0..EDGE.len()).prop_map(|(n, v)| Corrupt::Number(n, v)),
        1 => any::<usize>().prop_map(Corrupt::DropColumns),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| Corrupt::Flip(n, b)),
        1 => Just(Corrupt::Double),
    ]
}

fn apply(bytes: &[u8], c: &Corrupt) -> Vec<u8> {
    match *c {
        Corrupt::Empty => Vec::new(),
        Corrupt::Truncate(n) => bytes[..n % (bytes.len() + 1)].to_vec(),
        Corrupt::Double => [bytes, bytes].concat(),
        Corrupt::Flip(n, b) => {
            let mut v = bytes.to_vec();
            if !v.is_empty() {
                let i = n % v.len();
                v[i] ^= b | 1;
            }
            v
        }
        Corrupt::Number(n, e) => {
            // The n-th run of digits, replaced.
            let text = String::from_utf8_lossy(bytes);
            let runs: Vec<(usize, usize)> = {
                let b = text.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    if b[i].is_ascii_digit() {
                        let s = i;
                        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                            i += 1;
                        }
                        out.push((s, i));
                    } else {
                        i += 1;
                    }
                }
                out
            };
            if runs.is_empty() {
                return bytes.to_vec();
            }
            let (s, t) = runs[n % runs.len()];
            format!("{}{}{}", &text[..s], EDGE[e], &text[t..]).into_bytes()
        }
        Corrupt::DropColumns(n) => {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return Vec::new();
            }
            let i = n % lines.len();
            let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            let cols: Vec<&str> = lines[i].split(',').collect();
            out[i] = cols[..(n / lines.len()) % cols.len()].join(",");
            (out.join("\n") + "\n").into_bytes()
        }
    }
}

/// Runs meshbench with a one-minute guard; (exit code, stderr).
fn guarded(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(args)
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read as _;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return (status.code(), err);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("meshbench {args:?} did not finish in a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn corrupted_result_directories_give_clean_errors_from_every_reader(
        seed in 0..SEEDS.len() + 1,
        files in proptest::collection::vec((any::<usize>(), corrupt()), 1..3),
    ) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let case = tmp(&format!("fuzz-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let (s0, s1) = shards();
        let from = if seed == SEEDS.len() { s0.clone() } else { root().join(SEEDS[seed]) };
        let good = root().join(SEEDS[0]);
        let dir = case.join("d");
        copy_dir(&from, &dir);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| ["csv", "json", "hgrm", "yaml"].contains(&e.to_str().unwrap()))
            })
            .collect();
        names.sort();
        for (n, c) in &files {
            let f = &names[n % names.len()];
            let bytes = std::fs::read(f).unwrap();
            std::fs::write(f, apply(&bytes, c)).unwrap();
        }
        let d = dir.to_str().unwrap();
        let g = good.to_str().unwrap();
        let out = |s: &str| case.join(s).to_str().unwrap().to_owned();
        let mut runs: Vec<Vec<String>> = vec![
            vec!["report".into(), d.into()],
            vec!["compare".into(), g.into(), d.into(), "--out".into(), out("c1")],
            vec!["compare".into(), d.into(), g.into(), "--out".into(), out("c2")],
            vec!["check".into(), d.into(), "--baseline".into(), g.into()],
            vec!["check".into(), g.into(), "--baseline".into(), d.into()],
        ];
        if seed == SEEDS.len() {
            runs.push(vec!["merge".into(), d.into(), s1.to_str().unwrap().into(), "--out".into(), out("m")]);
        }
        for args in &runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, err) = guarded(&args);
            prop_assert!(
                matches!(code, Some(0..=2)) && !err.contains("panicked"),
                "meshbench {args:?} after {files:?}: exit {code:?}\n{err}"
            );
            if code == Some(2) {
                prop_assert!(err.starts_with("error: "), "{args:?}: {err}");
            }
        }
        let _ = std::fs::remove_dir_all(&case);
    }
}

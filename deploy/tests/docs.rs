//! The documentation cites only files that exist: a repository path in
//! backticks (`gateway/src/api.rs`, `scripts/test.sh`), a source file cited
//! by the end of its path (`handlers/latest.rs`), and a relative Markdown
//! link, in every Markdown file of the repository. Files moved or renamed
//! leave their old names behind in prose otherwise.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// Every file under `dir`, relative to the root, but for build output,
/// virtual environments and VCS data.
fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if matches!(
            name.as_str(),
            "target" | ".git" | ".venv" | "node_modules" | ".hypothesis"
        ) {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Paths the docs name that a run makes, not the repository holds.
fn generated(path: &str) -> bool {
    path.starts_with("data/airq.db") || path.starts_with("target/")
}

/// The backticked spans of a line.
fn backticked(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_file_the_docs_cite_exists() {
    let root = root();
    let mut files = BTreeSet::new();
    walk(&root, &root, &mut files);
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.split_once('/').map(|(top, _)| top.to_owned()))
        .collect();
    let mut missing = Vec::new();
    for doc in files.iter().filter(|f| f.ends_with(".md")) {
        let text = std::fs::read_to_string(root.join(doc)).expect("read");
        let dir = Path::new(doc).parent().unwrap_or(Path::new(""));
        for (n, line) in text.lines().enumerate() {
            let at = format!("{doc}:{}", n + 1);
            for span in backticked(line) {
                // `file.rs::item` cites the file.
                let p = span.split("::").next().unwrap_or_default();
                let p = p.trim().trim_end_matches(['.', ',', ':', ';']);
                let path_like = !p.is_empty()
                    && p.contains('/')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
                if !path_like || p.starts_with('/') || generated(p) {
                    continue;
                }
                let p = p.trim_start_matches("./");
                let top = p.split('/').next().unwrap_or_default();
                let exists = files.contains(p)
                    || files
                        .iter()
                        .any(|f| f.starts_with(&format!("{}/", p.trim_end_matches('/'))));
                if tops.contains(top) {
                    if !exists {
                        missing.push(format!("{at}: `{p}`"));
                    }
                } else if p.ends_with(".rs")
                    && !exists
                    && !files.iter().any(|f| f.ends_with(&format!("/{p}")))
                {
                    missing.push(format!("{at}: `{p}` (no source file ends so)"));
                }
            }
            // Relative links: [text](path) and [text](path#anchor).
            for part in line.split("](").skip(1) {
                let target = part.split([')', ' ']).next().unwrap_or_default();
                let target = target.split('#').next().unwrap_or_default();
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let joined = dir.join(target);
                let normal: PathBuf = joined.components().collect();
                if !root.join(&normal).exists() {
                    missing.push(format!("{at}: link to {target}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the docs cite files that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The long flags a `--help` lists.
fn flags_in_help(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split([' ', ',', '='])
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(|w| w.trim_end_matches(['.', ':']).to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The subcommands a `--help` lists (but `help`).
fn subcommands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every flag each binary and subcommand takes is in
/// docs/configuration.md: the reference is checked against `--help`, so a
/// new flag without a line there fails here.
#[test]
fn the_configuration_reference_has_every_flag() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let mut missing = Vec::new();
    for binary in [
        "airq-master",
        "airq-gateway",
        "airq-worker",
        "airq-deploy",
        "airq-loadtest",
    ] {
        // Breadth first through the subcommands.
        let mut todo: Vec<Vec<String>> = vec![vec![]];
        while let Some(path) = todo.pop() {
            let out = std::process::Command::new(support::bin(binary))
                .args(&path)
                .arg("--help")
                .output()
                .expect("--help");
            let help = String::from_utf8_lossy(&out.stdout).into_owned();
            for sub in subcommands_in_help(&help) {
                let mut deeper = path.clone();
                deeper.push(sub);
                todo.push(deeper);
            }
            for flag in flags_in_help(&help) {
                if !reference.contains(&format!("`{flag}`")) {
                    missing.push(format!("{binary} {} {flag}", path.join(" ")));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags that docs/configuration.md does not name (as `--flag`):\n{}",
        missing.join("\n")
    );
}

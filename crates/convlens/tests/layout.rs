//! The source layout tells the pipeline's story (docs/architecture.md): no module of the library
//! imports from a later stage, and no source file is too long to read in one sitting.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Longest source file allowed under `crates/*/src` and `python/src`.
const MAX_LINES: usize = 1000;

/// The stage of each top-level module of `crates/convlens/src`, in pipeline order, as ten times
/// the stage numbers of the module docs (1 read, 2 extract, 3 measure, 4 compare, 5 show): the
/// shared statistics (`numeric`, and `core`, the format-free model) below all, the filter
/// database (`db`) between measure and compare.
const STAGES: &[(&str, u32)] = &[
    ("core", 0),
    ("numeric", 0),
    ("read", 10),
    ("extract", 20),
    ("depth", 20),
    ("measure", 30),
    ("quality", 30),
    ("db", 35),
    ("compare", 40),
    ("fingerprint", 40),
    ("stem", 40),
    ("tables", 50),
    ("report", 50),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The modules a source text names through `crate::…` paths (also inside `use crate::{a, b}`).
fn crate_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let code: String = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("//") || t.starts_with("//!"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `convlens_crate::x` or `$crate::x` are not this crate's paths
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn crate_references_are_parsed() {
    let text = "use crate::numeric::Moments;\nuse crate::{db, compare::basis::Basis};\n\
                // crate::report in a comment\nlet x = $crate::y; convlens_crate::z();";
    assert_eq!(crate_references(text), vec!["numeric", "db", "compare"]);
}

#[test]
fn no_module_imports_from_a_later_stage() {
    let stages: BTreeMap<&str, u32> = STAGES.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut unknown = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let Some(&own) = stages.get(top.as_str()) else {
            unknown.push(format!("{} (module `{top}` has no stage)", rel.display()));
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for name in crate_references(&text) {
            match stages.get(name.as_str()) {
                Some(&stage) if stage > own => violations.push(format!(
                    "{} (stage {own}, `{top}`) uses crate::{name} (stage {stage})",
                    rel.display()
                )),
                Some(_) => {}
                None => unknown.push(format!("{} names crate::{name}", rel.display())),
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules without a stage in STAGES: {unknown:#?}"
    );
    assert!(
        violations.is_empty(),
        "imports from a later stage: {violations:#?}"
    );
    // the check sees the whole library (a layout change must not hide files from it)
    assert!(files.len() > 30, "only {} files under src", files.len());
}

#[test]
fn no_source_file_is_longer_than_a_sitting() {
    let root = convlens_testdata::root();
    let mut files = Vec::new();
    for entry in fs::read_dir(root.join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    rust_files(&root.join("python/src"), &mut files);
    assert!(files.len() > 60, "only {} source files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES)
                .then(|| format!("{}: {n} lines", f.strip_prefix(&root).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

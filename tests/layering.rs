//! The "May use:" line in a module's doc is a promise about the pipeline's direction (no
//! module calls back into an earlier stage). This test holds every such module to it: each
//! `crate::` path in its non-test code must name a module the line lists.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, from `src/lib.rs`'s `mod` lines.
fn modules(src: &Path) -> BTreeSet<String> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("pub mod "))?;
            Some(rest.trim_end_matches(';').to_owned())
        })
        .collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The words of the module doc's "May use:" clause, up to its full stop; `None` without one.
fn allowed(text: &str) -> Option<BTreeSet<String>> {
    let doc: String = text
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!").trim())
        .collect::<Vec<_>>()
        .join(" ");
    let start = doc.find("May use")?;
    let clause = &doc[start..];
    let clause = &clause[clause.find(':')? + 1..];
    let clause = clause.split_once('.').map_or(clause, |(before, _)| before);
    Some(
        clause
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The crate modules that `code` names through `crate::`.
fn used(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let rest = rest.trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&name) {
            found.insert(name);
        }
    }
    // `use crate::{a, b::c}` names several.
    for (at, _) in code.match_indices("use crate::{") {
        let rest = &code[at + "use crate::{".len()..];
        let group = rest.split_once("};").map_or(rest, |(group, _)| group);
        for item in group.split(',') {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_what_its_doc_says() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(
        modules.contains("conn") && modules.contains("sys"),
        "{modules:?}"
    );
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    let mut broken = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).expect("read source");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(allowed) = allowed(&text) else {
            // The crate root and the binary wire everything; test files reach anywhere.
            if !matches!(name, "lib.rs" | "main.rs" | "tests.rs") {
                broken.push(format!("{} has no \"May use:\" line", path.display()));
            }
            continue;
        };
        checked += 1;
        // Unit tests may reach anywhere.
        // Comments (doc links among them) are not uses.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let own = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        for module in used(&code, &modules) {
            let parent = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
            let itself = module == own || Some(module.as_str()) == parent;
            if !itself && !allowed.contains(&module) {
                broken.push(format!("{} uses {module}", path.display()));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} modules declare what they use"
    );
    assert!(
        broken.is_empty(),
        "beyond their \"May use:\" line: {broken:#?}"
    );
}

#[test]
fn the_checker_sees_a_violation() {
    let modules: BTreeSet<String> = ["conn", "files", "url"].map(String::from).into();
    let text = "//! Pure. May use: url.\n\nuse crate::url::x;\nuse crate::{files, url};\n";
    let allowed = allowed(text).expect("a May use line");
    assert_eq!(allowed, ["url".to_owned()].into());
    let used = used(text, &modules);
    assert_eq!(used, ["files".to_owned(), "url".to_owned()].into());
}

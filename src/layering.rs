//! The layering rule, checked: no import cycle between the top-level modules of `src/`
//! (and of `crates/*/src/`, once there are crates). An edge `a -> b` is a path through
//! the crate root (`crate` + `::b`, or one item of a `use crate::{b, ...}` group) in a
//! file of module `a`, outside its tests (the text after a file's first `#[cfg(test)]`
//! attribute) and outside `//` comments. Each cycle fails the test naming its edges and
//! the files that make them, so the one that should not exist can be found and removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module -> module -> the first file (relative to its `src`) that makes the edge.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_lowercase() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

/// The code a file contributes: before its first test attribute, without `//` comments.
fn code_of(text: &str) -> String {
    let test_attr = ["#[cfg", "(test)]"].concat();
    let head = text.split(test_attr.as_str()).next().unwrap_or("");
    head.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through the crate root.
fn targets(code: &str) -> BTreeSet<String> {
    let root = ["cra", "te::"].concat();
    let b = code.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(root.as_str()).map(|i| i + from) {
        from = i + root.len();
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
            continue;
        }
        let rest = &b[from..];
        if rest.first() == Some(&b'{') {
            // A group: the first segment of each of its top-level items.
            let mut depth = 0usize;
            let mut item_start = true;
            for (k, &c) in rest.iter().enumerate() {
                match c {
                    b'{' => {
                        depth += 1;
                        if depth == 1 {
                            item_start = true;
                        }
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => item_start = true,
                    c if c.is_ascii_whitespace() => {}
                    c if depth == 1 && item_start => {
                        item_start = false;
                        if is_ident_start(c) {
                            let end = rest[k..]
                                .iter()
                                .position(|&c| !is_ident(c))
                                .map_or(rest.len(), |n| k + n);
                            out.insert(String::from_utf8_lossy(&rest[k..end]).into_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else if rest.first().is_some_and(|&c| is_ident_start(c)) {
            let end = rest
                .iter()
                .position(|&c| !is_ident(c))
                .unwrap_or(rest.len());
            out.insert(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
    }
    out
}

fn edges_of(src: &Path) -> Edges {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges = Edges::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f);
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let top = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for t in targets(&code_of(&text)) {
            if t != top {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(t)
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    edges
}

/// The modules `from` reaches through one or more edges.
fn reach(edges: &Edges, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for t in edges.get(&m).into_iter().flat_map(|e| e.keys()) {
            if seen.insert(t.clone()) {
                todo.push(t.clone());
            }
        }
    }
    seen
}

/// Every edge that lies on a cycle, as `a -> b (file)`.
fn cycle_edges(edges: &Edges) -> Vec<String> {
    let mut bad = Vec::new();
    for (a, ts) in edges {
        for (b, file) in ts {
            if reach(edges, b).contains(a) {
                bad.push(format!("{a} -> {b} ({file})"));
            }
        }
    }
    bad
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut srcs = vec![root.join("src")];
    if let Ok(rd) = std::fs::read_dir(root.join("crates")) {
        let mut crates: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        crates.sort();
        srcs.extend(crates.into_iter().map(|c| c.join("src")));
    }
    let mut problems = Vec::new();
    for src in srcs.iter().filter(|s| s.is_dir()) {
        let edges = edges_of(src);
        assert!(
            edges.len() > 3,
            "{}: found too few modules to check",
            src.display()
        );
        for e in cycle_edges(&edges) {
            let shown = src.strip_prefix(root).unwrap_or(src);
            problems.push(format!("{}: {e}", shown.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles between top-level modules; each edge below lies on one, remove the one \
         that points from a lower layer to a higher one:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_paths_groups_and_skips_tests_and_comments() {
    let root = ["cra", "te::"].concat();
    let test_attr = ["#[cfg", "(test)]"].concat();
    let code = format!(
        "use {root}store::Store;\nuse {root}{{jobs::{{a, b}}, error}};\nlet x = {root}io::f();\n\
         // {root}cli::x\nfn f() {{ $crate_x; }}\n{test_attr}\nuse {root}daemon;\n"
    );
    let t = targets(&code_of(&code));
    let want: BTreeSet<String> = ["error", "io", "jobs", "store"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(t, want);

    let mut edges = Edges::new();
    let mut add = |a: &str, b: &str| {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), format!("{a}/mod.rs"));
    };
    add("cli", "store");
    add("store", "config");
    add("config", "store");
    assert_eq!(
        cycle_edges(&edges),
        vec![
            "config -> store (config/mod.rs)".to_string(),
            "store -> config (store/mod.rs)".to_string()
        ]
    );
}

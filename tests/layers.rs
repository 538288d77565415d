//! The layers of the design page (`src/lib.rs`, "Layers") hold: every module of `src/` is
//! placed in one layer, in the folder its row names, and uses only modules of lower layers
//! (or its own submodules). Read from the sources: every `crate::` path (`use crate::a::b`,
//! `use crate::{a, b::c}`, `crate::a::f()`), the crate root's short names (`crate::heap`,
//! re-exported from `allocator`) and `super::` paths. Unit tests (`#[cfg(test)] mod tests`)
//! and comments are left out.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

/// A row of the table: its layer and the modules' full paths (`allocator::heap`).
struct Table {
    /// Full module path -> layer.
    layer: BTreeMap<String, u32>,
    /// Short name re-exported at the crate root -> full module path.
    alias: BTreeMap<String, String>,
}

/// Reads the layer table and the root's re-exports from the text of `src/lib.rs`.
fn table(lib: &str) -> Table {
    let mut layer = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let Ok(n) = cells[0].trim().parse::<u32>() else {
            continue;
        };
        let folder = cells[1].trim().trim_matches('`');
        for module in cells[2].split("[`").skip(1) {
            let name = &module[..module.find('`').unwrap()];
            let full = if folder == "top" || folder == name {
                name.to_string()
            } else {
                format!("{folder}::{name}")
            };
            assert!(
                layer.insert(full.clone(), n).is_none(),
                "{full} placed twice"
            );
        }
    }
    let mut alias = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let (folder, names) = rest.split_once("::{").expect("pub use folder::{names}");
        for name in names.trim_end_matches("};").split(',') {
            let name = name.trim();
            if !name.is_empty() {
                alias.insert(name.to_string(), format!("{folder}::{name}"));
            }
        }
    }
    Table { layer, alias }
}

/// Module path of a source file relative to `src/` (`allocator/heap/thread.rs` ->
/// `allocator::heap::thread`, `cpython/mod.rs` -> `cpython`); `None` for the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_str().unwrap().to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    (!parts.is_empty()).then(|| parts.join("::"))
}

/// The table entry a module path belongs to: the longest entry that is it or contains it.
fn entry<'a>(t: &'a Table, module: &str) -> Option<(&'a str, u32)> {
    let mut segs: Vec<&str> = module.split("::").collect();
    while !segs.is_empty() {
        let cand = segs.join("::");
        if let Some((k, &n)) = t.layer.get_key_value(&cand) {
            return Some((k, n));
        }
        segs.pop();
    }
    None
}

/// The modules `text` (the source of `module`) names, as full paths.
fn uses(t: &Table, module: &str, text: &str) -> Vec<String> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    // Code only: comments (docs' links included) name modules without using them.
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut push = |path: &str| {
        let first = path.split("::").next().unwrap_or("");
        let full = match t.alias.get(first) {
            Some(full) => path.replacen(first, full, 1),
            None => path.to_string(),
        };
        out.push(full);
    };
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first path of each item names its module.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push(item.trim());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && c != '{' {
                    item.push(c);
                }
            }
            push(item.trim());
        } else {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            push(rest[..end].trim_end_matches(':'));
        }
    }
    let parent = module.rsplit_once("::").map(|(p, _)| p);
    if let Some(parent) = parent {
        let mut rest = text;
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            push(&format!("{parent}::{}", rest[..end].trim_end_matches(':')));
        }
    }
    out
}

/// Every breach of the layers in `sources` (module path, text).
fn breaches(t: &Table, sources: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, text) in sources {
        let Some((from, n)) = entry(t, module) else {
            found.push(format!("{module} is in no layer of the design page"));
            continue;
        };
        for path in uses(t, module, text) {
            let Some((to, m)) = entry(t, &path) else {
                continue; // a folder's own name, or an item of the crate root
            };
            if to != from && m >= n {
                found.push(format!(
                    "{module} (layer {n}) uses {path} (layer {m}): only lower layers may be used"
                ));
            }
        }
    }
    found
}

fn sources(src: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                if path != src.join("bin") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|x| x == "rs") {
                if let Some(m) = module_of(path.strip_prefix(src).unwrap()) {
                    out.push((m, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_module_uses_one_of_its_own_or_a_higher_layer() {
    let src = support::root().join("src");
    let t = table(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(t.layer.len() >= 20, "the design page's table lost rows");
    let sources = sources(&src);
    for module in t.layer.keys() {
        assert!(
            sources.iter().any(|(m, _)| m == module),
            "the design page places {module}, which src/ does not have"
        );
    }
    let found = breaches(&t, &sources);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The `#[no_mangle]` (or `export_name`) attributes in `sources` outside `ffi`, as
/// `module: line`.
fn exports_outside_ffi(sources: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, text) in sources {
        if module == "ffi" {
            continue;
        }
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("no_mangle") || code.contains("export_name") {
                found.push(format!("{module}: {}", line.trim()));
            }
        }
    }
    found
}

/// Every exported symbol is defined in `src/ffi.rs` (one file for the whole ABI, as
/// mimalloc's `alloc-override.c`): a `#[no_mangle]` anywhere else fails.
#[test]
fn every_exported_symbol_is_defined_in_ffi() {
    let sources = sources(&support::root().join("src"));
    assert!(
        sources
            .iter()
            .any(|(m, text)| m == "ffi" && text.contains("#[no_mangle]")),
        "src/ffi.rs exports nothing"
    );
    let found = exports_outside_ffi(&sources);
    assert!(
        found.is_empty(),
        "exported outside src/ffi.rs:\n{}",
        found.join("\n")
    );
    // The check itself finds one, in either spelling.
    let planted = [
        (
            "cpython".to_string(),
            "#[no_mangle]\npub extern \"C\" fn f() {}".to_string(),
        ),
        (
            "front::api".to_string(),
            "#[unsafe(export_name = \"g\")]".to_string(),
        ),
        ("ffi".to_string(), "#[no_mangle]".to_string()),
    ];
    assert_eq!(exports_outside_ffi(&planted).len(), 2);
}

/// The checker itself: an upward use, a sideways one and an unplaced module are found,
/// through every way of naming a module.
#[test]
fn the_checker_finds_upward_sideways_and_unplaced_modules() {
    let lib = "//! | 0 | `allocator` | [`sync`] · [`os`] |\n\
               //! | 1 | `allocator` | [`heap`] |\n\
               //! | 2 | top | [`ffi`] |\n\
               pub use allocator::{heap, os, sync};\n";
    let t = table(lib);
    let src = |m: &str, text: &str| (m.to_string(), text.to_string());
    let ok = [
        src("allocator::heap", "use crate::allocator::sync::Lock;"),
        src(
            "allocator::heap::thread",
            "use super::Heap; crate::os::map();",
        ),
        src("ffi", "use crate::{heap, allocator::{sync, os}};"),
    ];
    assert_eq!(breaches(&t, &ok), Vec::<String>::new());
    for (bad, what) in [
        (
            src("allocator::heap", "crate::ffi::f();"),
            "heap (layer 1) uses ffi",
        ),
        (
            src("allocator::sync", "use crate::heap::Heap;"),
            "sync (layer 0) uses",
        ),
        (
            src("allocator::os", "use crate::{sync, heap};"),
            "uses allocator::heap",
        ),
        (
            src("allocator::sync", "use crate::allocator::os;"),
            "uses allocator::os",
        ),
        (src("allocator::os", "x\n"), ""),
        (
            src("allocator::pool", "x\n"),
            "allocator::pool is in no layer",
        ),
    ] {
        let found = breaches(&t, &[bad]);
        if what.is_empty() {
            assert!(found.is_empty(), "{found:?}");
        } else {
            assert!(found.iter().any(|f| f.contains(what)), "{what}: {found:?}");
        }
    }
}

//! The layer check: every `crate::` path in `gateway/src` names a module of
//! the file's own layer or a lower one, as `src/lib.rs`'s header lists them,
//! and no two top-level modules import each other around a circle. A module
//! missing from the list fails the check too, so the list stays whole.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `lib.rs`'s header: module -> layer number.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((num, rest)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(layer) = num.trim().parse::<usize>() else {
            continue;
        };
        let Some((_, mods)) = rest.split_once(':') else {
            continue;
        };
        for m in mods.split(',') {
            out.insert(m.trim().to_owned(), layer);
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names as `crate::X`, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `gateway_crate::`
            }
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every violation of the layers in the tree at `src` (empty: none).
fn check(src: &Path) -> Vec<String> {
    let layer = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(layer.len() > 10, "lib.rs lists the layers");
    let mut all = Vec::new();
    files(src, &mut all);
    let mut bad = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &all {
        let rel = f.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        // `wheel_tests.rs` is `wheel`'s tests.
        let top = top
            .trim_end_matches(".rs")
            .trim_end_matches("_tests")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&mine) = layer.get(&top) else {
            bad.push(format!(
                "{}: module `{top}` is not in lib.rs's layers",
                rel.display()
            ));
            continue;
        };
        for m in imports(&std::fs::read_to_string(f).unwrap()) {
            if m == top {
                continue;
            }
            match layer.get(&m) {
                None => bad.push(format!(
                    "{}: imports `{m}`, not in the layers",
                    rel.display()
                )),
                Some(&theirs) if theirs > mine => bad.push(format!(
                    "{}: `{top}` (layer {mine}) imports `{m}` (layer {theirs})",
                    rel.display()
                )),
                Some(_) => {
                    graph.entry(top.clone()).or_default().insert(m);
                }
            }
        }
    }
    // Circles within a layer: depth-first search from every module.
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    bad.push(format!("import circle: {} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_a_higher_layer_or_a_circle() {
    let bad = check(&src());
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

/// The check catches what it is for: a copy of the tree where a shard file
/// imports the control plane fails it, and so does a circle.
#[test]
fn the_check_fails_when_a_shard_file_imports_control() {
    let tmp = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy(&src(), &tmp);
    let f = tmp.join("shard/conn.rs");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, format!("use crate::control::Control;\n{text}")).unwrap();
    let bad = check(&tmp);
    assert!(
        bad.iter()
            .any(|b| b.contains("`shard` (layer") && b.contains("imports `control`")),
        "{bad:?}"
    );
    // A circle inside one layer: store -> session while session -> store.
    let f = tmp.join("store/mod.rs");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, format!("use crate::session::Route;\n{text}")).unwrap();
    let bad = check(&tmp);
    assert!(
        bad.iter().any(|b| b.starts_with("import circle")),
        "{bad:?}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

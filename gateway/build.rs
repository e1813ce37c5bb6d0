//! Collects the doc comment of every config key (the `pub` fields of the
//! `[section]` structs in `src/config.rs` and `src/config/*.rs`) for
//! `gateway config`, which prints a commented default config file: the
//! docs and that file come from the same source, so they cannot drift.
use std::fmt::Write;

fn main() {
    let mut files = vec!["src/config.rs".to_owned()];
    let skip = [
        "bus_tls.rs",
        "cli.rs",
        "error.rs",
        "validate.rs",
        "validate_sections.rs",
    ];
    let mut dir: Vec<_> = std::fs::read_dir("src/config")
        .expect("src/config")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter(|p| !skip.iter().any(|s| p.ends_with(s)))
        .map(|p| p.display().to_string())
        .collect();
    dir.sort();
    files.extend(dir);
    println!("cargo:rerun-if-changed=src/config.rs");
    println!("cargo:rerun-if-changed=src/config");
    let mut out = String::from("/// (struct, field, type, first sentence of its doc)\n");
    out.push_str("pub(crate) const FIELDS: &[(&str, &str, &str, &str)] = &[\n");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("config source");
        let (mut current, mut doc): (Option<String>, Vec<String>) = (None, Vec::new());
        // A field serde skips is not a key.
        let mut skipped = false;
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("pub struct ") {
                current = rest.split([' ', '{']).next().map(str::to_owned);
                doc.clear();
            } else if let Some(d) = t.strip_prefix("///") {
                doc.push(d.trim().to_owned());
            } else if t.starts_with("#[") {
                skipped |= t.contains("serde(skip)");
            } else if let (Some(s), Some(rest)) = (&current, t.strip_prefix("pub ")) {
                if let (Some((name, ty)), false) = (rest.split_once(": "), skipped) {
                    let ty = ty.trim_end_matches(',');
                    let _ = writeln!(
                        out,
                        "    ({s:?}, {name:?}, {ty:?}, {:?}),",
                        first_sentence(&doc.join(" "))
                    );
                }
                doc.clear();
                skipped = false;
            } else {
                if t == "}" {
                    current = None;
                }
                doc.clear();
            }
        }
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("config_docs.rs");
    std::fs::write(dest, out).expect("write config_docs.rs");
}

/// Up to the first full stop that ends a sentence.
fn first_sentence(doc: &str) -> String {
    match doc.find(". ") {
        Some(i) => doc[..=i].to_owned(),
        None => doc.to_owned(),
    }
}

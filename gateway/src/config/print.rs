//! `gateway config`: the default config as a commented TOML file: every
//! key, one line of what it means (the first sentence of its doc comment,
//! collected by `build.rs` from the same source as the docs) and its
//! default (serialized from `Config::default()`), commented out, so the
//! file changes nothing until a line is uncommented.
use std::fmt::Write;

use super::Config;

mod docs {
    include!(concat!(env!("OUT_DIR"), "/config_docs.rs"));
}

/// The commented default config.
pub fn commented_default() -> String {
    let value = toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Boolean(false));
    let empty = toml::map::Map::new();
    let table = value.as_table().unwrap_or(&empty);
    let mut out = String::from(
        "# gateway config file: every key with its default, commented out.\n\
         # Uncomment a line to change it; flags override the file.\n",
    );
    let top: Vec<_> = docs::FIELDS.iter().filter(|f| f.0 == "Config").collect();
    // Keys of the top level first (TOML puts tables last), then sections.
    for &&(_, key, ty, doc) in top.iter().filter(|f| struct_of(f.2).is_none()) {
        let _ = ty;
        key_line(&mut out, key, doc, table.get(key));
    }
    for &&(_, section, ty, doc) in &top {
        let Some(name) = struct_of(ty) else { continue };
        let _ = write!(out, "\n# {doc}\n[{section}]\n");
        let values = table.get(section).and_then(|v| v.as_table());
        for &(_, key, _, doc) in docs::FIELDS.iter().filter(|f| f.0 == name) {
            key_line(&mut out, key, doc, values.and_then(|t| t.get(key)));
        }
    }
    out
}

/// The struct that documents a section's type (`QosConfig`), if it is one.
fn struct_of(ty: &str) -> Option<&'static str> {
    let ty = ty.rsplit("::").next().unwrap_or(ty);
    docs::FIELDS
        .iter()
        .map(|f| f.0)
        .find(|s| *s == ty && *s != "Config")
}

fn key_line(out: &mut String, key: &str, doc: &str, value: Option<&toml::Value>) {
    let _ = writeln!(out, "\n## {doc}");
    match value {
        Some(v) => {
            let _ = writeln!(out, "# {key} = {v}");
        }
        None => {
            let _ = writeln!(out, "# {key} = (unset)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{commented_default, docs, struct_of};
    use crate::config::Config;

    #[test]
    fn every_key_is_there_and_uncommented_it_is_the_default() {
        let text = commented_default();
        for (s, key, ty, doc) in docs::FIELDS {
            assert!(!doc.is_empty(), "{s}.{key} has no doc comment");
            let line = match struct_of(ty) {
                Some(_) => format!("[{key}]"),
                None => format!("# {key} = "),
            };
            assert!(text.contains(&line), "{key} missing:\n{text}");
        }
        // Uncommented, every key with a value parses and is the default.
        let live: String = (text.lines())
            .map(|l| match l.strip_prefix("# ") {
                Some(kv) if kv.contains(" = ") && !kv.ends_with("(unset)") => kv,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed = Config::from_toml(&live, std::path::Path::new("x.toml")).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }
}

//! The Grafana dashboard, `deploy/grafana-dashboard.json`, against the real
//! `/metrics`: it is importable (a `DS_PROMETHEUS` input every panel uses,
//! unique panel ids), every metric it charts exists under the name it
//! charts, and counters are charted through `rate`/`increase` while gauges
//! are not. Renaming a metric without the dashboard fails here.

#[allow(unused_macros)] // io_uring only: the dashboard is not about the driver
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana-dashboard.json"
);

/// The functions a counter must be charted through (and a gauge must not).
const RATE_FUNCTIONS: [&str; 3] = ["rate", "irate", "increase"];

/// The series names of a histogram family besides the family name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(DASHBOARD).unwrap_or_else(|e| panic!("read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, those inside (collapsed) rows included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("a panels array") {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL query of the dashboard: each `expr` (walked recursively, so
/// no panel kind or nesting is missed) and each query variable's query.
fn queries(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        let s = v
                            .as_str()
                            .unwrap_or_else(|| panic!("expr {v} is not a string"));
                        out.push(s.to_owned());
                    } else {
                        walk(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let q = &var["query"];
        if let Some(s) = q.as_str().or_else(|| q["query"].as_str()) {
            out.push(s.to_owned());
        }
    }
    out
}

/// `expr` with every quoted string (label values, regexes) blanked out,
/// byte for byte, so positions stay and nothing quoted looks like a name
/// or a parenthesis.
fn unquoted(expr: &str) -> String {
    let mut out = Vec::with_capacity(expr.len());
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for &b in expr.as_bytes() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                    out.push(b);
                    continue;
                }
                out.push(b' ');
            }
            None => {
                if matches!(b, b'"' | b'\'' | b'`') {
                    quote = Some(b);
                }
                out.push(b);
            }
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The metric names (`gateway_*`, and the node's `process_*`) in an
/// unquoted expression, with where each starts.
fn metric_names(expr: &str) -> Vec<(usize, &str)> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_name_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_name_byte(b[i]) {
            i += 1;
        }
        let word = &expr[start..i];
        if word.starts_with("gateway_") || word.starts_with("process_") {
            out.push((start, word));
        }
    }
    out
}

/// The function whose parentheses enclose byte `at` of an unquoted
/// expression: `rate` in `sum(rate(x[5m]))` for `x`; "" when none does or
/// the innermost parentheses only group (`sum by (a) (x)`).
fn enclosing_call(expr: &str, at: usize) -> &str {
    let b = expr.as_bytes();
    let mut depth = 0usize;
    for (i, &c) in b[..at].iter().enumerate().rev() {
        match c {
            b')' => depth += 1,
            b'(' if depth > 0 => depth -= 1,
            b'(' => {
                let head = expr[..i].trim_end();
                let start = head
                    .bytes()
                    .rposition(|x| !is_name_byte(x))
                    .map_or(0, |p| p + 1);
                return &head[start..];
            }
            _ => {}
        }
    }
    ""
}

/// What `/metrics` declares: each family's `# TYPE`, and each sample name.
struct Exposed {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposed {
    fn parse(text: &str) -> Exposed {
        let mut types = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        Exposed { types, samples }
    }

    /// The kind of series `name` is ("counter", "gauge"; a histogram's
    /// `_bucket`, `_sum` and `_count` are counters), or None if `/metrics`
    /// has no such series. A histogram's bare family name is no series.
    fn kind(&self, name: &str) -> Option<&str> {
        for suffix in HISTOGRAM_SUFFIXES {
            let base = name.strip_suffix(suffix);
            if base.is_some_and(|b| self.types.get(b).is_some_and(|k| k == "histogram")) {
                return Some("counter");
            }
        }
        match self.types.get(name).map(String::as_str) {
            Some("histogram") => None,
            Some(kind) => Some(kind),
            None if self.samples.contains(name) => Some("untyped"),
            None => None,
        }
    }

    /// The family a charted series belongs to (a histogram's base name).
    fn family<'a>(&self, name: &'a str) -> &'a str {
        HISTOGRAM_SUFFIXES
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|b| self.types.get(*b).is_some_and(|k| k == "histogram"))
            .unwrap_or(name)
    }
}

#[test]
fn dashboard_is_importable() {
    let dash = dashboard();
    let inputs = dash["__inputs"].as_array().expect("an __inputs array");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "__inputs declares DS_PROMETHEUS: {inputs:?}"
    );
    assert!(dash["schemaVersion"].as_u64().is_some(), "a schemaVersion");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut ids = BTreeSet::new();
    let mut charted = 0;
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: panel id {id} is used twice");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
        assert!(
            matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
            "{title}: gridPos {g} is not within 24 columns"
        );
        let Some(targets) = p["targets"].as_array() else {
            continue;
        };
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: the panel's datasource is the imported one"
        );
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without a query: {t}"
            );
            let r = t["refId"].as_str().unwrap_or("");
            assert!(refs.insert(r.to_owned()), "{title}: refId {r:?} twice");
            charted += 1;
        }
    }
    assert!(charted > 0, "the dashboard charts nothing");
}

#[test]
fn every_charted_metric_exists() {
    let dash = dashboard();
    let queries = queries(&dash);
    // A one-node cluster (Redis, bus, registry): every family `/metrics`
    // has is rendered then, even with no traffic. The presence counters
    // exist only on a cluster; the bus families per peer are declared
    // (`# TYPE`) with no peer yet.
    let c = Cluster::start(Driver::Uring, &[&[]]);
    let text = c.nodes[0].metrics();
    let exposed = Exposed::parse(&text);
    assert!(
        !exposed.types.is_empty(),
        "no # TYPE line in /metrics:\n{text}"
    );

    let mut charted = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut misused = Vec::new();
    for q in &queries {
        let expr = unquoted(q);
        for (at, name) in metric_names(&expr) {
            charted.insert(exposed.family(name).to_owned());
            let Some(kind) = exposed.kind(name) else {
                missing.insert(name.to_owned());
                continue;
            };
            let call = enclosing_call(&expr, at);
            let through_rate = RATE_FUNCTIONS.contains(&call);
            match kind {
                "counter" if !through_rate => misused.push(format!(
                    "{name} is a counter: chart it through rate() or increase(), not {call:?}, in {q}"
                )),
                "gauge" if through_rate => misused.push(format!(
                    "{name} is a gauge: {call}() of it means nothing, in {q}"
                )),
                _ => {}
            }
        }
    }
    assert!(
        !charted.is_empty(),
        "no gateway_ metric found in {} queries",
        queries.len()
    );
    assert!(
        missing.is_empty(),
        "{DASHBOARD} charts metrics /metrics does not have: {missing:?}\n\
         (a histogram is charted as NAME_bucket, NAME_sum or NAME_count)\n/metrics:\n{text}"
    );
    assert!(misused.is_empty(), "{}", misused.join("\n"));
    // Not a failure: a family nobody charts yet is worth a look.
    let uncharted: Vec<&String> = (exposed.types.keys())
        .filter(|f| f.starts_with("gateway_") && !charted.contains(*f))
        .collect();
    if !uncharted.is_empty() {
        eprintln!("families /metrics has and the dashboard does not chart: {uncharted:?}");
    }
}

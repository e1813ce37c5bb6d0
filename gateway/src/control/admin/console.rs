//! The operator's console: static files embedded in the binary, served on
//! the admin port without a token (they hold no data; every figure comes
//! from the API, which needs one). The page keeps the token in its memory
//! and `sessionStorage` and sends it as `Authorization: Bearer`: no cookie,
//! so nothing a foreign page can ride on.
//!
//! Every answer carries a strict `Content-Security-Policy`: scripts and
//! styles from this origin only (no inline code, no `eval`), requests to
//! this origin only (the node forwards what concerns a peer: `?node=`),
//! no frames, no forms posted elsewhere.
use super::routes::Response;

/// The policy of every console answer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Headers of every console answer.
const HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-cache"),
];

/// The files, by path: content type and bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/console",
        "text/html; charset=utf-8",
        include_str!("../../../console/index.html"),
    ),
    (
        "/console/console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/console.js"),
    ),
    (
        "/console/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../console/charts.js"),
    ),
    (
        "/console/console.css",
        "text/css; charset=utf-8",
        include_str!("../../../console/console.css"),
    ),
];

/// The answer to `GET path` when it is the console's: `/` sends the
/// browser to `/console`; `None` for the API's paths.
pub(super) fn asset(path: &str) -> Option<Response> {
    if path == "/" {
        return Some(Response {
            status: 303,
            content_type: "text/plain",
            body: "see /console\n".into(),
            headers: &[("location", "/console")],
        });
    }
    if path == "/console/" {
        return Some(Response {
            status: 308,
            content_type: "text/plain",
            body: "see /console\n".into(),
            headers: &[("location", "/console")],
        });
    }
    let (_, content_type, body) = FILES.iter().find(|(p, _, _)| *p == path)?;
    Some(Response {
        status: 200,
        content_type,
        body: (*body).to_owned(),
        headers: HEADERS,
    })
}

/// True for a path under the console (a `GET` of it is answered here,
/// 404 when no such file).
pub(super) fn is_console(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

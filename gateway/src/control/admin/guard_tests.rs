//! The admin API's checks, one rule at a time.
use super::*;

const TOKEN: &str = "0123456789abcdef-token";

fn guard(token: bool, hosts: &[&str], origins: &[&str]) -> Guard {
    let admin = AdminConfig {
        token: token.then(|| TOKEN.to_owned()),
        token_file: None,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        origins: origins.iter().map(|o| o.to_string()).collect(),
    };
    Guard::new(
        &admin,
        Arc::new(Hot::new(admin.token_bytes())),
        "127.0.0.1:8082".parse().unwrap(),
        Some("gw1.internal"),
    )
}

fn head<'a>(method: &'a str, path: &'a str, host: &'a str) -> Head<'a> {
    Head {
        method,
        path,
        host: Ok(Some(host)),
        origin: Ok(None),
        authorization: None,
        preflight: false,
    }
}

#[test]
fn host_is_one_of_the_listen_forms() {
    let g = guard(false, &[], &[]);
    for ok in [
        "127.0.0.1:8082",
        "localhost:8082",
        "LOCALHOST:8082",
        "[::1]:8082",
        "gw1.internal:8082",
    ] {
        assert_eq!(g.check(&head("GET", "/metrics", ok)), Ok(()), "{ok}");
    }
    for bad in [
        "evil.example:8082",
        "localhost:8083",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "localhost:x",
        "",
        "[::1",
    ] {
        let r = g.check(&head("GET", "/metrics", bad));
        assert_eq!(r, Err(Refusal::Host), "{bad:?}");
    }
    let mut h = head("GET", "/metrics", "x");
    h.host = Ok(None);
    assert_eq!(g.check(&h), Err(Refusal::NoHost));
    h.host = Err(());
    assert_eq!(g.check(&h), Err(Refusal::NoHost));
}

#[test]
fn configured_hosts_add_to_the_defaults() {
    let g = guard(false, &["admin.example.com", "ops:9000"], &[]);
    for ok in [
        "admin.example.com",
        "admin.example.com:443",
        "ops:9000",
        "localhost:8082",
    ] {
        assert_eq!(g.check(&head("GET", "/", ok)), Ok(()), "{ok}");
    }
    assert_eq!(g.check(&head("GET", "/", "ops:9001")), Err(Refusal::Host));
    let any = guard(false, &["*"], &[]);
    assert_eq!(any.check(&head("GET", "/", "anything:1")), Ok(()));
}

#[test]
fn origin_must_be_listed() {
    let g = guard(false, &[], &["https://ops.example.com"]);
    let mut h = head("POST", "/push", "localhost:8082");
    for (origin, want) in [
        (Ok(Some("https://ops.example.com")), Ok(())),
        (Ok(Some("HTTPS://OPS.example.com")), Ok(())),
        (Ok(Some("https://evil.example")), Err(Refusal::Origin)),
        (Ok(Some("null")), Err(Refusal::Origin)),
        (Err(()), Err(Refusal::Origin)),
        (Ok(None), Ok(())),
        // The console's own page: the admin port's origin.
        (Ok(Some("http://localhost:8082")), Ok(())),
        (Ok(Some("http://localhost:8083")), Err(Refusal::Origin)),
        (Ok(Some("https://localhost:8082")), Err(Refusal::Origin)),
        (Ok(Some("http://127.0.0.1:8082")), Err(Refusal::Origin)),
    ] {
        h.origin = origin;
        assert_eq!(g.check(&h), want, "{origin:?}");
    }
}

#[test]
fn the_console_files_need_no_token_and_its_api_calls_do() {
    let g = guard(true, &[], &[]);
    for path in ["/", "/console", "/console/console.js", "/console/nope"] {
        assert_eq!(
            g.check(&head("GET", path, "localhost:8082")),
            Ok(()),
            "{path}"
        );
    }
    for (method, path) in [("GET", "/series"), ("GET", "/nodes"), ("POST", "/console")] {
        let h = head(method, path, "localhost:8082");
        assert_eq!(g.check(&h), Err(Refusal::Token), "{method} {path}");
    }
}

#[test]
fn token_is_required_but_for_healthz_and_preflight() {
    let g = guard(true, &[], &["https://ops.example.com"]);
    let auth = format!("Bearer {TOKEN}");
    let lower = format!("bearer {TOKEN}");
    let mut h = head("POST", "/drain", "localhost:8082");
    for (value, want) in [
        (None, Err(Refusal::Token)),
        (Some(auth.as_str()), Ok(())),
        (Some(lower.as_str()), Ok(())),
        (Some("Bearer 0123456789abcdef-toke"), Err(Refusal::Token)),
        (Some("Bearer 0123456789abcdef-tokenX"), Err(Refusal::Token)),
        (Some("Bearer 0123456789abcdef-tokeN"), Err(Refusal::Token)),
        (
            Some("Basic MDEyMzQ1Njc4OWFiY2RlZi10b2tlbg=="),
            Err(Refusal::Token),
        ),
        (Some("Bearer"), Err(Refusal::Token)),
    ] {
        h.authorization = value.map(str::as_bytes);
        assert_eq!(g.check(&h), want, "{value:?}");
    }
    let healthz = head("GET", "/healthz", "localhost:8082");
    assert_eq!(g.check(&healthz), Ok(()));
    assert_eq!(
        g.check(&head("POST", "/healthz", "localhost:8082")),
        Err(Refusal::Token)
    );
    let mut pre = head("OPTIONS", "/push", "localhost:8082");
    pre.preflight = true;
    pre.origin = Ok(Some("https://ops.example.com"));
    assert_eq!(g.check(&pre), Ok(()));
    // Host and Origin apply to healthz too.
    assert_eq!(
        g.check(&head("GET", "/healthz", "evil:8082")),
        Err(Refusal::Host)
    );
}

#[test]
fn json_content_types() {
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
    ] {
        assert!(is_json(Some(ok.as_bytes())), "{ok}");
    }
    for bad in ["text/plain", "application/jsonx", "", "multipart/form-data"] {
        assert!(!is_json(Some(bad.as_bytes())), "{bad}");
    }
    assert!(!is_json(None));
}

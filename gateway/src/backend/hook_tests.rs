//! Tests of `hook`: the reply path and the client against a real loopback server.
use super::*;
use crate::mesh::{Command, ShardMsg};

fn ask(shard: u16) -> Ask {
    Ask {
        action: Action::Join,
        user: Arc::from("u"),
        device: Arc::from("d"),
        room: Arc::from("r"),
        reply: ReplyTo {
            shard,
            key: 3,
            conn_id: 9,
        },
        send: None,
    }
}

/// The stall this module once had: a cached answer asked for on a shard
/// whose own mesh queue is full was pushed to that queue with a blocking
/// retry (the shard slept up to 2 s) and then dropped, so the join was
/// never answered. The answer now goes to the reply queue at once.
#[test]
fn a_cached_answer_reaches_a_shard_whose_queue_is_full() {
    let mesh = Arc::new(Mesh::new(1, 1).unwrap());
    assert!(mesh
        .try_push(0, Command::Drain(Default::default()).into())
        .is_ok());
    assert!(
        mesh.try_push(0, Command::Drain(Default::default()).into())
            .is_err(),
        "full"
    );
    let cfg = BackendConfig {
        // Nothing listens there: only the cache answers.
        authorize_url: Some("http://127.0.0.1:9/authorize".into()),
        authorize_cache_secs: 60,
        ..BackendConfig::default()
    };
    let hook = Hook::start(&cfg, "n1", mesh.clone()).unwrap().unwrap();
    let key = (Arc::from("u"), Action::Join, Arc::from("r"));
    let until = Instant::now() + Duration::from_secs(60);
    hook.cache.lock().unwrap().insert(key, (true, until));

    hook.ask(ask(0));

    match mesh.pop_reply(0) {
        Some(Reply::Authorized {
            allow, reply, room, ..
        }) => {
            assert!(allow);
            assert_eq!((reply.key, reply.conn_id), (3, 9));
            assert_eq!(&*room, "r");
        }
        _ => panic!("the decision was not delivered"),
    }
    assert_eq!(hook.counters.cached.load(Ordering::Relaxed), 1);
    // The full data queue was left as it was.
    assert!(matches!(
        mesh.pop(0),
        Some(ShardMsg::Command(Command::Drain(_)))
    ));
}

#[test]
fn a_url_that_is_not_http_is_refused() {
    let mesh = Arc::new(Mesh::new(1, 1).unwrap());
    let cfg = BackendConfig {
        authorize_url: Some("https://backend/authorize".into()),
        ..BackendConfig::default()
    };
    let err = Hook::start(&cfg, "n1", mesh).err().expect("refused");
    assert!(matches!(err, HookError::Url(_)), "{err}");
}

/// How the test backend answers a request body: `None` never answers
/// (the connection is held open).
type Canned = fn(&str) -> Option<String>;

/// A tiny HTTP/1.1 backend on loopback: answers each request of each
/// connection with `canned`, keeping the connection open unless
/// `close_each`. Counts connections and requests.
fn backend(canned: Canned, close_each: bool) -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/authorize", listener.local_addr().unwrap());
    let (conns, reqs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, r) = (conns.clone(), reqs.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: the head, then Content-Length bytes.
                    let request = loop {
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let l = l.to_ascii_lowercase();
                                    let v = l.strip_prefix("content-length:")?;
                                    v.trim().parse::<usize>().ok()
                                })
                                .unwrap_or(0);
                            if rest.len() >= len {
                                buf.drain(..head.len() + 4 + len);
                                break Some(rest[..len].to_owned());
                            }
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => break None,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let Some(request) = request else { return };
                    r.fetch_add(1, Ordering::SeqCst);
                    let Some(reply) = canned(&request) else {
                        // Never answers; holds the connection.
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    };
                    if s.write_all(reply.as_bytes()).is_err() || close_each {
                        return;
                    }
                }
            });
        }
    });
    (url, conns, reqs)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn hook(url: &str, when_down: &str, timeout_ms: u64) -> (Hook, Arc<Mesh>) {
    let mesh = Arc::new(Mesh::new(1, 16).unwrap());
    let cfg = BackendConfig {
        authorize_url: Some(url.to_owned()),
        authorize_timeout_ms: timeout_ms,
        authorize_concurrency: 1,
        authorize_cache_secs: 0,
        authorize_when_down: when_down.into(),
        ..BackendConfig::default()
    };
    (
        Hook::start(&cfg, "n1", mesh.clone()).unwrap().unwrap(),
        mesh,
    )
}

/// The decision the shard receives (polled; 10 s at most).
fn decision(mesh: &Mesh) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match mesh.pop_reply(0) {
            Some(Reply::Authorized { allow, reply, .. }) => {
                assert_eq!((reply.key, reply.conn_id), (3, 9));
                return allow;
            }
            Some(_) => panic!("not an authorization"),
            None if Instant::now() > deadline => panic!("no decision"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[test]
fn the_backend_allows_over_one_kept_connection() {
    let canned: Canned = |req| {
        let q: serde_json::Value = serde_json::from_str(req).unwrap();
        assert_eq!(
            (&q["action"], &q["user"], &q["room"], &q["node"], &q["conn"]),
            (
                &json!("join"),
                &json!("u"),
                &json!("r"),
                &json!("n1"),
                &json!(9)
            )
        );
        Some(ok(r#"{"allow": true}"#))
    };
    let (url, conns, reqs) = backend(canned, false);
    // Denies when down: an allow can only be the backend's.
    let (hook, mesh) = hook(&url, "deny", 5_000);
    for _ in 0..3 {
        hook.ask(ask(0));
        assert!(decision(&mesh));
    }
    assert_eq!(hook.counters.asked.load(Ordering::Relaxed), 3);
    assert_eq!(reqs.load(Ordering::SeqCst), 3);
    assert_eq!(conns.load(Ordering::SeqCst), 1, "keep-alive");
}

#[test]
fn a_backend_that_closes_after_each_answer_is_asked_again() {
    let (url, _, reqs) = backend(|_| Some(ok(r#"{"allow": true}"#)), true);
    let (hook, mesh) = hook(&url, "deny", 5_000);
    for _ in 0..3 {
        hook.ask(ask(0));
        assert!(decision(&mesh));
    }
    assert_eq!(hook.counters.down.load(Ordering::Relaxed), 0);
    assert_eq!(reqs.load(Ordering::SeqCst), 3);
}

#[test]
fn any_other_status_is_no() {
    let canned: Canned = |_| {
        let body = r#"{"allow": true}"#;
        Some(format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let (url, _, _) = backend(canned, false);
    // Allows when down: a deny can only be the backend's.
    let (hook, mesh) = hook(&url, "allow", 5_000);
    hook.ask(ask(0));
    assert!(!decision(&mesh));
    assert_eq!(hook.counters.asked.load(Ordering::Relaxed), 1);
    assert_eq!(hook.counters.down.load(Ordering::Relaxed), 0);
}

#[test]
fn a_backend_that_never_answers_leaves_it_to_the_down_policy() {
    let (url, _, _) = backend(|_| None, false);
    let (hook, mesh) = hook(&url, "allow", 200);
    hook.ask(ask(0));
    assert!(decision(&mesh));
    assert_eq!(hook.counters.down.load(Ordering::Relaxed), 1);
    assert_eq!(hook.counters.asked.load(Ordering::Relaxed), 0);
}

#[test]
fn an_unreachable_backend_leaves_it_to_the_down_policy() {
    // Bound, then closed: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (hook, mesh) = hook(&format!("http://{addr}/authorize"), "deny", 5_000);
    hook.ask(ask(0));
    assert!(!decision(&mesh));
    assert_eq!(hook.counters.down.load(Ordering::Relaxed), 1);
}

#[test]
fn urls_are_parsed_once() {
    let t = Target::parse("http://[::1]:8080/a/b?c=1").ok().unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
    assert_eq!(
        (t.authority.to_str().unwrap(), t.path.to_string().as_str()),
        ("[::1]:8080", "/a/b?c=1")
    );
    let t = Target::parse("http://backend").ok().unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path.to_string().as_str()),
        ("backend", 80, "/")
    );
    assert!(Target::parse("http:///x").is_err());
    assert!(Target::parse("ftp://backend/x").is_err());
}

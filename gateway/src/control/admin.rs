//! The admin HTTP server (loopback by default): health, metrics, push,
//! presence, kick and drain.
//!
//! HTTP/1.1 by hyper (keep-alive) on the `admin` thread's own tokio
//! current-thread runtime, one task per connection, so a slow client never
//! delays another. A request head must arrive within 10 s (an idle
//! keep-alive connection is closed after as long) and fit in 16 KiB; a body
//! (`Content-Length` or chunked) must arrive within 10 s and fit in 1 MiB
//! (413). Handlers that call [`Control`] (which may wait up to 2 s on a shard
//! or 1 s per peer) run on a blocking pool of 8 threads; `GET /healthz` is
//! answered on the runtime itself. At most 256 connections are served at
//! once; further ones wait in the accept queue.
//!
//! Who may call it (`[admin]`, see `guard`), checked in this order:
//! - `Host` must be `localhost`, `127.0.0.1`, `[::1]`, the listen address
//!   or `cluster.bus_advertise` with the admin port, or in `admin.hosts`
//!   (`"*"`: any): else 403, and 400 without a `Host`. Defeats DNS rebinding.
//! - An `Origin` header must be in `admin.origins` (default none): else 403.
//!   Browsers send `Origin` on every cross-origin POST, so a page the
//!   operator opens cannot push, kick or drain. Listed origins get CORS
//!   headers and their preflight (`OPTIONS`) answered with 204.
//! - With `admin.token` set, every request but `GET /healthz` (and a
//!   preflight) needs `Authorization: Bearer <token>`: else 401. A node whose
//!   `admin_listen` is not loopback does not start without a token.
//! - `POST /push` needs `Content-Type: application/json` (415).
//!   `POST /drain` and `POST /kick/{user}` take no body: JSON, or no
//!   `Content-Type` with an empty body (`curl -X POST`); anything else is
//!   415 (a form or text/plain body is never accepted).
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/healthz` | 200 `ok`, or 503 `draining` |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/nodes` | the registry's nodes |
//! | GET | `/route` | the node a client should use |
//! | POST | `/push` | body `{"user"|"room": name, "text": s | "payload_b64": b, "qos": 0|1}` or `users`/`rooms` lists; 200 `{"accepted":true,"msg_id":..}`, 429 `RATE_LIMITED` |
//! | GET | `/presence/{user}` | 200 `{"user","online","connections":[{conn_id,shard,device,transport}]}` (`?local=1`: this node only) |
//! | GET | `/rooms/{room}` | 200 `{"room","members","nodes"}` (`?local=1`: this node only) |
//! | POST | `/kick/{user}` | 200 `{"kicked": n}` |
//! | POST | `/drain` | 202 `{"draining":true}` |
//! | GET | `/`, `/console`, `/console/...` | the console (`console`): no token needed |
//! | GET | `/series` | the last 10 minutes of this node's figures (`control::series`); `?node=ID`: that node's |
//! | POST | `/drain?node=ID`, `/reload?node=ID`, `/upgrade?node=ID` | forwarded to node ID's admin API (the registry's address, this node's token), its answer passed back |
//! | POST | `/upgrade` | when done: 200 `{"pid","connections","draining","took_ms"}`; 409 (one runs, or draining) or 500 with `{"upgraded":false,"error"}`, the old process serving |
mod console;
mod guard;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::control::Control;
use guard::{Guard, Head};
use routes::BodyRule;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
const MAX_BODY: usize = 1024 * 1024;
/// How long a request head, or a body, may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNS: usize = 256;
/// Threads that run handlers which may block.
const BLOCKING_THREADS: usize = 8;

/// What every connection's task shares.
struct Shared {
    control: Control,
    guard: Guard,
}

/// Serves admin requests on `listener` from a new thread with its own
/// runtime. Errors (no runtime, no thread) are the operator's at start-up.
/// `stop` ends the accepting (an upgrade's commit: the new process serves
/// the port); requests already read are answered.
pub fn spawn(
    listener: TcpListener,
    control: Control,
    stop: Arc<tokio::sync::Notify>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let config = &control.node().config;
    let guard = Guard::new(
        &config.admin,
        control.node().admin_token.clone(),
        addr,
        config.cluster.bus_advertise.as_deref(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("admin-blocking")
        .build()?;
    listener.set_nonblocking(true)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let shared = Arc::new(Shared { control, guard });
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || runtime.block_on(accept_loop(listener, shared, stop)))?;
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::Notify>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .max_headers(64);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Readiness-driven: a stop takes no connection to leave behind.
        let mut stopped = std::pin::pin!(stop.notified());
        let accepted = std::future::poll_fn(|cx| {
            if stopped.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let Some(accepted) = accepted else { break };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, most likely: let some close.
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "admin connection: {e}");
            }
            drop(permit);
        });
    }
    // The port is the new process's now; connections already accepted are
    // served until they close (the runtime stays for them).
    drop(listener);
    std::future::pending::<()>().await;
}

/// One request: the guard, the body, then the handler.
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let node = shared.control.node();
    if node.handed_over.load(std::sync::atomic::Ordering::SeqCst) && shared.control.is_draining() {
        // Upgraded: a kept-alive connection to this (old) process is closed
        // after this answer, so the client asks the new one next time.
        let mut r = to_http(routes::error(503, "upgraded: ask again"));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let headers = &parts.headers;
    // An Origin that is not text is refused like a repeated one.
    let origin = match one(headers, header::ORIGIN) {
        Ok(Some(v)) => v.to_str().map(Some).map_err(|_| ()),
        Ok(None) => Ok(None),
        Err(()) => Err(()),
    };
    let host = match parts.uri.authority() {
        Some(a) => Ok(Some(a.as_str())),
        None => one(headers, header::HOST).map(|h| h.and_then(|v| v.to_str().ok())),
    };
    let preflight = method == "OPTIONS"
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && headers.contains_key(header::ORIGIN);
    let head = Head {
        method: &method,
        path: &path,
        host,
        origin,
        authorization: headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        preflight,
    };
    let cors = match origin {
        Ok(Some(o)) if shared.guard.origin_allowed(o) => HeaderValue::from_str(o).ok(),
        _ => None,
    };
    let response = match shared.guard.check(&head) {
        Err(refusal) => {
            let (status, message) = refusal.status();
            tracing::debug!(%method, %path, status, "admin request refused: {message}");
            let mut r = to_http(routes::error(status, message));
            if refusal == guard::Refusal::Token {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            r
        }
        Ok(()) if preflight => preflight_response(),
        Ok(()) => dispatch(&shared, parts.method, &parts.uri, headers, body).await,
    };
    with_cors(response, cors)
}

/// Reads the body a route needs and runs the route.
async fn dispatch(
    shared: &Arc<Shared>,
    method: hyper::Method,
    uri: &hyper::Uri,
    headers: &HeaderMap,
    body: Incoming,
) -> Response<Full<Bytes>> {
    let path = uri.path();
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let rule = routes::body_rule(method.as_str(), path);
    if rule == Some(BodyRule::Json) && !guard::is_json(content_type) {
        return to_http(routes::error(
            415,
            "expected Content-Type: application/json",
        ));
    }
    if method == hyper::Method::GET && path == "/healthz" {
        // An atomic read: answered here, even while the pool is busy.
        return to_http(routes::route(&shared.control, "GET", path, &[]));
    }
    let body = match method == hyper::Method::POST {
        true => match read_body(body).await {
            Ok(b) => b,
            Err(r) => return to_http(r),
        },
        false => Bytes::new(),
    };
    let no_body = content_type.is_none() && body.is_empty();
    if rule == Some(BodyRule::JsonOrEmpty) && !guard::is_json(content_type) && !no_body {
        return to_http(routes::error(
            415,
            "expected Content-Type: application/json, or no body",
        ));
    }
    let target = uri
        .path_and_query()
        .map_or_else(|| path.to_owned(), |p| p.as_str().to_owned());
    let control = shared.control.clone();
    let method = method.as_str().to_owned();
    let handler = move || routes::route(&control, &method, &target, &body);
    match tokio::task::spawn_blocking(handler).await {
        Ok(r) => to_http(r),
        Err(e) => {
            tracing::error!("admin handler failed: {e}");
            to_http(routes::error(500, "internal error"))
        }
    }
}

/// The whole body, within [`MAX_BODY`] and [`READ_TIMEOUT`].
async fn read_body(body: Incoming) -> Result<Bytes, routes::Response> {
    let collect = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(READ_TIMEOUT, collect).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(routes::error(413, "body over 1 MiB"))
        }
        Ok(Err(e)) => {
            tracing::debug!("admin body: {e}");
            Err(routes::error(400, "body not received"))
        }
        Err(_) => Err(routes::error(408, "body not received in time")),
    }
}

/// The value of `name` when it appears at most once; `Err` when repeated.
fn one(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        _ => Err(()),
    }
}

fn to_http(r: routes::Response) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(r.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    for (name, value) in r.headers {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    response
}

/// 204 to the preflight of an allowed origin (the guard checked it).
fn preflight_response() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// Names an allowed origin in the answer, so its page may read it.
fn with_cors(mut r: Response<Full<Bytes>>, origin: Option<HeaderValue>) -> Response<Full<Bytes>> {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

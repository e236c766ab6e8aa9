//! What a city network can throw at the broker from outside (issue 19): slow and idle
//! connections, too many of them, oversized bodies announced or dribbled, foreign `Host` names,
//! other tenants' @contexts, and URLs longer than a storage key.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Server, free_port};

/// Reads what the server sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

async fn connect(s: &Server) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap()
}

/// Regression (issue 19): a client announcing a 99 GB body was answered `100 Continue` and
/// waited for; it is answered 413 at once.
#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_at_once() {
    let s = Server::start().await;
    let mut c = connect(&s).await;
    c.write_all(
        b"POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 99000000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (answer, took) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(took < Duration::from_secs(3));
}

/// Regression (issue 19): slowloris connections (and idle ones) were held for ever, until the
/// broker ran out of file descriptors.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let s = Server::start_in(tempfile::tempdir().unwrap(), &["--header-timeout-s", "1", "--body-timeout-s", "1"]).await;
    let mut slow = connect(&s).await;
    slow.write_all(b"GET /ngsi-ld/v1/entities?type=T HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ").await.unwrap();
    let mut idle = connect(&s).await;
    let mut dribble = connect(&s).await;
    dribble
        .write_all(b"POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\"")
        .await
        .unwrap();
    let (slow_answer, slow_took) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let (idle_answer, idle_took) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    let (dribble_answer, dribble_took) = read_until_closed(&mut dribble, Duration::from_secs(5)).await;
    assert!(slow_took < Duration::from_secs(4), "slow header held {slow_took:?}: {slow_answer}");
    assert!(idle_took < Duration::from_secs(4), "idle connection held {idle_took:?}: {idle_answer}");
    assert!(dribble_took < Duration::from_secs(4), "dribbled body held {dribble_took:?}");
    assert!(dribble_answer.starts_with("HTTP/1.1 400"), "{dribble_answer}");
    assert_eq!(s.get("/entities?type=T").await.status, 200);
}

/// Beyond the connection cap a new connection is told 503 and closed; the broker serves again
/// once connections are gone.
#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503() {
    let s = Server::start_in(tempfile::tempdir().unwrap(), &["--max-connections", "16"]).await;
    // The readiness probe's pooled connection may hold one of the 16.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(connect(&s).await);
    }
    let mut extra = connect(&s).await;
    let (answer, _) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = reqwest::Client::new();
        if let Ok(r) = fresh.get(format!("{}/health", s.base)).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the broker did not serve again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On loopback, requests addressed to another host name (DNS rebinding) are refused.
#[tokio::test]
async fn foreign_host_names_are_refused_on_loopback() {
    let s = Server::start().await;
    let r = s.call("GET", "/entities?type=T", None, &[("Host", "attacker.example")]).await;
    r.assert_problem(400, "InvalidRequest");
    for host in ["localhost", "127.0.0.1:1026", "[::1]:1026"] {
        let r = s.call("GET", "/entities?type=T", None, &[("Host", host)]).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text);
    }
    let s = Server::start_in(tempfile::tempdir().unwrap(), &["--allowed-host", "broker.city.example"]).await;
    assert_eq!(s.call("GET", "/entities?type=T", None, &[("Host", "broker.city.example")]).await.status, 200);
}

/// Every response carries the security headers; the dashboard its own policy.
#[tokio::test]
async fn security_headers_and_cors() {
    let s = Server::start().await;
    for path in ["/ngsi-ld/v1/entities?type=T", "/ngsi-ld/v1/entities/urn:nope", "/health", "/"] {
        let r = s.client.get(format!("{}{path}", s.base)).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        if path == "/" {
            assert!(csp.contains("script-src 'self'"), "{csp}");
        } else {
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
        }
    }
    // CORS is off by default: a preflight gets no permission.
    let preflight = |s: &Server, origin: &str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/entities"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type, ngsild-tenant")
            .send()
    };
    let r = preflight(&s, "https://app.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let s = Server::start_in(tempfile::tempdir().unwrap(), &["--cors-origin", "https://app.example"]).await;
    let r = preflight(&s, "https://app.example").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("ngsild-tenant"), "{allowed}");
    let r = preflight(&s, "https://other.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = s.call("GET", "/entities?type=T", None, &[("Origin", "https://app.example")]).await;
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("https://app.example"));
}

/// Regression (issue 19): any tenant could list, read and delete another's hosted @contexts.
#[tokio::test]
async fn hosted_contexts_are_per_tenant_with_a_quota() {
    let s = Server::start_in(tempfile::tempdir().unwrap(), &["--max-hosted-contexts", "2"]).await;
    let shiraoi = [("NGSILD-Tenant", "shiraoi")];
    let body = json!({"@context": {"park": "https://shiraoi.example/park#"}});
    let r = s.call("POST", "/jsonldContexts", Some(&body), &shiraoi).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let location = r.header("location").unwrap();
    let id = location.rsplit('/').next().unwrap();
    let url = format!("{}{location}", s.base);
    assert_eq!(s.call("GET", &format!("/jsonldContexts/{id}"), None, &shiraoi).await.status, 200);
    let hosted = s.call("GET", "/jsonldContexts?kind=Hosted", None, &shiraoi).await.json();
    assert_eq!(hosted.as_array().unwrap().len(), 1);
    for other in [&[("NGSILD-Tenant", "atsuma")][..], &[]] {
        assert_eq!(s.call("GET", &format!("/jsonldContexts/{id}"), None, other).await.status, 404);
        assert_eq!(s.call("DELETE", &format!("/jsonldContexts/{id}"), None, other).await.status, 404);
        assert_eq!(s.call("GET", "/jsonldContexts?kind=Hosted", None, other).await.json(), json!([]));
        // Nor can another tenant use it as its @context.
        let link = format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"");
        let e = json!({"id": "urn:ngsi-ld:Park:1", "type": "park"});
        let r = s.call("POST", "/entities", Some(&e), &[other, &[("Link", &link)]].concat()).await;
        assert_ne!(r.status, 201, "{}", r.text);
    }
    let link = format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"");
    let e = json!({"id": "urn:ngsi-ld:Park:1", "type": "park"});
    assert_eq!(s.call("POST", "/entities", Some(&e), &[shiraoi[0], ("Link", &link)]).await.status, 201);
    assert_eq!(s.call("POST", "/jsonldContexts", Some(&body), &shiraoi).await.status, 201);
    s.call("POST", "/jsonldContexts", Some(&body), &shiraoi).await.assert_problem(403, "BadRequestData");
    // Another tenant has a quota of its own.
    assert_eq!(s.call("POST", "/jsonldContexts", Some(&body), &[]).await.status, 201);
    assert_eq!(s.call("DELETE", &format!("/jsonldContexts/{id}"), None, &shiraoi).await.status, 204);
}

/// Regression (issue 19): an @context URL of about 65,534 characters, even in a GET's Link
/// header, broke the storage engine ("Poisoned") for every later write. URLs longer than a
/// storage key may be are kept under their hash, and survive a restart.
#[tokio::test]
async fn long_context_urls_never_break_writes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let _ = sock.read(&mut buf).await;
                let body = json!({"@context": {"park": "https://long.example/park#"}}).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir, &["--max-url-bytes", "16384"]).await;
    let long = format!("http://127.0.0.1:{port}/ctx.jsonld?pad={}", "p".repeat(15_000));
    let link = format!("<{long}>; rel=\"http://www.w3.org/ns/json-ld#context\"");
    let r = s.call("GET", "/entities?type=park", None, &[("Link", &link)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = json!({"id": "urn:ngsi-ld:Park:long", "type": "park"});
    assert_eq!(s.call("POST", "/entities", Some(&e), &[("Link", &link)]).await.status, 201);
    // Longer than the limit: refused, and writes go on.
    let longer = format!("http://127.0.0.1:{}/ctx.jsonld?pad={}", free_port(), "p".repeat(70_000));
    let r = s.call("GET", "/entities?type=park", None, &[("Link", &format!("<{longer}>"))]).await;
    assert_eq!(r.status / 100, 4, "{}", r.text);
    let e = json!({"id": "urn:ngsi-ld:Park:after", "type": "Park"});
    assert_eq!(s.post("/entities", &e).await.status, 201);
    let data = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    drop(s);
    let s = Server::start_in(data, &["--max-url-bytes", "16384"]).await;
    let cached = s.get("/jsonldContexts?kind=Cached").await.json();
    assert!(cached.as_array().unwrap().contains(&json!(long)), "the long URL is kept across a restart");
    let r = s.call("GET", "/entities/urn:ngsi-ld:Park:long", None, &[("Link", &link)]).await;
    assert_eq!(r.json()["type"], "park");
}

/// `/ready` tells whether writes can be made.
#[tokio::test]
async fn ready_reports_writability() {
    let s = Server::start().await;
    let r = crate::util::Resp::from(s.client.get(format!("{}/ready", s.base)).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ready"}));
}

//! Starting the binary and talking to it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running broker; killed when dropped.
pub struct Server {
    pub base: String,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server::start_in(dir, &[]).await
    }

    pub async fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let port = free_port();
        let child = spawn(dir.path(), port, extra);
        let server = Server { base: format!("http://127.0.0.1:{port}"), child, dir, client: reqwest::Client::new() };
        server.wait_ready().await;
        server
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(format!("{}/health", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("haskap did not become ready at {}", self.base);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/ngsi-ld/v1{path}", self.base)
    }

    /// Sends a request with an optional JSON body (Content-Type application/json) and headers.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b.to_string());
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(body), &[]).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None, &[]).await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_haskap"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--context-timeout-ms", "1000"])
        .args(extra)
        .env("HASKAP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haskap")
}

/// A response, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Resp { status, headers, text }
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
    /// Asserts a ProblemDetails of `status` and error type `kind` (the last URI segment).
    pub fn assert_problem(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["type"], format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"), "body: {}", self.text);
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

/// A small entity of the Stellio benchmark template's shape.
pub fn shelter(id: &str) -> Value {
    serde_json::json!({
        "id": id,
        "type": "EvacuationShelter",
        "name": {"type": "Property", "value": "苫小牧市民会館"},
        "capacity": {"type": "Property", "value": 500, "unitCode": "C62", "observedAt": "2026-04-01T09:00:00Z"},
        "hazard": [
            {"type": "Property", "value": "tsunami", "datasetId": "urn:ngsi-ld:Dataset:tsunami"},
            {"type": "Property", "value": "earthquake"}
        ],
        "managedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Organization:tomakomai"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141.6036, 42.6342]}}
    })
}

/// A loopback HTTP receiver that keeps every request body it gets.
pub async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    receiver_on(0).await
}

/// A receiver on a given port (0: any free one).
pub async fn receiver_on(port: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let url = format!("http://127.0.0.1:{}/notify", listener.local_addr().unwrap().port());
    let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    let body = &buf[head_end + 4..head_end + 4 + len];
                    store.lock().unwrap().push(serde_json::from_slice(body).unwrap_or_default());
                    let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await;
                    buf.clear();
                }
            });
        }
    });
    (url, got)
}

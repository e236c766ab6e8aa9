//! Start-up, version, and graceful shutdown.

use std::time::{Duration, Instant};

use crate::util::{Server, shelter};

#[tokio::test]
async fn health_and_version() {
    let s = Server::start().await;
    let r = crate::util::Resp::from(s.client.get(format!("{}/health", s.base)).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    let v = crate::util::Resp::from(s.client.get(format!("{}/version", s.base)).send().await.unwrap()).await.json();
    assert_eq!(v["name"], "haskap");
    assert!(v["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_keeps_data() {
    let mut s = Server::start().await;
    assert_eq!(s.post("/entities", &shelter("urn:ngsi-ld:EvacuationShelter:t")).await.status, 201);
    let pid = s.child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc_kill(pid, 15) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "haskap did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    let port = s.base.rsplit(':').next().unwrap().parse().unwrap();
    s.child = crate::util::spawn(s.dir.path(), port, &[]);
    s.wait_ready().await;
    assert_eq!(s.get("/entities/urn:ngsi-ld:EvacuationShelter:t").await.status, 200);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

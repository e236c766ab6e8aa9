//! Durability: kill -9 while 32 clients write; every acknowledged write survives, no entity is
//! half-applied.

use std::sync::Arc;
use std::time::Duration;

use acked::Acked;
use serde_json::json;

use crate::util::{Server, spawn};

mod acked {
    /// Acknowledged writes, shared between writer tasks.
    pub type Acked = std::sync::Mutex<Vec<(String, u64)>>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write() {
    let mut s = Server::start().await;
    let acked: Arc<Acked> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let client = s.client.clone();
        let base = s.url("");
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let id = format!("urn:ngsi-ld:Sensor:w{w}-{i}");
                // Each entity carries its sequence number in every attribute: a torn entity shows.
                let body = json!({"id": id, "type": "Sensor", "a": i, "b": i, "c": i, "d": i});
                let Ok(r) = client
                    .post(format!("{base}/entities"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    return;
                }
                acked.lock().unwrap().push((id, i));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} writes acknowledged before the kill", acked.len());

    let port = s.base.rsplit(':').next().unwrap().parse().unwrap();
    s.child = spawn(s.dir.path(), port, &[]);
    s.wait_ready().await;
    for (id, i) in &acked {
        let r = s.get(&format!("/entities/{id}?options=keyValues")).await;
        assert_eq!(r.status, 200, "acknowledged entity {id} lost");
        let e = r.json();
        for k in ["a", "b", "c", "d"] {
            assert_eq!(e[k], json!(i), "entity {id} is torn");
        }
    }
    // Nothing that was not acknowledged is half there either: every stored Sensor is whole.
    let all = s.get("/entities?type=Sensor&limit=1000&options=keyValues").await.json();
    for e in all.as_array().unwrap() {
        assert!(["a", "b", "c", "d"].iter().all(|k| e[*k] == e["a"]), "torn entity {e}");
    }
}

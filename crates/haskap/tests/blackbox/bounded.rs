//! Issue 19 regressions: no value a client sends can panic a task, a stream client that falls
//! behind is dropped with a reconnect hint and resumes without losing a change, and periodic
//! notifications to a dead endpoint keep at most one send in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Server, receiver};

/// Regression: `"timeInterval": 1e20` (or throttling) was stored and panicked the notifier, then
/// again at every start. It is refused, and the broker goes on notifying.
#[tokio::test]
async fn out_of_range_durations_are_refused_and_notifications_go_on() {
    let s = Server::start().await;
    let (url, got) = receiver().await;
    let base = json!({
        "type": "Subscription", "entities": [{"type": "EvacuationShelter"}],
        "notification": {"format": "keyValues", "endpoint": {"uri": url}}
    });
    for (k, v) in [("timeInterval", json!(1e20)), ("throttling", json!(1e20)), ("timeInterval", json!(-1))] {
        let mut bad = base.clone();
        bad[k] = v;
        s.post("/subscriptions", &bad).await.assert_problem(400, "BadRequestData");
    }
    let mut qos = base.clone();
    qos["notification"]["endpoint"] =
        json!({"uri": "mqtt://127.0.0.1:1883/t", "notifierInfo": [{"key": "MQTT-QoS", "value": "7"}]});
    s.post("/subscriptions", &qos).await.assert_problem(400, "BadRequestData");
    let mut host = base.clone();
    host["notification"]["endpoint"]["receiverInfo"] = json!([{"key": "Content-Length", "value": "0"}]);
    s.post("/subscriptions", &host).await.assert_problem(400, "BadRequestData");
    assert_eq!(s.get("/subscriptions").await.json(), json!([]), "nothing refused was stored");

    let mut good = base.clone();
    good["throttling"] = json!(0.5);
    assert_eq!(s.post("/subscriptions", &good).await.status, 201);
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:1", "type": "EvacuationShelter", "occupancy": 3});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    for _ in 0..250 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"][0]["id"], "urn:ngsi-ld:EvacuationShelter:1");
}

/// Regression: `periodic()` started a new send every interval while the previous one was still
/// retrying, so a slow or dead endpoint piled up connections and memory. At most one is in flight
/// per subscription.
#[tokio::test]
async fn periodic_notifications_to_a_dead_endpoint_keep_one_send_in_flight() {
    let s = Server::start().await;
    // A receiver that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/notify", listener.local_addr().unwrap().port());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:p", "type": "EvacuationShelter", "occupancy": 1});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    for n in 0..3 {
        let sub = json!({
            "id": format!("urn:x:periodic-{n}"), "type": "Subscription", "timeInterval": 0.3,
            "entities": [{"type": "EvacuationShelter"}],
            "notification": {"endpoint": {"uri": url}}
        });
        assert_eq!(s.post("/subscriptions", &sub).await.status, 201);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=3).contains(&n), "3 subscriptions, one send each in flight, but {n} connections");
    assert_eq!(s.get("/subscriptions/urn:x:periodic-0").await.status, 200);
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone)]
struct Sse {
    event: String,
    id: String,
    retry: Option<String>,
    data: String,
}

impl Sse {
    /// The change number of the id (`<epoch>-<seq>`).
    fn seq(&self) -> u64 {
        self.id.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or_else(|| panic!("id {:?}", self.id))
    }
    fn epoch(&self) -> &str {
        self.id.rsplit_once('-').map_or("", |(e, _)| e)
    }
    /// The entity ids of a notification.
    fn entities(&self) -> Vec<String> {
        let body: Value = serde_json::from_str(&self.data).unwrap();
        body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    }
}

/// Reads events from a stream until `done` says so or the stream ends (30 s at most).
async fn read_events(resp: &mut reqwest::Response, done: impl Fn(&[Sse]) -> bool) -> (Vec<Sse>, bool) {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut e = Sse::default();
            for line in block.lines() {
                let (k, v) = line.split_once(": ").unwrap_or((line, ""));
                match k {
                    "event" => e.event = v.into(),
                    "id" => e.id = v.into(),
                    "retry" => e.retry = Some(v.into()),
                    "data" => e.data.push_str(v),
                    _ => {}
                }
            }
            if !e.event.is_empty() {
                events.push(e);
            }
        }
        if done(&events) {
            return (events, false);
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await.expect("the stream stalled").unwrap() {
            Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            None => return (events, true),
        }
    }
}

/// Regression: each stream client had an unbounded queue, so one that stopped reading made memory
/// grow without bound. Now it is dropped with `overflow` (and `retry:`) once it falls
/// `--stream-buffer` changes behind, and a reconnect with `Last-Event-ID` gets every change it
/// missed, then the live feed, with no gap and no duplicate.
#[tokio::test]
async fn a_stream_client_that_falls_behind_is_dropped_and_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir, &["--stream-buffer", "4"]).await;
    let url = format!("{}/haskap/v1/stream?type=Big&options=keyValues", s.base);
    let mut slow = s.client.get(&url).send().await.unwrap();
    assert_eq!(slow.status(), 200);
    let first = slow.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("haskap stream"));
    // About 12 MB, one change per write: more than socket buffers hold (so the client falls
    // behind because it does not read), less than the replay window (16 MiB).
    let filler = "x".repeat(20_000);
    let total = 600;
    for i in 0..total {
        let big = json!({"id": format!("urn:ngsi-ld:Big:{i}"), "type": "Big", "filler": filler});
        assert_eq!(s.post("/entities", &big).await.status, 201);
    }
    let (events, ended) = read_events(&mut slow, |_| false).await;
    assert!(ended, "the client that fell behind is dropped");
    let overflow = events.last().expect("events");
    assert_eq!(overflow.event, "overflow", "the last event says why: {overflow:?}");
    assert_eq!(overflow.retry.as_deref(), Some("1000"), "with a reconnect hint");
    let before: Vec<&Sse> = events.iter().filter(|e| e.event == "notification").collect();
    assert!(before.len() < total, "it did fall behind ({} of {total})", before.len());
    for (n, e) in before.iter().enumerate() {
        assert_eq!(e.seq(), n as u64 + 1, "in order, no gap, no duplicate");
    }
    assert_eq!(overflow.seq(), before.len() as u64, "the overflow's id is where the client got to");

    // Reconnect as an EventSource does.
    let mut again = s.client.get(&url).header("Last-Event-ID", &overflow.id).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let missing = total - before.len();
    let (rest, ended) =
        read_events(&mut again, |ev| ev.iter().filter(|e| e.event == "notification").count() >= missing).await;
    assert!(!ended);
    assert!(rest.iter().all(|e| e.event == "notification"), "no reset: nothing was lost");
    for (n, e) in rest.iter().enumerate() {
        assert_eq!(e.seq(), overflow.seq() + n as u64 + 1, "it resumes right after the overflow");
        assert_eq!(e.epoch(), overflow.epoch());
    }
    let mut seen: Vec<String> = before.iter().copied().chain(rest.iter()).flat_map(Sse::entities).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "every change arrived once");

    // Then the live feed.
    let live = json!({"id": "urn:ngsi-ld:Big:live", "type": "Big"});
    assert_eq!(s.post("/entities", &live).await.status, 201);
    let (next, _) = read_events(&mut again, |ev| !ev.is_empty()).await;
    assert_eq!(next[0].entities(), ["urn:ngsi-ld:Big:live"]);
    assert_eq!(next[0].seq(), total as u64 + 1);
}

/// A `Last-Event-ID` the broker does not know (from an earlier run, or older than the replay
/// window) gets a `reset` event, with the id to go on from, then the live feed; the
/// `lastEventId` query parameter stands for the header.
#[tokio::test]
async fn an_unknown_last_event_id_gets_a_reset() {
    let s = Server::start().await;
    let url = format!("{}/haskap/v1/stream?type=Alert&lastEventId=0123-42", s.base);
    let mut resp = s.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (events, _) = read_events(&mut resp, |ev| !ev.is_empty()).await;
    assert_eq!(events[0].event, "reset", "{events:?}");
    assert_eq!(events[0].seq(), 0);
    assert_eq!(s.post("/entities", &json!({"id": "urn:ngsi-ld:Alert:a", "type": "Alert"})).await.status, 201);
    let (events, _) = read_events(&mut resp, |ev| !ev.is_empty()).await;
    assert_eq!(events[0].event, "notification");
    assert_eq!(events[0].entities(), ["urn:ngsi-ld:Alert:a"]);
    // A known id replays what followed it.
    let mut again = s
        .client
        .get(format!("{}/haskap/v1/stream?type=Alert", s.base))
        .header("Last-Event-ID", format!("{}-0", events[0].epoch()))
        .send()
        .await
        .unwrap();
    let (events, _) = read_events(&mut again, |ev| !ev.is_empty()).await;
    assert_eq!(events[0].entities(), ["urn:ngsi-ld:Alert:a"], "{events:?}");
}

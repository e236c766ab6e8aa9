//! Notification benchmark (issue 4): latency from a write's acknowledgement to the notification's
//! receipt, and notifications delivered per second, with N subscriptions in the broker.
//!
//! Subscription i watches entity `urn:ngsi-ld:Meter:i` (type `Meter`); every write updates one
//! meter, so each write owes exactly one notification whatever N is, and the broker has to find
//! the one subscription among N. The receiver runs in this process on loopback.
//!
//! ```sh
//! cargo run --release --example notify_bench -- --url http://127.0.0.1:1026 --subscriptions 10000
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use clap::Parser;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The broker.
    #[arg(long, default_value = "http://127.0.0.1:1026")]
    url: String,
    /// Subscriptions (and meters).
    #[arg(long, default_value_t = 100)]
    subscriptions: usize,
    /// Concurrent writers in the throughput phase.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Writes of the latency phase (one at a time).
    #[arg(long, default_value_t = 2000)]
    sequential: usize,
}

/// When each write was acknowledged and when its notification arrived, by write number.
#[derive(Default)]
struct Clock {
    sent: Mutex<HashMap<u64, Instant>>,
    acked: Mutex<HashMap<u64, Instant>>,
    received: Mutex<HashMap<u64, Instant>>,
    notifications: AtomicU64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let clock = Arc::new(Clock::default());
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/notify", receiver.local_addr().unwrap());
    let c = clock.clone();
    let app = Router::new().route(
        "/notify",
        post(move |body: String| {
            let c = c.clone();
            async move {
                let now = Instant::now();
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                for e in v["data"].as_array().into_iter().flatten() {
                    if let Some(n) = e["reading"].as_u64() {
                        c.received.lock().insert(n, now);
                        c.notifications.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ""
            }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await.unwrap() });

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let tenant = format!("bench{}", std::process::id());
    let n = args.subscriptions;
    println!("setting up {n} meters and subscriptions in tenant {tenant}");
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let meters: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("urn:ngsi-ld:Meter:{i}"), "type": "Meter", "reading": {"type": "Property", "value": 0}}))
            .collect();
        let r = http
            .post(format!("{}/ngsi-ld/v1/entityOperations/upsert", args.url))
            .header("NGSILD-Tenant", &tenant)
            .header("Content-Type", "application/json")
            .body(Value::from(meters).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "upsert: {}", r.status());
    }
    let created = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url, tenant, endpoint, sem) =
            (http.clone(), args.url.clone(), tenant.clone(), endpoint.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let sub = json!({"type": "Subscription", "entities": [{"id": format!("urn:ngsi-ld:Meter:{i}"), "type": "Meter"}],
                "watchedAttributes": ["reading"], "notification": {"format": "keyValues", "endpoint": {"uri": endpoint}}});
            let r = http
                .post(format!("{url}/ngsi-ld/v1/subscriptions"))
                .header("NGSILD-Tenant", &tenant)
                .header("Content-Type", "application/json")
                .body(sub.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("{n} subscriptions created in {:.1} s", created.elapsed().as_secs_f64());

    let seq = Arc::new(AtomicU64::new(1));
    let shared = (http.clone(), args.url.clone(), tenant.clone(), clock.clone(), seq.clone());
    let write = move |writer: usize| {
        let (http, url, tenant, clock, seq) = shared.clone();
        async move {
            let k = seq.fetch_add(1, Ordering::Relaxed);
            let meter = (k as usize * 7919 + writer) % n;
            clock.sent.lock().insert(k, Instant::now());
            let r = http
                .patch(format!("{url}/ngsi-ld/v1/entities/urn:ngsi-ld:Meter:{meter}/attrs"))
                .header("NGSILD-Tenant", &tenant)
                .header("Content-Type", "application/json")
                .body(json!({"reading": {"type": "Property", "value": k}}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
            clock.acked.lock().insert(k, Instant::now());
        }
    };

    // Latency, unloaded: one write at a time.
    let first = seq.load(Ordering::Relaxed);
    for _ in 0..args.sequential {
        write(0).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let last = seq.load(Ordering::Relaxed);
    settle(&clock).await;
    report("sequential", &clock, first..last, None);

    // Throughput and latency under load: `writers` concurrent writers for `seconds`.
    let first = seq.load(Ordering::Relaxed);
    let start = Instant::now();
    let stop = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                write(w).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = seq.load(Ordering::Relaxed);
    settle(&clock).await;
    report("loaded", &clock, first..last, Some(start));
}

/// Waits until every acknowledged write's notification arrived, or 3 s without progress.
async fn settle(clock: &Clock) {
    let mut seen = clock.notifications.load(Ordering::Relaxed);
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = clock.notifications.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet = Instant::now();
        }
        if clock.acked.lock().keys().all(|k| clock.received.lock().contains_key(k)) {
            break;
        }
    }
}

fn report(phase: &str, clock: &Clock, writes: std::ops::Range<u64>, start: Option<Instant>) {
    let acked = clock.acked.lock();
    let sent = clock.sent.lock();
    let received = clock.received.lock();
    let mut lat: Vec<f64> = Vec::new();
    let mut full: Vec<f64> = Vec::new();
    let mut last_receipt = None::<Instant>;
    let mut missing = 0;
    for k in writes.clone() {
        match (acked.get(&k), received.get(&k)) {
            (Some(a), Some(r)) => {
                lat.push(r.saturating_duration_since(*a).as_secs_f64() * 1000.0);
                full.push(r.saturating_duration_since(sent[&k]).as_secs_f64() * 1000.0);
                last_receipt = Some(last_receipt.map_or(*r, |l| l.max(*r)));
            }
            _ => missing += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    full.sort_by(f64::total_cmp);
    let pct = |p: f64| pct_of(&lat, p);
    let rate = match (start, last_receipt) {
        (Some(s), Some(l)) => format!("{:.0} notifications/s, ", lat.len() as f64 / l.duration_since(s).as_secs_f64()),
        _ => String::new(),
    };
    println!(
        "{phase}: {} writes, {}{} delivered, {missing} missing; ack→receipt p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; request sent→receipt p50 {:.2} ms, p99 {:.2} ms",
        writes.end - writes.start,
        rate,
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        pct_of(&full, 0.5),
        pct_of(&full, 0.99)
    );
}

/// The `p` quantile of sorted `v`.
fn pct_of(v: &[f64], p: f64) -> f64 {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

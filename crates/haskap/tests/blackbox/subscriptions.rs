//! The subscription API (delivery of notifications is not built yet).

use serde_json::json;

use crate::util::{Server, receiver, receiver_on};

fn sub(id: &str) -> serde_json::Value {
    json!({
        "id": id, "type": "Subscription",
        "entities": [{"type": "EvacuationShelter"}],
        "watchedAttributes": ["occupancy"],
        "q": "occupancy>100",
        "notification": {"attributes": ["occupancy"], "format": "keyValues", "endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}}
    })
}

#[tokio::test]
async fn subscription_lifecycle() {
    let s = Server::start().await;
    let id = "urn:ngsi-ld:Subscription:shelters";
    let r = s.post("/subscriptions", &sub(id)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location").unwrap(), format!("/ngsi-ld/v1/subscriptions/{id}"));
    s.post("/subscriptions/", &sub(id)).await.assert_problem(409, "AlreadyExists");
    let got = s.get(&format!("/subscriptions/{id}")).await.json();
    assert_eq!(got["entities"], json!([{"type": "EvacuationShelter"}]));
    assert_eq!(got["watchedAttributes"], json!(["occupancy"]));
    assert_eq!(got["status"], "active");
    let r = s
        .call(
            "PATCH",
            &format!("/subscriptions/{id}"),
            Some(&json!({"isActive": false, "notification": {"format": "normalized", "endpoint": {"uri": "http://127.0.0.1:9/notify"}}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let got = s.get(&format!("/subscriptions/{id}")).await.json();
    assert_eq!(got["status"], "paused");
    assert_eq!(got["notification"]["format"], "normalized");
    assert_eq!(got["notification"]["endpoint"]["uri"], "http://127.0.0.1:9/notify");
    assert!(
        got["notification"].get("attributes").is_none(),
        "a member given in an update replaces the stored one whole"
    );
    let partial = json!({"notification": {"format": "keyValues"}});
    s.call("PATCH", &format!("/subscriptions/{id}"), Some(&partial), &[]).await.assert_problem(400, "BadRequestData");
    assert_eq!(s.post("/subscriptions", &sub("urn:ngsi-ld:Subscription:2")).await.status, 201);
    let r = s.get("/subscriptions?limit=1&count=true").await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "2");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert_eq!(s.call("DELETE", &format!("/subscriptions/{id}"), None, &[]).await.status, 204);
    s.get(&format!("/subscriptions/{id}")).await.assert_problem(404, "ResourceNotFound");
    s.call("DELETE", &format!("/subscriptions/{id}"), None, &[]).await.assert_problem(404, "ResourceNotFound");
}

/// Regression: ids made from the clock alone collided when subscriptions were created at once (409).
#[tokio::test]
async fn concurrent_creations_get_distinct_ids() {
    let s = Server::start().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Meter"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}});
    let created = futures_util::future::join_all((0..50).map(|_| s.post("/subscriptions", &sub))).await;
    let mut ids: Vec<String> = created
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.text);
            r.header("Location").unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[tokio::test]
async fn invalid_subscriptions_are_rejected() {
    let s = Server::start().await;
    let mut cases = Vec::new();
    let mut no_endpoint = sub("urn:x:s1");
    no_endpoint["notification"].as_object_mut().unwrap().remove("endpoint");
    cases.push(no_endpoint);
    let mut both = sub("urn:x:s2");
    both["timeInterval"] = json!(10);
    cases.push(both);
    let mut bad_q = sub("urn:x:s3");
    bad_q["q"] = json!("occupancy>>1");
    cases.push(bad_q);
    let mut bad_uri = sub("urn:x:s4");
    bad_uri["notification"]["endpoint"]["uri"] = json!("not a uri");
    cases.push(bad_uri);
    let mut bad_trigger = sub("urn:x:s5");
    bad_trigger["notificationTrigger"] = json!(["whenever"]);
    cases.push(bad_trigger);
    let mut neither = sub("urn:x:s6");
    neither.as_object_mut().unwrap().remove("entities");
    neither.as_object_mut().unwrap().remove("watchedAttributes");
    cases.push(neither);
    for c in cases {
        s.post("/subscriptions", &c).await.assert_problem(400, "BadRequestData");
    }
    assert_eq!(s.get("/subscriptions").await.json(), json!([]));
}

#[tokio::test]
async fn subscriptions_survive_a_restart() {
    let mut s = Server::start().await;
    assert_eq!(s.post("/subscriptions", &sub("urn:x:durable")).await.status, 201);
    s.kill();
    let port = s.base.rsplit(':').next().unwrap().parse().unwrap();
    s.child = crate::util::spawn(s.dir.path(), port, &[]);
    s.wait_ready().await;
    assert_eq!(s.get("/subscriptions/urn:x:durable").await.status, 200);
}

async fn wait_for(got: &std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..250 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    got.lock().unwrap().clone()
}

/// The entities of every notification received, in order, once there are at least `n`.
async fn wait_for_data(
    got: &std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    n: usize,
) -> Vec<serde_json::Value> {
    let data = || -> Vec<serde_json::Value> {
        got.lock().unwrap().iter().flat_map(|n| n["data"].as_array().cloned().unwrap_or_default()).collect()
    };
    for _ in 0..250 {
        if data().len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    data()
}

#[tokio::test]
async fn notifications_reach_the_receiver() {
    let s = Server::start().await;
    let (live, got) = receiver().await;
    let mut sub_live = sub("urn:x:live");
    sub_live["notification"]["endpoint"]["uri"] = json!(live);
    assert_eq!(s.post("/subscriptions", &sub_live).await.status, 201);
    // A dead receiver beside it must not hold the live one back.
    assert_eq!(s.post("/subscriptions", &sub("urn:x:dead")).await.status, 201);

    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:1", "type": "EvacuationShelter", "occupancy": 150, "name": "市民会館"});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let n = wait_for(&got, 1).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["type"], "Notification");
    assert_eq!(n[0]["subscriptionId"], "urn:x:live");
    assert_eq!(
        n[0]["data"][0],
        json!({"id": "urn:ngsi-ld:EvacuationShelter:1", "type": "EvacuationShelter", "occupancy": 150})
    );

    // An update that fails q (occupancy>100) is not notified; one that passes is.
    s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:1/attrs", Some(&json!({"occupancy": 50})), &[]).await;
    s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:1/attrs", Some(&json!({"occupancy": 180})), &[]).await;
    let n = wait_for(&got, 2).await;
    assert_eq!(n.len(), 2, "{n:?}");
    assert_eq!(n[1]["data"][0]["occupancy"], 180);
    // A change to an attribute that is not watched is not notified.
    s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:1/attrs", Some(&json!({"name": "新しい名前"})), &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 2);
    // Notifications of one subscription arrive in commit order.
    for v in 101..=105 {
        s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:1/attrs", Some(&json!({"occupancy": v})), &[]).await;
    }
    let n = wait_for(&got, 7).await;
    let order: Vec<i64> = n[2..].iter().map(|x| x["data"][0]["occupancy"].as_i64().unwrap()).collect();
    assert_eq!(order, vec![101, 102, 103, 104, 105]);
    // The counters are updated once the receiver has answered.
    let mut status = json!(null);
    for _ in 0..250 {
        status = s.get("/subscriptions/urn:x:live").await.json();
        if status["notification"]["timesSent"] == 7 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["notification"]["timesSent"], 7);
    assert_eq!(status["notification"]["status"], "ok");
}

/// Regression: a notification queued behind its subscription's throttling was still sent after
/// the subscription was deleted.
#[tokio::test]
async fn a_deleted_subscription_is_notified_no_more() {
    let s = Server::start().await;
    let (url, got) = receiver().await;
    let mut throttled = sub("urn:x:throttled");
    throttled["notification"]["endpoint"]["uri"] = json!(url);
    throttled["throttling"] = json!(1);
    assert_eq!(s.post("/subscriptions", &throttled).await.status, 201);
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:1", "type": "EvacuationShelter", "occupancy": 150});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    assert_eq!(wait_for(&got, 1).await.len(), 1);
    // Held back by the throttling, then the subscription is deleted.
    s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:1/attrs", Some(&json!({"occupancy": 160})), &[]).await;
    assert_eq!(s.call("DELETE", "/subscriptions/urn:x:throttled", None, &[]).await.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "nothing after the deletion");
}

#[tokio::test]
async fn notifications_owed_survive_kill_9() {
    let mut s = Server::start().await;
    // The receiver is down at first: its port is chosen but nobody listens.
    let port = crate::util::free_port();
    let mut sub_down = sub("urn:x:later");
    sub_down["notification"]["endpoint"]["uri"] = json!(format!("http://127.0.0.1:{port}/notify"));
    assert_eq!(s.post("/subscriptions", &sub_down).await.status, 201);
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:k9", "type": "EvacuationShelter", "occupancy": 300});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    // The receiver comes up, then the broker restarts and sends what it owed.
    let (_, got) = receiver_on(port).await;
    let broker_port = s.base.rsplit(':').next().unwrap().parse().unwrap();
    s.child = crate::util::spawn(s.dir.path(), broker_port, &[]);
    s.wait_ready().await;
    let n = wait_for(&got, 1).await;
    assert!(!n.is_empty(), "the owed notification was not sent after the restart");
    assert_eq!(n[0]["data"][0]["id"], "urn:ngsi-ld:EvacuationShelter:k9");
    assert_eq!(n[0]["subscriptionId"], "urn:x:later");
    // Once delivered, it is acknowledged: another crash and restart sends nothing again.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    s.child = crate::util::spawn(s.dir.path(), broker_port, &[]);
    s.wait_ready().await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "a delivered notification was sent again");
}

#[tokio::test]
async fn periodic_notifications() {
    let s = Server::start().await;
    let (url, got) = receiver().await;
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:p", "type": "EvacuationShelter", "occupancy": 10});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let periodic = json!({
        "id": "urn:x:every-second", "type": "Subscription", "timeInterval": 1,
        "entities": [{"type": "EvacuationShelter"}],
        "notification": {"format": "keyValues", "pick": ["occupancy"], "endpoint": {"uri": url}}
    });
    assert_eq!(s.post("/subscriptions", &periodic).await.status, 201);
    let n = wait_for(&got, 2).await;
    assert!(n.len() >= 2, "{n:?}");
    assert_eq!(
        n[1]["data"],
        json!([{"id": "urn:ngsi-ld:EvacuationShelter:p", "occupancy": 10}]),
        "pick keeps the id and what it names"
    );
}

#[tokio::test]
async fn notifications_show_changes() {
    let s = Server::start().await;
    let (url, got) = receiver().await;
    let shelter =
        json!({"id": "urn:ngsi-ld:EvacuationShelter:c", "type": "EvacuationShelter", "occupancy": 10, "open": true});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let changes = json!({
        "id": "urn:x:changes", "type": "Subscription", "entities": [{"type": "EvacuationShelter"}],
        "notificationTrigger": ["attributeUpdated", "attributeDeleted"],
        "notification": {"showChanges": true, "endpoint": {"uri": url}}
    });
    assert_eq!(s.post("/subscriptions", &changes).await.status, 201);
    s.call("PATCH", "/entities/urn:ngsi-ld:EvacuationShelter:c/attrs", Some(&json!({"occupancy": 20})), &[]).await;
    s.call("DELETE", "/entities/urn:ngsi-ld:EvacuationShelter:c/attrs/open", None, &[]).await;
    // The two changes may come in one notification (a batch) or two: read them in order.
    let n = wait_for_data(&got, 2).await;
    assert_eq!(n[0]["occupancy"], json!({"type": "Property", "value": 20, "previousValue": 10}));
    assert_eq!(n[1]["open"], json!({"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": true}));
}

#[tokio::test]
async fn live_stream_of_changes() {
    let s = Server::start().await;
    let mut resp =
        s.client.get(format!("{}/haskap/v1/stream?type=Alert&options=keyValues", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("haskap stream"));
    assert_eq!(s.post("/entities", &json!({"id": "urn:ngsi-ld:Park:quiet", "type": "Park"})).await.status, 201);
    let alert =
        json!({"id": "urn:ngsi-ld:Alert:tsunami-1", "type": "Alert", "category": "tsunami", "severity": "high"});
    assert_eq!(s.post("/entities", &alert).await.status, 201);
    let text = read_stream_until(&mut resp, "tsunami-1").await;
    assert!(text.contains("event: notification"), "{text}");
    assert!(!text.contains("urn:ngsi-ld:Park:quiet"), "other types are not streamed: {text}");
    assert!(text.contains("\"severity\":\"high\""), "{text}");
}

/// Reads a stream until `needle` arrives (3 s at most per chunk) and gives what was read.
async fn read_stream_until(resp: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(3), resp.chunk())
            .await
            .expect("no event within 3 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// Regression: a browser's EventSource sends `Accept: text/event-stream` (it was refused with 406)
/// and cannot send headers, so tenant and @context come as query parameters.
#[tokio::test]
async fn the_stream_serves_browser_event_sources() {
    let s = Server::start().await;
    let city = "https://w3id.org/haskap/context/city/v1.jsonld";
    let url = format!(
        "{}/haskap/v1/stream?type=Alert&options=keyValues&tenant=shiraoi&context={}",
        s.base,
        city.replace(':', "%3A").replace('/', "%2F")
    );
    let refused = s.client.get(&url).header("Accept", "application/xml").send().await.unwrap();
    assert_eq!(refused.status(), 406);
    let mut resp = s.client.get(&url).header("Accept", "text/event-stream").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.chunk().await.unwrap().unwrap();
    let link = format!("<{city}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"");
    let alert =
        json!({"id": "urn:ngsi-ld:Alert:s1", "type": "Alert", "severity": {"type": "Property", "value": "high"}});
    let other_tenant = s
        .call("POST", "/entities", Some(&json!({"id": "urn:ngsi-ld:Alert:t1", "type": "Alert"})), &[("Link", &link)])
        .await;
    assert_eq!(other_tenant.status, 201);
    let r = s.call("POST", "/entities", Some(&alert), &[("Link", &link), ("NGSILD-Tenant", "shiraoi")]).await;
    assert_eq!(r.status, 201);
    let text = read_stream_until(&mut resp, "urn:ngsi-ld:Alert:s1").await;
    assert!(text.contains("\"type\":\"Alert\""), "the type is compacted with the city context: {text}");
    assert!(!text.contains("Alert:t1"), "other tenants are not streamed: {text}");
}

#[tokio::test]
async fn notifications_over_mqtt_through_mosquitto() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let s = Server::start().await;
    let topic = format!("haskap/test/{}", crate::util::free_port());
    let mut opts = MqttOptions::new(format!("haskap-test-{}", crate::util::free_port()), "127.0.0.1", 1883);
    opts.set_keep_alive(std::time::Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 10);
    client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
    // Wait for the subscription to be in place.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.expect("Mosquitto must run on 127.0.0.1:1883") {
            break;
        }
    }
    let mut mqtt_sub = sub("urn:x:mqtt");
    mqtt_sub["notification"]["endpoint"] =
        json!({"uri": format!("mqtt://127.0.0.1:1883/{topic}"), "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}]});
    assert_eq!(s.post("/subscriptions", &mqtt_sub).await.status, 201);
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:mqtt", "type": "EvacuationShelter", "occupancy": 120});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let message = next_publish(&mut events).await;
    assert_eq!(message.topic, topic);
    let v: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(v["metadata"]["Content-Type"], "application/json");
    assert_eq!(v["body"]["subscriptionId"], "urn:x:mqtt");
    assert_eq!(v["body"]["data"][0]["id"], "urn:ngsi-ld:EvacuationShelter:mqtt");
}

/// Regression: writes to one entity that were committed in the same group were notified as one
/// change (the last), so receivers missed values. Every write is notified, in order.
#[tokio::test]
async fn every_concurrent_write_to_one_entity_is_notified() {
    let s = Server::start().await;
    let (url, got) = receiver().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Meter"}], "watchedAttributes": ["reading"],
        "notification": {"format": "keyValues", "endpoint": {"uri": url}}});
    assert_eq!(s.post("/subscriptions", &sub).await.status, 201);
    let meter = json!({"id": "urn:ngsi-ld:Meter:1", "type": "Meter", "reading": 0});
    assert_eq!(s.post("/entities", &meter).await.status, 201);
    let bodies: Vec<_> = (1..=40).map(|k| json!({"reading": k})).collect();
    let writes = bodies.iter().map(|b| s.call("PATCH", "/entities/urn:ngsi-ld:Meter:1/attrs", Some(b), &[]));
    for r in futures_util::future::join_all(writes).await {
        assert_eq!(r.status, 204);
    }
    let seen: Vec<i64> = wait_for_data(&got, 41).await.iter().filter_map(|e| e["reading"].as_i64()).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, (0..=40).collect::<Vec<_>>(), "every value once");
}

/// `notification.join` shows linked entities in notifications as a query would: inline inside
/// the relationship, or flat after the entity.
#[tokio::test]
async fn notifications_join_linked_entities() {
    let s = Server::start().await;
    let city = json!({"id": "urn:ngsi-ld:City:tomakomai", "type": "City", "name": "苫小牧市"});
    assert_eq!(s.post("/entities", &city).await.status, 201);
    let mut got = Vec::new();
    for join in ["inline", "flat"] {
        let (url, received) = receiver().await;
        let sub = json!({"type": "Subscription", "entities": [{"type": "Shelter"}],
            "notification": {"format": "keyValues", "join": join, "endpoint": {"uri": url}}});
        let r = s.post("/subscriptions", &sub).await;
        assert_eq!(r.status, 201);
        got.push((received, r.header("Location").unwrap()));
    }
    let shelter = json!({"id": "urn:ngsi-ld:Shelter:1", "type": "Shelter",
        "locatedIn": {"type": "Relationship", "object": "urn:ngsi-ld:City:tomakomai"}});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let inline = wait_for(&got[0].0, 1).await;
    assert_eq!(inline[0]["data"][0]["locatedIn"]["name"], "苫小牧市", "{inline:?}");
    let flat = wait_for(&got[1].0, 1).await;
    assert_eq!(flat[0]["data"][1]["id"], "urn:ngsi-ld:City:tomakomai", "{flat:?}");
    assert_eq!(flat[0]["data"][0]["locatedIn"], "urn:ngsi-ld:City:tomakomai");
}

/// The next message published to what `events` subscribed to (10 s at most).
async fn next_publish(events: &mut rumqttc::EventLoop) -> rumqttc::Publish {
    use rumqttc::{Event, Packet};
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("no MQTT notification within 10 s")
}

/// `mqtts://` endpoints: TLS to a Mosquitto with a certificate from a city's own CA, trusted with
/// `--mqtt-ca-file`. The test makes the CA and certificate with openssl and runs its own Mosquitto
/// with a TLS listener beside a plain one it reads from.
#[tokio::test]
async fn notifications_over_mqtts() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Haskap Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let (plain, tls) = (crate::util::free_port(), crate::util::free_port());
    let conf = format!(
        "allow_anonymous true\nlistener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
        d.display()
    );
    std::fs::write(d.join("mosquitto.conf"), conf).unwrap();
    // Mosquitto started as root drops to its own user, which must be able to read the files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mosquitto = ["mosquitto", "/usr/sbin/mosquitto"]
        .into_iter()
        .find(|m| Command::new(m).arg("-h").output().is_ok())
        .expect("mosquitto");
    let mut broker = Command::new(mosquitto).arg("-c").arg(d.join("mosquitto.conf")).spawn().unwrap();
    // The subscriber listens on the plain listener of the same Mosquitto.
    let topic = "haskap/tls";
    let mut attempts = 0;
    let (client, mut events) = loop {
        attempts += 1;
        assert!(attempts < 30, "the test's Mosquitto did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (client, mut events) = AsyncClient::new(MqttOptions::new("haskap-tls-reader", "127.0.0.1", plain), 10);
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let acked = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        });
        if acked.await == Ok(true) {
            break (client, events);
        }
    };
    let s =
        Server::start_in(tempfile::tempdir().unwrap(), &["--mqtt-ca-file", d.join("ca.pem").to_str().unwrap()]).await;
    let mut mqtt_sub = sub("urn:x:mqtts");
    mqtt_sub["notification"]["endpoint"] = json!({"uri": format!("mqtts://127.0.0.1:{tls}/{topic}")});
    assert_eq!(s.post("/subscriptions", &mqtt_sub).await.status, 201);
    let shelter = json!({"id": "urn:ngsi-ld:EvacuationShelter:tls", "type": "EvacuationShelter", "occupancy": 130});
    assert_eq!(s.post("/entities", &shelter).await.status, 201);
    let message = next_publish(&mut events).await;
    let v: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(v["body"]["data"][0]["id"], "urn:ngsi-ld:EvacuationShelter:tls");
    drop(client);
    let _ = broker.kill();
    let _ = broker.wait();
}

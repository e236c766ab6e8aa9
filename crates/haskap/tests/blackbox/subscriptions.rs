//! The subscription API (delivery of notifications is not built yet).

use serde_json::json;

use crate::util::Server;

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

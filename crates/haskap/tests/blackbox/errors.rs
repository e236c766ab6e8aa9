//! Bad input gets a clear error and changes nothing.

use serde_json::json;

use crate::util::{Server, shelter};

#[tokio::test]
async fn bad_bodies_are_rejected_and_change_nothing() {
    let s = Server::start().await;
    let id = "urn:ngsi-ld:EvacuationShelter:9";
    s.post("/entities", &shelter(id)).await;
    let before = s.get(&format!("/entities/{id}")).await.text;

    let cases = [
        (json!({"id": "not a uri", "type": "T"}), "BadRequestData"),
        (json!({"id": "urn:x:1"}), "BadRequestData"),
        (json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": null}}), "BadRequestData"),
        (json!({"id": "urn:x:1", "type": "T", "a": {"type": "Relationship", "object": "no uri"}}), "BadRequestData"),
        (
            json!({"id": "urn:x:1", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [500, 1]}}}),
            "BadRequestData",
        ),
        (
            json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "observedAt": "yesterday"}}),
            "BadRequestData",
        ),
        (json!({"id": "urn:x:1", "type": "T", "a": {"type": "Magic", "value": 1}}), "BadRequestData"),
        (json!({"id": "urn:x:1", "type": "T", "a<b": 1}), "BadRequestData"),
        (json!([]), "InvalidRequest"),
    ];
    for (body, kind) in cases {
        s.post("/entities", &body).await.assert_problem(400, kind);
    }
    // A bad update changes nothing, not even the attributes that were fine.
    let r = s
        .call(
            "PATCH",
            &format!("/entities/{id}/attrs"),
            Some(&json!({"capacity": 1, "bad": {"type": "Property", "value": null}})),
            &[],
        )
        .await;
    r.assert_problem(400, "BadRequestData");
    assert_eq!(s.get(&format!("/entities/{id}")).await.text, before);
    assert_eq!(s.get("/entities?type=T").await.json(), json!([]));
}

#[tokio::test]
async fn protocol_errors() {
    let s = Server::start().await;
    let raw = |ct: &'static str, body: &'static str| {
        let c = s.client.post(s.url("/entities")).header("Content-Type", ct).body(body);
        async move { crate::util::Resp::from(c.send().await.unwrap()).await }
    };
    raw("application/json", "{\"id\": ").await.assert_problem(400, "InvalidRequest");
    assert_eq!(raw("application/xml", "<x/>").await.status, 415);
    let r = s.call("GET", "/entities/urn:x:404", None, &[("Accept", "application/xml")]).await;
    assert_eq!(r.status, 406);
    s.get("/entities/urn:x:1?foo=bar").await.assert_problem(400, "InvalidRequest");
    s.get("/entities/notauri").await.assert_problem(400, "BadRequestData");
    s.call("DELETE", "/entities//attrs/x", None, &[]).await.assert_problem(400, "BadRequestData");
    let r = s.call("DELETE", "/entities/urn:x:1/attrs/", None, &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").unwrap(), "POST, PATCH");
    assert_eq!(s.call("PUT", "/entityOperations/create", Some(&json!([])), &[]).await.header("allow").unwrap(), "POST");
    assert_eq!(s.call("PUT", "/entities/urn:x:1/attrs", Some(&json!({})), &[]).await.status, 405);
    // ld+json needs the @context in the body, and not also a Link header.
    let ld = s
        .client
        .post(s.url("/entities"))
        .header("Content-Type", "application/ld+json")
        .body(json!({"id": "urn:x:2", "type": "T"}).to_string());
    crate::util::Resp::from(ld.send().await.unwrap()).await.assert_problem(400, "BadRequestData");
    let with_ctx = json!({"id": "urn:x:2", "type": "T", "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"});
    s.post("/entities", &with_ctx).await.assert_problem(400, "BadRequestData");
}

#[tokio::test]
async fn limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir, &["--body-limit", "2048", "--max-attributes", "3", "--max-depth", "1"]).await;
    let big = json!({"id": "urn:x:big", "type": "T", "text": "x".repeat(4096)});
    s.post("/entities", &big).await.assert_problem(413, "InvalidRequest");
    let many = json!({"id": "urn:x:many", "type": "T", "a": 1, "b": 2, "c": 3, "d": 4});
    s.post("/entities", &many).await.assert_problem(400, "BadRequestData");
    let deep = json!({"id": "urn:x:deep", "type": "T", "a": {"value": 1, "b": {"value": 2, "c": {"value": 3}}}});
    s.post("/entities", &deep).await.assert_problem(400, "BadRequestData");
    assert_eq!(s.get("/entities/urn:x:many").await.status, 404);
}

#[tokio::test]
async fn endpoints_not_built_yet_still_negotiate() {
    let s = Server::start().await;
    // A trailing slash is the same resource (regression: POST /subscriptions/ was a 404).
    for path in ["/csourceRegistrations", "/csourceRegistrations/"] {
        let r = s.client.post(s.url(path)).header("Content-Type", "application/xml").body("<x/>").send().await.unwrap();
        assert_eq!(r.status(), 415, "{path}");
        let r = s.call("POST", path, Some(&json!({"type": "ContextSourceRegistration"})), &[]).await;
        r.assert_problem(501, "OperationNotSupported");
    }
    assert_eq!(s.call("GET", "/temporal/entities", None, &[("Accept", "application/xml")]).await.status, 406);
    s.get("/types?foo=1").await.assert_problem(400, "InvalidRequest");
}

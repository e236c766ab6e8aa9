//! JSON-LD contexts: a context served on loopback, an unreachable one, the jsonldContexts API.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, free_port};

/// Serves `body` as application/ld+json to every request on a loopback port; returns its URL.
async fn serve_context(body: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/city.jsonld")
}

fn link(url: &str) -> String {
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

#[tokio::test]
async fn remote_context_expands_and_compacts() {
    let s = Server::start().await;
    let ctx = serve_context(json!({"@context": {"city": "https://tomakomai.example/ns#", "Shelter": "city:Shelter", "capacity": "city:capacity"}}).to_string()).await;
    let entity = json!({"id": "urn:ngsi-ld:Shelter:ctx", "type": "Shelter", "capacity": 100});
    let r = s.call("POST", "/entities", Some(&entity), &[("Link", &link(&ctx))]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let with = s.call("GET", "/entities/urn:ngsi-ld:Shelter:ctx", None, &[("Link", &link(&ctx))]).await;
    assert_eq!(with.json()["capacity"]["value"], 100);
    assert_eq!(with.header("link").unwrap(), link(&ctx));
    let without = s.get("/entities/urn:ngsi-ld:Shelter:ctx").await.json();
    assert_eq!(without["type"], "https://tomakomai.example/ns#Shelter");
    assert_eq!(without["https://tomakomai.example/ns#capacity"]["value"], 100);
    // Inline in an ld+json body.
    let ld = json!({"id": "urn:ngsi-ld:Shelter:ld", "type": "Shelter", "@context": [ctx]});
    let r = s
        .client
        .post(s.url("/entities"))
        .header("Content-Type", "application/ld+json")
        .body(ld.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let q = s.call("GET", "/entities?type=https://tomakomai.example/ns%23Shelter", None, &[]).await.json();
    assert_eq!(q.as_array().unwrap().len(), 2);
    // The document is cached and listed.
    let list = s.get("/jsonldContexts?kind=Cached").await.json();
    assert!(list.as_array().unwrap().contains(&json!(ctx)));
    assert!(
        s.get("/jsonldContexts")
            .await
            .json()
            .as_array()
            .unwrap()
            .contains(&json!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"))
    );
}

#[tokio::test]
async fn unreachable_context_fails_fast() {
    let s = Server::start().await;
    let dead = format!("http://127.0.0.1:{}/nothing.jsonld", free_port());
    let started = Instant::now();
    let r = s.call("POST", "/entities", Some(&json!({"id": "urn:x:1", "type": "T"})), &[("Link", &link(&dead))]).await;
    r.assert_problem(503, "LdContextNotAvailable");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.get("/entities/urn:x:1").await.status, 404);
}

#[tokio::test]
async fn builtin_datamodels_context_works_offline() {
    let s = Server::start().await;
    let jp = "https://datamodels.jp/context/disaster/v1.jsonld";
    let site = json!({"id": "urn:ngsi-ld:EvacuationSite:012131-1", "type": "EvacuationSite", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141.6, 42.63]}}});
    let r = s.call("POST", "/entities", Some(&site), &[("Link", &link(jp))]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let e = s.get("/entities/urn:ngsi-ld:EvacuationSite:012131-1").await.json();
    assert_eq!(e["type"], "https://datamodels.jp/ns/disaster/EvacuationSite");
}

#[tokio::test]
async fn hosted_contexts() {
    let s = Server::start().await;
    let r = s.post("/jsonldContexts", &json!({"@context": {"park": "https://tomakomai.example/park#"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let location = r.header("location").unwrap();
    assert!(location.starts_with("/ngsi-ld/v1/jsonldContexts/"), "{location}");
    let url = format!("{}{location}", s.base);
    let id = location.rsplit('/').next().unwrap().to_string();
    let doc = s.get(&format!("/jsonldContexts/{id}")).await.json();
    assert_eq!(doc["@context"]["park"], "https://tomakomai.example/park#");
    let details = s.get(&format!("/jsonldContexts/{id}?details=true")).await.json();
    assert_eq!(details["kind"], "Hosted");
    assert_eq!(details["URL"], url);
    assert!(details["createdAt"].is_string());
    let e = json!({"id": "urn:x:p", "type": "park:Park"});
    assert_eq!(s.call("POST", "/entities", Some(&e), &[("Link", &link(&url))]).await.status, 201);
    assert_eq!(s.call("DELETE", &format!("/jsonldContexts/{id}"), None, &[]).await.status, 204);
    assert_eq!(s.get(&format!("/jsonldContexts/{id}")).await.status, 404);
    let core = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld";
    s.call("DELETE", &format!("/jsonldContexts/{core}"), None, &[]).await.assert_problem(400, "BadRequestData");
    assert_eq!(s.call("DELETE", &format!("/jsonldContexts/{core}?reload=true"), None, &[]).await.status, 204);
    s.call("DELETE", "/jsonldContexts/nope?reload=true", None, &[]).await.assert_problem(400, "BadRequestData");
    s.call("DELETE", "/jsonldContexts/nope", None, &[]).await.assert_problem(404, "ResourceNotFound");
    s.post("/jsonldContexts", &json!({"park": "x"})).await.assert_problem(400, "InvalidRequest");
}

/// A subscription written with an inline @context gets an ImplicitlyCreated one hosted for it,
/// named by its `jsonldContext`, which notifications are then sent with.
#[tokio::test]
async fn inline_subscription_contexts_are_implicitly_created() {
    let s = Server::start().await;
    let inline = json!([{"park": "https://tomakomai.example/park#"}, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]);
    let sub = json!({"id": "urn:x:s", "type": "Subscription", "entities": [{"type": "park"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}, "@context": inline});
    let post = |body: serde_json::Value| {
        s.client
            .post(s.url("/subscriptions"))
            .header("Content-Type", "application/ld+json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(post(sub.clone()).await.unwrap().status(), 201);
    let url = s.get("/subscriptions/urn:x:s").await.json()["jsonldContext"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/ngsi-ld/v1/jsonldContexts/", s.base)), "{url}");
    let id = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(s.get(&format!("/jsonldContexts/{id}")).await.json(), json!({"@context": inline}));
    let listed = s.get("/jsonldContexts?kind=ImplicitlyCreated&details=true").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!((&listed[0]["URL"], &listed[0]["kind"]), (&json!(url), &json!("ImplicitlyCreated")));
    assert_eq!(post(sub).await.unwrap().status(), 409);
    assert_eq!(
        s.get("/jsonldContexts?kind=ImplicitlyCreated").await.json().as_array().unwrap().len(),
        1,
        "none for a refused one"
    );
    s.call("DELETE", &format!("/jsonldContexts/{id}?reload=true"), None, &[])
        .await
        .assert_problem(400, "BadRequestData");
    assert_eq!(s.call("DELETE", &format!("/jsonldContexts/{id}"), None, &[]).await.status, 204);
    // Regression (ETSI 028_06, 031_01_01, 046_10_01, 046_19): a list of one URL is that URL, and
    // needs no context made for it.
    let core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
    let one = json!({"id": "urn:x:one", "type": "Subscription", "entities": [{"type": "park"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}, "@context": [core]});
    assert_eq!(post(one).await.unwrap().status(), 201);
    let stored = s.get("/subscriptions/urn:x:one").await.json();
    assert!(stored.get("jsonldContext").is_none(), "{stored}");
    assert_eq!(s.get("/jsonldContexts?kind=ImplicitlyCreated").await.json(), json!([]));
}

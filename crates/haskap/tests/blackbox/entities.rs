//! The entity and attribute endpoints, happy paths.

use serde_json::json;

use crate::util::{Server, shelter};

#[tokio::test]
async fn create_retrieve_delete() {
    let s = Server::start().await;
    let r = s.post("/entities", &shelter("urn:ngsi-ld:EvacuationShelter:1")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.text, "");
    assert_eq!(r.header("location").unwrap(), "/ngsi-ld/v1/entities/urn:ngsi-ld:EvacuationShelter:1");

    let r = s.get("/entities/urn:ngsi-ld:EvacuationShelter:1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").unwrap(), "application/json");
    assert!(r.header("link").unwrap().contains("ngsi-ld-core-context-v1.8.jsonld"));
    let e = r.json();
    assert_eq!(e["type"], "EvacuationShelter");
    assert_eq!(e["capacity"]["value"], 500);
    assert_eq!(e["capacity"]["observedAt"], "2026-04-01T09:00:00Z");
    assert_eq!(e["hazard"].as_array().unwrap().len(), 2);
    assert_eq!(e["managedBy"]["object"], "urn:ngsi-ld:Organization:tomakomai");
    assert!(e.get("createdAt").is_none(), "system attributes only with sysAttrs");

    let r = s.post("/entities", &shelter("urn:ngsi-ld:EvacuationShelter:1")).await;
    r.assert_problem(409, "AlreadyExists");

    let r = s.call("DELETE", "/entities/urn:ngsi-ld:EvacuationShelter:1", None, &[]).await;
    assert_eq!(r.status, 204);
    s.get("/entities/urn:ngsi-ld:EvacuationShelter:1").await.assert_problem(404, "ResourceNotFound");
}

#[tokio::test]
async fn representations_and_sys_attrs() {
    let s = Server::start().await;
    s.post("/entities", &shelter("urn:ngsi-ld:EvacuationShelter:2")).await;
    let kv = s.get("/entities/urn:ngsi-ld:EvacuationShelter:2?options=keyValues").await.json();
    assert_eq!(kv["capacity"], 500);
    assert_eq!(kv["managedBy"], "urn:ngsi-ld:Organization:tomakomai");
    assert_eq!(kv["location"]["type"], "Point");
    let concise = s.get("/entities/urn:ngsi-ld:EvacuationShelter:2?format=concise").await.json();
    assert_eq!(concise["name"], "苫小牧市民会館");
    assert_eq!(concise["capacity"]["value"], 500);
    assert!(concise["capacity"].get("type").is_none());
    assert_eq!(concise["managedBy"], json!({"object": "urn:ngsi-ld:Organization:tomakomai"}));
    let sys = s.get("/entities/urn:ngsi-ld:EvacuationShelter:2?options=sysAttrs&attrs=capacity").await.json();
    assert!(sys["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(sys["capacity"]["modifiedAt"].is_string());
    assert!(sys.get("name").is_none(), "attrs projects");
    let ld =
        s.call("GET", "/entities/urn:ngsi-ld:EvacuationShelter:2", None, &[("Accept", "application/ld+json")]).await;
    assert_eq!(ld.header("content-type").unwrap(), "application/ld+json");
    assert_eq!(ld.json()["@context"], "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld");
    // A concise create is understood too.
    let r = s.post("/entities", &json!({"id": "urn:ngsi-ld:Park:1", "type": "Park", "area": 1200, "owner": {"object": "urn:ngsi-ld:City:tomakomai"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let p = s.get("/entities/urn:ngsi-ld:Park:1").await.json();
    assert_eq!(p["area"], json!({"type": "Property", "value": 1200}));
    assert_eq!(p["owner"]["type"], "Relationship");
}

#[tokio::test]
async fn attribute_operations() {
    let s = Server::start().await;
    let id = "urn:ngsi-ld:EvacuationShelter:3";
    s.post("/entities", &shelter(id)).await;

    // Append with noOverwrite: existing capacity kept, new attribute added, 207.
    let r = s
        .post(
            &format!("/entities/{id}/attrs?options=noOverwrite"),
            &json!({"capacity": {"type": "Property", "value": 1}, "open": {"type": "Property", "value": true}}),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(r.json()["notUpdated"][0]["attributeName"], "https://uri.etsi.org/ngsi-ld/default-context/capacity");
    let e = s.get(&format!("/entities/{id}")).await.json();
    assert_eq!(e["capacity"]["value"], 500);
    assert_eq!(e["open"]["value"], true);

    // Update attributes.
    let r = s
        .call(
            "PATCH",
            &format!("/entities/{id}/attrs"),
            Some(&json!({"capacity": {"type": "Property", "value": 450, "unitCode": "C62"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.get(&format!("/entities/{id}")).await.json()["capacity"]["value"], 450);

    // Partial attribute update keeps the other members.
    let r = s.call("PATCH", &format!("/entities/{id}/attrs/capacity"), Some(&json!({"value": 400})), &[]).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("/entities/{id}")).await.json();
    assert_eq!(e["capacity"]["value"], 400);
    assert_eq!(e["capacity"]["unitCode"], "C62");

    // Replace attribute drops the other members.
    let r = s
        .call("PUT", &format!("/entities/{id}/attrs/capacity"), Some(&json!({"type": "Property", "value": 300})), &[])
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.get(&format!("/entities/{id}")).await.json()["capacity"], json!({"type": "Property", "value": 300}));

    // Delete one instance of a multi-attribute, then all.
    let r = s
        .call("DELETE", &format!("/entities/{id}/attrs/hazard?datasetId=urn:ngsi-ld:Dataset:tsunami"), None, &[])
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.get(&format!("/entities/{id}")).await.json()["hazard"]["value"], "earthquake");
    let r = s.call("DELETE", &format!("/entities/{id}/attrs/hazard?deleteAll=true"), None, &[]).await;
    assert_eq!(r.status, 204);
    assert!(s.get(&format!("/entities/{id}")).await.json().get("hazard").is_none());
    s.call("DELETE", &format!("/entities/{id}/attrs/hazard"), None, &[]).await.assert_problem(404, "ResourceNotFound");

    // Merge: attribute-level merge and urn:ngsi-ld:null deletes.
    let r = s
        .call(
            "PATCH",
            &format!("/entities/{id}"),
            Some(&json!({"capacity": {"value": 250}, "open": "urn:ngsi-ld:null"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("/entities/{id}")).await.json();
    assert_eq!(e["capacity"]["value"], 250);
    assert!(e.get("open").is_none());

    // Replace entity keeps createdAt.
    let before = s.get(&format!("/entities/{id}?options=sysAttrs")).await.json()["createdAt"].clone();
    let r = s
        .call("PUT", &format!("/entities/{id}"), Some(&json!({"type": "EvacuationShelter", "name": "新しい名前"})), &[])
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("/entities/{id}?options=sysAttrs")).await.json();
    assert_eq!(e["createdAt"], before);
    assert!(e.get("capacity").is_none());
    assert_eq!(e["name"]["value"], "新しい名前");
}

#[tokio::test]
async fn query_by_type_and_id_with_count() {
    let s = Server::start().await;
    for i in 0..25 {
        s.post("/entities", &shelter(&format!("urn:ngsi-ld:EvacuationShelter:{i:02}"))).await;
    }
    s.post("/entities", &json!({"id": "urn:ngsi-ld:Park:1", "type": "Park"})).await;
    let r = s.get("/entities?type=EvacuationShelter&count=true&limit=10&offset=20").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ngsild-results-count").unwrap(), "25");
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 5);
    assert_eq!(page[0]["id"], "urn:ngsi-ld:EvacuationShelter:20");
    let r = s
        .get("/entities?type=Park,EvacuationShelter&id=urn:ngsi-ld:Park:1,urn:ngsi-ld:EvacuationShelter:03")
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    s.get("/entities").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=Park&limit=5000").await.assert_problem(403, "TooManyResults");
}

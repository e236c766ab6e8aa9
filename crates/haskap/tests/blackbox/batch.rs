//! Batch entity operations.

use serde_json::json;

use crate::util::{Server, shelter};

#[tokio::test]
async fn batch_lifecycle() {
    let s = Server::start().await;
    let ids: Vec<String> = (0..3).map(|i| format!("urn:ngsi-ld:EvacuationShelter:b{i}")).collect();
    let all: Vec<_> = ids.iter().map(|id| shelter(id)).collect();
    let r = s.post("/entityOperations/create", &json!(all)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json(), json!(ids));

    // Again: all exist, 207 with three AlreadyExists.
    let r = s.post("/entityOperations/create", &json!(all)).await;
    assert_eq!(r.status, 207);
    let body = r.json();
    assert_eq!(body["success"], json!([]));
    assert_eq!(body["errors"][0]["error"]["type"], "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists");

    // Upsert: one new, one existing replaced.
    let r = s.post("/entityOperations/upsert", &json!([{"id": "urn:ngsi-ld:Park:new", "type": "Park"}, {"id": ids[0], "type": "EvacuationShelter", "capacity": 1}])).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json(), json!(["urn:ngsi-ld:Park:new"]));
    let e = s.get(&format!("/entities/{}", ids[0])).await.json();
    assert_eq!(e["capacity"]["value"], 1);
    assert!(e.get("name").is_none());

    // Update never creates; a bad item fails alone.
    let r = s.post("/entityOperations/update", &json!([{"id": ids[1], "capacity": 7}, {"id": "urn:ngsi-ld:Nope:1", "capacity": 1}, {"id": ids[2], "capacity": {"type": "Property", "value": null}}])).await;
    assert_eq!(r.status, 207);
    let body = r.json();
    assert_eq!(body["success"], json!([ids[1]]));
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(s.get(&format!("/entities/{}", ids[1])).await.json()["capacity"]["value"], 7);

    // Merge.
    let r = s.post("/entityOperations/merge", &json!([{"id": ids[1], "capacity": {"value": 8}}])).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("/entities/{}", ids[1])).await.json();
    assert_eq!(e["capacity"]["value"], 8);
    assert_eq!(e["name"]["value"], "苫小牧市民会館", "merge keeps the other attributes");

    // Delete, with one unknown.
    let r = s.post("/entityOperations/delete", &json!([ids[0], ids[1], "urn:ngsi-ld:Nope:1"])).await;
    assert_eq!(r.status, 207);
    assert_eq!(r.json()["success"], json!([ids[0], ids[1]]));
    assert_eq!(s.get(&format!("/entities/{}", ids[0])).await.status, 404);

    s.post("/entityOperations/create", &json!([])).await.assert_problem(400, "BadRequestData");
    s.post("/entityOperations/create", &json!({})).await.assert_problem(400, "InvalidRequest");
}

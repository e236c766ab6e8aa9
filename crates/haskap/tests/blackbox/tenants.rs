//! Tenants are hard walls.

use serde_json::json;

use crate::util::{Server, shelter};

#[tokio::test]
async fn tenants_are_separate() {
    let s = Server::start().await;
    let id = "urn:ngsi-ld:EvacuationShelter:shiraoi-1";
    let r = s.call("POST", "/entities", Some(&shelter(id)), &[("NGSILD-Tenant", "shiraoi")]).await;
    assert_eq!(r.status, 201);
    assert_eq!(s.call("GET", &format!("/entities/{id}"), None, &[("NGSILD-Tenant", "shiraoi")]).await.status, 200);
    s.get(&format!("/entities/{id}")).await.assert_problem(404, "ResourceNotFound");
    assert_eq!(s.get("/entities?type=EvacuationShelter").await.json(), json!([]));
    s.call("GET", &format!("/entities/{id}"), None, &[("NGSILD-Tenant", "atsuma")])
        .await
        .assert_problem(404, "NonexistentTenant");
    s.call("GET", "/entities?type=EvacuationShelter", None, &[("NGSILD-Tenant", "atsuma")])
        .await
        .assert_problem(404, "NonexistentTenant");
    s.call("GET", "/entities?type=X", None, &[("NGSILD-Tenant", "bad tenant!")])
        .await
        .assert_problem(400, "BadRequestData");
    // The same id can live in two tenants independently.
    assert_eq!(s.post("/entities", &shelter(id)).await.status, 201);
    s.call("DELETE", &format!("/entities/{id}"), None, &[("NGSILD-Tenant", "shiraoi")]).await;
    assert_eq!(s.get(&format!("/entities/{id}")).await.status, 200);
}

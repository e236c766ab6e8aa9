//! Queries: every answer is compared with an independent computation over the loaded data.

use serde_json::{Value, json};

use crate::util::Server;

struct Row {
    id: String,
    ty: &'static str,
    capacity: i64,
    open: bool,
    district: &'static str,
    scope: &'static str,
}

/// The independent computation of a query's answer.
type Predicate = Box<dyn Fn(&Row) -> bool>;

fn rows() -> Vec<Row> {
    let districts = ["east", "central", "west"];
    (0..300)
        .map(|i| Row {
            id: format!("urn:ngsi-ld:Facility:{i:04}"),
            ty: if i % 4 == 0 { "Park" } else { "Shelter" },
            capacity: (i * 37) % 500,
            open: i % 3 == 0,
            district: districts[i as usize % 3],
            scope: if i % 2 == 0 { "/Tomakomai/East" } else { "/Tomakomai/West" },
        })
        .collect()
}

async fn load(s: &Server) -> Vec<Row> {
    let rows = rows();
    let batch: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "type": r.ty, "scope": r.scope,
                "capacity": {"type": "Property", "value": r.capacity, "unitCode": "C62"},
                "open": r.open,
                "district": {"type": "Relationship", "object": format!("urn:ngsi-ld:District:{}", r.district)},
                "address": {"type": "Property", "value": {"district": r.district, "city": "苫小牧市"}}
            })
        })
        .collect();
    assert_eq!(s.post("/entityOperations/create", &json!(batch)).await.status, 201);
    rows
}

async fn ids(s: &Server, query: &str) -> Vec<String> {
    let r = s.get(&format!("/entities?{query}&limit=1000&options=keyValues")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn expect(rows: &[Row], f: impl Fn(&Row) -> bool) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().filter(|r| f(r)).map(|r| r.id.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn queries_match_an_independent_computation() {
    let s = Server::start().await;
    let rows = load(&s).await;
    let cases: Vec<(&str, Predicate)> = vec![
        ("type=Shelter", Box::new(|r| r.ty == "Shelter")),
        ("type=Shelter,Park", Box::new(|_| true)),
        ("type=Park&q=capacity>250", Box::new(|r| r.ty == "Park" && r.capacity > 250)),
        (
            "type=Shelter&q=capacity%3E%3D100%3Bcapacity%3C200",
            Box::new(|r| r.ty == "Shelter" && (100..200).contains(&r.capacity)),
        ),
        ("type=Shelter&q=capacity==100..200", Box::new(|r| r.ty == "Shelter" && (100..=200).contains(&r.capacity))),
        ("type=Shelter&q=open==true%7Ccapacity<10", Box::new(|r| r.ty == "Shelter" && (r.open || r.capacity < 10))),
        ("type=Shelter&q=district==urn:ngsi-ld:District:west", Box::new(|r| r.ty == "Shelter" && r.district == "west")),
        ("type=Shelter&q=address[district]==%22central%22", Box::new(|r| r.ty == "Shelter" && r.district == "central")),
        ("type=Park&q=capacity!=0", Box::new(|r| r.ty == "Park" && r.capacity != 0)),
        ("type=Park&q=capacity.unitCode==%22C62%22", Box::new(|r| r.ty == "Park")),
        (
            "idPattern=.*:00[0-4]%5B0-9%5D$",
            Box::new(|r| r.id[r.id.len() - 3..].starts_with('0') && &r.id[r.id.len() - 2..r.id.len() - 1] <= "4"),
        ),
        ("type=Park&scopeQ=/Tomakomai/East", Box::new(|r| r.ty == "Park" && r.scope == "/Tomakomai/East")),
        ("type=Shelter&scopeQ=/Tomakomai/%23", Box::new(|r| r.ty == "Shelter")),
        ("attrs=capacity&q=capacity<5", Box::new(|r| r.capacity < 5)),
    ];
    for (query, f) in cases {
        assert_eq!(ids(&s, query).await, expect(&rows, f), "{query}");
    }
}

#[tokio::test]
async fn paging_count_and_post_query() {
    let s = Server::start().await;
    let rows = load(&s).await;
    let all = expect(&rows, |r| r.ty == "Shelter");
    let mut paged = Vec::new();
    for offset in (0..all.len()).step_by(7) {
        let r = s.get(&format!("/entities?type=Shelter&limit=7&offset={offset}&count=true")).await;
        assert_eq!(r.header("ngsild-results-count").unwrap(), all.len().to_string());
        paged.extend(r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(paged, all, "paging repeats or skips nothing");
    let r = s
        .post(
            "/entityOperations/query?limit=1000",
            &json!({"type": "Query", "entities": [{"type": "Shelter"}], "q": "capacity>400"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got: Vec<String> = r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, expect(&rows, |r| r.ty == "Shelter" && r.capacity > 400));
    let r = s.get("/entities?type=Shelter&count=true&limit=0").await;
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.header("ngsild-results-count").unwrap(), all.len().to_string());
}

#[tokio::test]
async fn bad_queries_say_where() {
    let s = Server::start().await;
    let r = s.get("/entities?type=Shelter&q=capacity%3E%3E1").await;
    r.assert_problem(400, "BadRequestData");
    assert!(r.json()["detail"].as_str().unwrap().contains("position 9"), "{}", r.text);
    s.get("/entities?type=(Shelter").await.assert_problem(400, "BadRequestData");
    s.get("/entities?idPattern=(").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=Shelter&limit=-1").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=Shelter&limit=abc").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=Shelter&options=fancy").await.assert_problem(400, "BadRequestData");
}

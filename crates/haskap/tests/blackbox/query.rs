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
    s.get("/entities?type=Shelter&options=fancy").await.assert_problem(400, "InvalidRequest");
    s.get("/entities?id=urn:ngsi-ld:Facility:0001").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=Shelter&id=notanuri").await.assert_problem(400, "BadRequestData");
    s.get("/entities?attrs=id,type").await.assert_problem(400, "BadRequestData");
    s.get("/entities?idPattern=abc**").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=A&pick=id;name").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=A&pick=name&omit=name").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=A&join=sideways").await.assert_problem(400, "BadRequestData");
    s.get("/entities?type=A&orderBy=name;up").await.assert_problem(400, "BadRequestData");
}

#[tokio::test]
async fn projections_joins_order_and_datasets() {
    let s = Server::start().await;
    let city = json!({"id": "urn:ngsi-ld:City:tomakomai", "type": "City", "name": "苫小牧市", "population": 168000});
    let b = |i: u32, name: &str| {
        json!({"id": format!("urn:ngsi-ld:Building:{i}"), "type": "Building", "name": [
            {"type": "Property", "value": name},
            {"type": "Property", "value": format!("{name} (en)"), "datasetId": "urn:ngsi-ld:Dataset:en"}],
          "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:tomakomai"}})
    };
    let batch = json!([city, b(2, "B"), b(1, "A"), b(3, "C")]);
    assert_eq!(s.post("/entityOperations/create", &batch).await.status, 201);
    for (q, want) in
        [("orderBy=id", ["1", "2", "3"]), ("orderBy=id;desc", ["3", "2", "1"]), ("orderBy=name", ["1", "2", "3"])]
    {
        let r = s.get(&format!("/entities?type=Building&{q}")).await.json();
        let got: Vec<String> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().rsplit(':').next().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{q}");
    }
    let inline = s.get("/entities?type=Building&join=inline&pick=id,locatedAt{name}&orderBy=id").await.json();
    assert_eq!(
        inline[0],
        json!({"id": "urn:ngsi-ld:Building:1", "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:tomakomai", "entity": {"name": {"type": "Property", "value": "苫小牧市"}}}})
    );
    let flat = s.get("/entities?type=Building&join=flat&options=keyValues&omit=name").await.json();
    assert_eq!(flat.as_array().unwrap().len(), 4, "three buildings and their city once");
    let picked = s.get("/entities?type=Building,City&pick=population").await.json();
    assert_eq!(
        picked,
        json!([{"population": {"type": "Property", "value": 168000}}]),
        "entities left empty by pick are dropped"
    );
    let en = s.get("/entities/urn:ngsi-ld:Building:1?datasetId=urn:ngsi-ld:Dataset:en").await.json();
    assert_eq!(en["name"]["value"], "A (en)");
    assert!(en.get("locatedAt").is_none());
    let default = s.get("/entities/urn:ngsi-ld:Building:1?datasetId=@none").await.json();
    assert_eq!(default["name"], json!({"type": "Property", "value": "A"}));
}

fn haversine(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2) = (a.1.to_radians(), b.1.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.0 - a.0).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * h.sqrt().asin()
}

#[tokio::test]
async fn geo_queries_match_an_independent_computation() {
    let s = Server::start().await;
    // A grid of sites around Tomakomai city hall (141.6036, 42.6342), ~200 m apart.
    let mut sites = Vec::new();
    for i in 0..20 {
        for j in 0..20 {
            let lon = 141.55 + i as f64 * 0.0025;
            let lat = 42.60 + j as f64 * 0.0018;
            sites.push((format!("urn:ngsi-ld:EvacuationSite:{i:02}{j:02}"), lon, lat));
        }
    }
    let batch: Vec<Value> = sites
        .iter()
        .map(|(id, lon, lat)| json!({"id": id, "type": "EvacuationSite", "location": {"type": "Point", "coordinates": [lon, lat]}}))
        .collect();
    assert_eq!(s.post("/entityOperations/create", &json!(batch)).await.status, 201);
    let hall = (141.6036, 42.6342);
    for max in [300.0, 1000.0, 2500.0] {
        let r = s.get(&format!("/entities?type=EvacuationSite&georel=near;maxDistance=={max}&geometry=Point&coordinates=[141.6036,42.6342]&limit=1000&count=true")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let got: Vec<String> =
            r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
        let mut want: Vec<(f64, String)> = sites
            .iter()
            .map(|(id, lon, lat)| (haversine(hall, (*lon, *lat)), id.clone()))
            .filter(|(d, _)| *d <= max)
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Same set, nearest first (ties may come in any order).
        let mut a = got.clone();
        a.sort();
        let mut b: Vec<String> = want.iter().map(|w| w.1.clone()).collect();
        b.sort();
        assert_eq!(a, b, "near {max}");
        assert_eq!(got.first(), want.first().map(|w| &w.1), "nearest first");
        assert_eq!(r.header("ngsild-results-count").unwrap(), want.len().to_string());
    }
    let poly = "[[[141.5612,42.6109],[141.5788,42.6109],[141.5788,42.6191],[141.5612,42.6191],[141.5612,42.6109]]]";
    let r = s
        .get(&format!("/entities?type=EvacuationSite&georel=within&geometry=Polygon&coordinates={poly}&limit=1000"))
        .await;
    let got = r.json().as_array().unwrap().len();
    let want = sites
        .iter()
        .filter(|(_, lon, lat)| (141.5612..=141.5788).contains(lon) && (42.6109..=42.6191).contains(lat))
        .count();
    assert_eq!(got, want, "within");
    let geo = s
        .call(
            "GET",
            "/entities?type=EvacuationSite&georel=near;maxDistance==1000&geometry=Point&coordinates=[141.6036,42.6342]",
            None,
            &[("Accept", "application/geo+json")],
        )
        .await;
    assert_eq!(geo.header("content-type").unwrap(), "application/geo+json");
    assert_eq!(geo.json()["type"], "FeatureCollection");
    assert_eq!(geo.json()["features"][0]["geometry"]["type"], "Point", "{}", geo.text);
    s.get("/entities?type=EvacuationSite&georel=near&geometry=Point&coordinates=[141.6,42.6]")
        .await
        .assert_problem(400, "BadRequestData");
    s.get("/entities?type=EvacuationSite&georel=within&geometry=Point&coordinates=[141.6")
        .await
        .assert_problem(400, "BadRequestData");
    s.get("/entities?type=EvacuationSite&georel=within").await.assert_problem(400, "BadRequestData");
}

#[tokio::test]
async fn discovery_reflects_live_entities() {
    let s = Server::start().await;
    let rows = load(&s).await;
    let parks = rows.iter().filter(|r| r.ty == "Park").count();
    let types = s.get("/types").await.json();
    assert_eq!(types["type"], "EntityTypeList");
    assert_eq!(types["typeList"], json!(["Park", "Shelter"]));
    let details = s.get("/types?details=true").await.json();
    assert_eq!(details[0]["typeName"], "Park");
    assert_eq!(details[0]["attributeNames"], json!(["address", "capacity", "district", "open"]));
    let info = s.get("/types/Park").await.json();
    assert_eq!(info["entityCount"], parks);
    assert_eq!(
        info["attributeDetails"].as_array().unwrap().iter().find(|a| a["attributeName"] == "district").unwrap()["attributeTypes"],
        json!(["Relationship"])
    );
    s.get("/types/Nothing").await.assert_problem(404, "ResourceNotFound");
    let attrs = s.get("/attributes").await.json();
    assert_eq!(attrs["attributeList"], json!(["address", "capacity", "district", "open"]));
    let cap = s.get("/attributes/capacity").await.json();
    assert_eq!(cap["attributeCount"], 300);
    assert_eq!(cap["typeNames"], json!(["Park", "Shelter"]));
    assert_eq!(cap["attributeTypes"], json!(["Property"]));
    s.get("/attributes/nothing").await.assert_problem(404, "ResourceNotFound");
    // Deleting every Park removes the type.
    let ids: Vec<String> = rows.iter().filter(|r| r.ty == "Park").map(|r| r.id.clone()).collect();
    assert_eq!(s.post("/entityOperations/delete", &json!(ids)).await.status, 204);
    assert_eq!(s.get("/types").await.json()["typeList"], json!(["Shelter"]));
}

/// Near queries measure points from the index and other geometries from the entity: both kinds
/// together come back nearest first, with minDistance and maxDistance applied to each.
#[tokio::test]
async fn near_mixes_points_and_other_geometries() {
    let s = Server::start().await;
    let point = |id: &str, lon: f64, lat: f64| json!({"id": id, "type": "Site", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}});
    let square = json!({"id": "urn:x:area", "type": "Site", "location": {"type": "GeoProperty", "value": {"type": "Polygon",
        "coordinates": [[[141.599, 42.629], [141.601, 42.629], [141.601, 42.631], [141.599, 42.631], [141.599, 42.629]]]}}});
    let batch = json!([
        point("urn:x:100m", 141.6012, 42.63),
        point("urn:x:400m", 141.6049, 42.63),
        point("urn:x:far", 141.7, 42.7),
        square
    ]);
    assert_eq!(s.post("/entityOperations/create", &batch).await.status, 201);
    let near = |rel: &str| {
        format!("/entities?type=Site&georel=near;{rel}&geometry=Point&coordinates=[141.6,42.63]&options=keyValues")
    };
    let ids = |r: crate::util::Resp| -> Vec<String> {
        r.json().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(s.get(&near("maxDistance==1000")).await), ["urn:x:area", "urn:x:100m", "urn:x:400m"]);
    assert_eq!(ids(s.get(&near("maxDistance==1000;minDistance==50")).await), ["urn:x:100m", "urn:x:400m"]);
    // Around urn:x:400m, within 310 m, the area is out of reach: only points, measured from the
    // index alone, by the same rules (urn:x:100m is ~303 m away).
    let around =
        |rel: &str| format!("/entities?type=Site&georel=near;{rel}&geometry=Point&coordinates=[141.6049,42.63]");
    assert_eq!(ids(s.get(&around("maxDistance==310")).await), ["urn:x:400m", "urn:x:100m"]);
    assert_eq!(ids(s.get(&around("maxDistance==310;minDistance==10")).await), ["urn:x:100m"]);
    assert_eq!(ids(s.get(&format!("{}&idPattern=.*400m$", around("maxDistance==310"))).await), ["urn:x:400m"]);
}

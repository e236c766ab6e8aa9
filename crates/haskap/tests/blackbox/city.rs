//! The city layer end to end: `haskap import` against a running broker, and `serve --demo`.

use std::process::Command;

use serde_json::{Value, json};

use crate::util::Server;

const CITY: &str = "<https://w3id.org/haskap/context/city/v1.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"";

fn fixture(name: &str) -> String {
    format!("{}/../city/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `haskap import` and gives its exit status, stdout and report.
fn import(s: &Server, args: &[&str]) -> (i32, String, Value) {
    let report = s.dir.path().join(format!("report-{}.json", rand_suffix()));
    let out = Command::new(env!("CARGO_BIN_EXE_haskap"))
        .arg("import")
        .args(args)
        .args(["--broker", &s.base, "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = std::fs::read_to_string(&report).map(|r| serde_json::from_str(&r).unwrap()).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), stdout, report)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn entity(s: &Server, id: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("Link", CITY)];
    if let Some(t) = tenant {
        headers.push(("NGSILD-Tenant", t));
    }
    let r = s.call("GET", &format!("/entities/{id}?options=keyValues,sysAttrs"), None, &headers).await;
    (r.status, if r.status == 200 { r.json() } else { Value::Null })
}

#[tokio::test]
async fn import_writes_the_good_rows_reports_the_bad_ones_and_changes_nothing_the_second_time() {
    let s = Server::start().await;
    let file = fixture("evacuation_space_new_utf8.csv");
    let (code, stdout, report) = import(&s, &[&file]);
    assert_eq!(code, 1, "rows were rejected: {stdout}");
    assert_eq!((report["rows"].as_u64(), report["accepted"].as_u64()), (Some(6), Some(3)), "{report}");
    assert_eq!(report["rejected"][0], json!({"line": 4, "column": "緯度", "reason": "no coordinates"}));
    assert_eq!(report["written"], json!({"created": 3, "updated": 0, "unchanged": 0}));
    assert!(stdout.contains("line 5 想定収容人数 \"約600\": not a whole number"), "{stdout}");

    let (status, hall) = entity(&s, "urn:ngsi-ld:EvacuationSite:012131-0001", None).await;
    assert_eq!(status, 200);
    assert_eq!(hall["maxCapacity"], 1200);
    assert_eq!(hall["hazardTypes"], json!(["flood", "earthquake", "greatFire", "eruption"]));
    assert_eq!(hall["location"], json!({"type": "Point", "coordinates": [141.6036, 42.6342]}));
    // The datamodels.jp terms keep their datamodels.jp IRIs.
    let r = s
        .call("GET", "/entities/urn:ngsi-ld:EvacuationSite:012131-0001?options=keyValues", None, &[(
            "Link",
            "<https://datamodels.jp/context/disaster/v1.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
        )])
        .await;
    assert_eq!(r.json()["maxCapacity"], 1200, "{}", r.text);

    let (code, _, again) = import(&s, &[&file]);
    assert_eq!(code, 1);
    assert_eq!(again["written"], json!({"created": 0, "updated": 0, "unchanged": 3}));
    let (_, hall_again) = entity(&s, "urn:ngsi-ld:EvacuationSite:012131-0001", None).await;
    assert_eq!(hall_again["modifiedAt"], hall["modifiedAt"], "re-importing changed nothing");
}

#[tokio::test]
async fn strict_dry_run_and_tenant() {
    let s = Server::start().await;
    // --strict: one bad row, nothing written.
    let (code, stdout, report) = import(&s, &[&fixture("aed_old_sjis.csv"), "--strict", "--tenant", "strict"]);
    assert_eq!(code, 1);
    assert!(report.get("written").is_none() && stdout.contains("--strict: nothing written"), "{stdout}");
    assert_eq!(entity(&s, "urn:ngsi-ld:AED:012131-A001", Some("strict")).await.0, 404);

    // --dry-run: checked, nothing written, exit 0 when every row is good.
    let file = fixture("public_facility_old.csv");
    let (code, _, report) = import(&s, &[&file, "--dry-run"]);
    assert_eq!((code, report["accepted"].as_u64()), (0, Some(1)));
    assert_eq!(entity(&s, "urn:ngsi-ld:PublicFacility:012131-F001", None).await.0, 404);

    // Into a tenant, with the dataset named explicitly.
    let (code, _, report) = import(&s, &[&file, "--tenant", "shiraoi", "--dataset", "public_facility"]);
    assert_eq!((code, report["written"]["created"].as_u64()), (0, Some(1)));
    let (status, library) = entity(&s, "urn:ngsi-ld:PublicFacility:012131-F001", Some("shiraoi")).await;
    assert_eq!((status, &library["alternateName"]), (200, &json!("中央図書館")));

    // A file that is no dataset: exit 2, nothing written.
    let junk = s.dir.path().join("junk.csv");
    std::fs::write(&junk, "a,b\n1,2\n").unwrap();
    assert_eq!(import(&s, &[junk.to_str().unwrap()]).0, 2);
}

#[tokio::test]
async fn demo_dataset_loads_once_and_the_dashboard_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir, &["--demo"]).await;
    let count = |tenant: &'static str, ty: &'static str| {
        let s = &s;
        async move {
            let mut headers = vec![("Link", CITY)];
            if !tenant.is_empty() {
                headers.push(("NGSILD-Tenant", tenant));
            }
            let r = s.call("GET", &format!("/entities?type={ty}&count=true&limit=0"), None, &headers).await;
            r.header("NGSILD-Results-Count").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0)
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count("mukawa", "AdministrativeArea").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the demo dataset did not load");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count("", "KeyPerformanceIndicator").await, 5);
    assert!(count("", "EvacuationSite").await >= 30);
    assert_eq!(count("shiraoi", "EvacuationSite").await, 3);

    // A city's change to demo data survives a restart: the demo is loaded once only.
    let id = "urn:ngsi-ld:Alert:012131-snow-advisory";
    assert_eq!(s.call("DELETE", &format!("/entities/{id}"), None, &[]).await.status, 204);
    s.kill();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Server::start_in(dir, &["--demo"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(s.call("GET", &format!("/entities/{id}"), None, &[]).await.status, 404);

    let page = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("/dashboard/app.js"));
    let config = s.client.get(format!("{}/dashboard/config.json", s.base)).send().await.unwrap();
    let config: Value = serde_json::from_str(&config.text().await.unwrap()).unwrap();
    assert_eq!(config["tenants"].as_array().map(Vec::len), Some(5));
    let ctx = s.client.get(format!("{}/haskap/v1/contexts/city/v1.jsonld", s.base)).send().await.unwrap();
    assert_eq!(ctx.status(), 200);
    assert!(ctx.text().await.unwrap().contains("\"AED\": \"city:AED\""));
}

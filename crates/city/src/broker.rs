//! Writing entities to any NGSI-LD broker through the standard API, idempotently: each chunk of
//! entities is first looked up (`POST /entityOperations/query`), and only the new and the changed
//! ones are sent (`POST /entityOperations/upsert`), so writing the same data twice changes nothing.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// Entities per lookup and per upsert.
pub const CHUNK: usize = 500;

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached or the connection failed.
    #[error("cannot reach the broker at {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The broker answered with an error.
    #[error("the broker answered {status} to {what}: {body}")]
    Rejected {
        /// The request.
        what: &'static str,
        /// The status.
        status: u16,
        /// The body of the answer.
        body: String,
    },
}

/// Counts of a [`Broker::sync`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Entities that did not exist.
    pub created: usize,
    /// Entities that existed with other content.
    pub updated: usize,
    /// Entities already as given.
    pub unchanged: usize,
}

/// An NGSI-LD broker, seen from a client.
#[derive(Debug, Clone)]
pub struct Broker {
    http: reqwest::Client,
    base: String,
    tenant: Option<String>,
    context: String,
}

impl Broker {
    /// The broker at `base` (e.g. `http://127.0.0.1:1026`), writing to `tenant` (None: the default
    /// tenant) with the @context `context`.
    pub fn new(base: &str, tenant: Option<&str>, context: &str) -> Broker {
        Broker {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            tenant: tenant.filter(|t| !t.is_empty()).map(str::to_string),
            context: context.to_string(),
        }
    }

    /// Makes the broker hold `entities` (normalized, without @context): creates the missing ones,
    /// replaces the changed ones, leaves the others alone. `progress` is told how many are done.
    pub async fn sync(&self, entities: &[Value], mut progress: impl FnMut(usize)) -> Result<SyncCounts, BrokerError> {
        let mut counts = SyncCounts::default();
        let mut done = 0;
        for chunk in entities.chunks(CHUNK) {
            let existing = self.lookup(chunk).await?;
            let mut changed = Vec::new();
            for e in chunk {
                match existing.get(e["id"].as_str().unwrap_or_default()) {
                    None => {
                        counts.created += 1;
                        changed.push(e);
                    }
                    Some(old) if same(old, e) => counts.unchanged += 1,
                    Some(_) => {
                        counts.updated += 1;
                        changed.push(e);
                    }
                }
            }
            if !changed.is_empty() {
                self.upsert(&changed).await?;
            }
            done += chunk.len();
            progress(done);
        }
        Ok(counts)
    }

    async fn lookup(&self, chunk: &[Value]) -> Result<HashMap<String, Value>, BrokerError> {
        let selectors: Vec<Value> = chunk.iter().map(|e| json!({"id": e["id"], "type": e["type"]})).collect();
        let body = json!({"type": "Query", "entities": selectors});
        let url = format!("{}/ngsi-ld/v1/entityOperations/query?limit={}", self.base, chunk.len());
        let link =
            format!("<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"", self.context);
        let req = self
            .with_tenant(self.http.post(&url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("Link", link)
            .body(body.to_string());
        let (status, found) = self.send(req, &url).await?;
        // A tenant that does not exist yet holds nothing.
        if status == 404 {
            return Ok(HashMap::new());
        }
        let found: Vec<Value> = serde_json::from_str(&succeeded("the lookup", status, found)?).unwrap_or_default();
        Ok(found.into_iter().filter_map(|e| Some((e["id"].as_str()?.to_string(), e))).collect())
    }

    async fn upsert(&self, entities: &[&Value]) -> Result<(), BrokerError> {
        let body: Vec<Value> = entities
            .iter()
            .map(|e| {
                let mut m = e.as_object().cloned().unwrap_or_default();
                m.insert("@context".into(), Value::String(self.context.clone()));
                Value::Object(m)
            })
            .collect();
        let url = format!("{}/ngsi-ld/v1/entityOperations/upsert", self.base);
        let req = self
            .with_tenant(self.http.post(&url))
            .header("Content-Type", "application/ld+json")
            .body(Value::Array(body).to_string());
        let (status, resp) = self.send(req, &url).await?;
        let resp = succeeded("the upsert", status, resp)?;
        // 201/204 are complete success; a 207 lists the entities that failed.
        if let Ok(result) = serde_json::from_str::<Value>(&resp)
            && result["errors"].as_array().is_some_and(|e| !e.is_empty())
        {
            return Err(BrokerError::Rejected { what: "the upsert", status: 207, body: result["errors"].to_string() });
        }
        Ok(())
    }

    fn with_tenant(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.tenant {
            Some(t) => req.header("NGSILD-Tenant", t),
            None => req,
        }
    }

    /// Sends a request, giving the status and body of the answer.
    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<(u16, String), BrokerError> {
        let unreachable = |source| BrokerError::Unreachable { url: url.to_string(), source };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(unreachable)?))
    }
}

/// The body of a successful (2xx) answer to `what`, else the broker's rejection.
fn succeeded(what: &'static str, status: u16, body: String) -> Result<String, BrokerError> {
    if (200..300).contains(&status) { Ok(body) } else { Err(BrokerError::Rejected { what, status, body }) }
}

/// Whether the broker's `old` entity holds exactly the attributes of `new`.
fn same(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return false };
    let attrs = |m: &Map<String, Value>| m.keys().filter(|k| !matches!(k.as_str(), "id" | "type" | "@context")).count();
    attrs(old) == attrs(new)
        && new
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "@context"))
            .all(|(k, v)| old.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sameness_ignores_id_type_and_context_but_not_attributes() {
        let a = json!({"id": "x", "type": "T", "n": {"type": "Property", "value": 1}});
        let b = json!({"id": "x", "type": "T", "@context": "c", "n": {"type": "Property", "value": 1}});
        assert!(same(&a, &b));
        assert!(!same(&a, &json!({"id": "x", "type": "T", "n": {"type": "Property", "value": 2}})));
        assert!(!same(&a, &json!({"id": "x", "type": "T"})));
    }
}

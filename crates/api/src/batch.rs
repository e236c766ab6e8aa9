//! `/ngsi-ld/v1/entityOperations/{create,upsert,update,delete,merge}`: batch operations.
//!
//! Every entity of a batch is validated first, then all of them are applied in one writer
//! transaction, in order, each all-or-nothing; the answer lists successes and per-entity errors.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use haskap_model::jsonld::ActiveContext;
use haskap_model::ops;
use haskap_model::parse::Parser;
use haskap_model::validate::now_micros;
use haskap_model::{ErrorKind, NgsiError};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, problem_body};
use crate::request::{BodyType, Raw, Req, Spec};
use crate::response::{no_content, plain_json};

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Upsert { replace: bool },
    Update { no_overwrite: bool },
    Merge,
    Delete,
}

/// Handles `POST /entityOperations/{op}`.
pub async fn dispatch(Raw { app, method, uri, headers, body }: Raw) -> ApiResult<Response> {
    let op = uri.path().strip_prefix("/ngsi-ld/v1/entityOperations/").unwrap_or("").to_string();
    run(&app, &op, &method, &uri, &headers, body).await
}

async fn run(
    app: &AppState,
    op: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if op == "query" {
        if *method != Method::POST {
            return Err(ApiError::not_allowed("POST"));
        }
        let spec = Spec {
            params: &[
                "limit",
                "offset",
                "count",
                "options",
                "format",
                "local",
                "lang",
                "pick",
                "omit",
                "join",
                "joinLevel",
                "orderBy",
            ],
            geo: true,
            body_context: true,
        };
        let req = Req::parse(app, method, headers, uri.query(), body, spec).await?;
        return crate::query::query_post(req);
    }
    if !matches!(op, "create" | "upsert" | "update" | "delete" | "merge") {
        return Err(ApiError(NgsiError::not_found(format!("no batch operation {op:?}"))));
    }
    if *method != Method::POST {
        return Err(ApiError::not_allowed("POST"));
    }
    let req = Req::parse(
        app,
        method,
        headers,
        uri.query(),
        body,
        Spec { params: &["options", "local"], geo: false, body_context: false },
    )
    .await?;
    let op = operation(op, &req.options())?;
    let items =
        req.json().as_array().ok_or_else(|| ApiError(NgsiError::invalid("a batch body must be a JSON array")))?;
    if items.is_empty() {
        return Err(ApiError(NgsiError::bad_data("the batch is empty")));
    }
    if items.len() > app.config.max_batch {
        return Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the batch has {} entities, more than the limit of {}", items.len(), app.config.max_batch),
        ));
    }
    let now = now_micros();
    let mut prepared: Vec<Result<Prepared, (String, NgsiError)>> = Vec::with_capacity(items.len());
    for item in items {
        prepared.push(prepare(&req, op, item, now).await);
    }
    let tenant = req.tenant.clone();
    let limits = req.app.config.limits;
    let outcome: Vec<Result<(String, bool), (String, NgsiError)>> = req
        .app
        .store
        .write(move |txn| {
            let mut out = Vec::with_capacity(prepared.len());
            for p in prepared {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                let id = p.id.clone();
                let cur = txn.get(&tenant, &id);
                let cur = cur.as_deref();
                // (change, created, a per-entity error to report although the change applies)
                let res: Result<(ops::Change, bool, Option<NgsiError>), NgsiError> = match p.input {
                    Input::Delete => ops::delete(cur, &id).map(|c| (c, false, None)),
                    Input::Entity(e) if op == Op::Create => ops::create(cur, e).map(|c| (c, true, None)),
                    Input::Entity(e) => {
                        ops::upsert(cur, e, matches!(op, Op::Upsert { replace: true }), now).map(|(c, n)| (c, n, None))
                    }
                    Input::Fragment(f) => {
                        ops::append(cur, &id, f, matches!(op, Op::Update { no_overwrite: true }), now).map(|(c, r)| {
                            let kept = (!r.not_updated.is_empty()).then(|| {
                                let names: Vec<&str> = r.not_updated.iter().map(|(n, _)| n.as_str()).collect();
                                NgsiError::bad_data(format!(
                                    "attributes not overwritten (noOverwrite): {}",
                                    names.join(", ")
                                ))
                            });
                            (c, false, kept)
                        })
                    }
                    Input::Merge(body) => {
                        ops::merge(cur, &id, &body, &Parser { ctx: &p.ctx, now, limits }).map(|c| (c, false, None))
                    }
                };
                match res {
                    Ok((change, created, report)) => {
                        txn.apply(&tenant, &id, change);
                        out.push(match report {
                            None => Ok((id, created)),
                            Some(e) => Err((id, e)),
                        });
                    }
                    Err(e) => out.push(Err((id, e))),
                }
            }
            out
        })
        .await?;
    let mut success: Vec<String> = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for r in outcome {
        match r {
            Ok((id, was_created)) => {
                if was_created && !created.contains(&id) {
                    created.push(id.clone());
                }
                if !success.contains(&id) {
                    success.push(id);
                }
            }
            Err((id, e)) => errors.push(json!({"entityId": id, "error": problem_body(&e)})),
        }
    }
    if !errors.is_empty() {
        return Ok(plain_json(StatusCode::MULTI_STATUS, &json!({"success": success, "errors": errors})));
    }
    match op {
        Op::Create => Ok(plain_json(StatusCode::CREATED, &json!(success))),
        Op::Upsert { .. } if !created.is_empty() => Ok(plain_json(StatusCode::CREATED, &json!(created))),
        _ => Ok(no_content()),
    }
}

/// The operation `name` with `options`: only the options the standard gives it (`replace` or
/// `update` for upsert, `noOverwrite` for update, none for the others), one of each at most.
fn operation(name: &str, options: &[&str]) -> ApiResult<Op> {
    let allowed: &[&str] = match name {
        "upsert" => &["replace", "update"],
        "update" => &["noOverwrite"],
        _ => &[],
    };
    if let Some(o) = options.iter().find(|o| !allowed.contains(o)) {
        let known = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
        return Err(ApiError(NgsiError::bad_data(format!(
            "unknown option {} for batch {name}; its options are: {known}",
            haskap_model::parse::shorten(o)
        ))));
    }
    if options.contains(&"replace") && options.contains(&"update") {
        return Err(ApiError(NgsiError::bad_data("options replace and update contradict each other")));
    }
    Ok(match name {
        "create" => Op::Create,
        "upsert" => Op::Upsert { replace: !options.contains(&"update") },
        "update" => Op::Update { no_overwrite: options.contains(&"noOverwrite") },
        "merge" => Op::Merge,
        _ => Op::Delete,
    })
}

/// One validated batch item, parsed outside the writer.
struct Prepared {
    id: String,
    ctx: Arc<ActiveContext>,
    input: Input,
}

/// What a batch item asks for, ready to apply.
enum Input {
    Delete,
    Entity(haskap_model::Entity),
    Fragment(haskap_model::parse::Fragment),
    /// Merges need the current entity to parse against, so they keep the body.
    Merge(Value),
}

async fn prepare(req: &Req, op: Op, item: &Value, now: i64) -> Result<Prepared, (String, NgsiError)> {
    let limits = &req.app.config.limits;
    if op == Op::Delete {
        let id = item
            .as_str()
            .ok_or_else(|| (item.to_string(), NgsiError::bad_data("batch delete takes an array of entity ids")))?;
        limits.check_id(id, "entity id").map_err(|e| (id.to_string(), e))?;
        return Ok(Prepared { id: id.to_string(), ctx: req.ctx.clone(), input: Input::Delete });
    }
    let id = item.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let fail = |e: NgsiError| (id.clone(), e);
    let obj = item.as_object().ok_or_else(|| fail(NgsiError::bad_data("each batch item must be an entity object")))?;
    if id.is_empty() {
        return Err(fail(NgsiError::bad_data("the entity has no \"id\"")));
    }
    limits.check_id(&id, "entity id").map_err(fail)?;
    let ctx = match (req.body_type, obj.get("@context")) {
        (Some(BodyType::Json), Some(_)) => {
            return Err(fail(NgsiError::bad_data("the entity has an @context but Content-Type is application/json")));
        }
        (Some(BodyType::JsonLd), None) => {
            return Err(fail(NgsiError::bad_data(
                "Content-Type is application/ld+json but the entity has no @context",
            )));
        }
        (_, Some(c)) => {
            crate::request::check_context_urls(c, limits).map_err(|e| fail(e.0))?;
            req.app.contexts.resolve(&req.tenant, c).await.map_err(fail)?
        }
        (_, None) => req.ctx.clone(),
    };
    let parser = Parser { ctx: &ctx, now, limits: *limits };
    let input = match op {
        Op::Create | Op::Upsert { .. } => Input::Entity(parser.entity(item).map_err(fail)?),
        Op::Update { .. } => Input::Fragment(parser.fragment(item, true).map_err(fail)?),
        _ => {
            parser.fragment(item, true).map_err(fail)?;
            Input::Merge(item.clone())
        }
    };
    Ok(Prepared { id, ctx, input })
}

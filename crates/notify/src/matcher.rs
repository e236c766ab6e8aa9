//! Matching entity changes to subscriptions, fast: each subscription is compiled once into a
//! [`Matcher`] (type expressions parsed and expanded, q compiled, idPattern and geoQ built,
//! expiry parsed), and a tenant's matchers are indexed by entity type ([`Index`]), so a change is
//! only tried against the subscriptions that can select its entity.

use std::collections::HashMap;
use std::sync::Arc;

use haskap_model::jsonld::ActiveContext;
use haskap_model::validate::parse_datetime;
use haskap_model::{Attribute, Entity};
use haskap_query::eval::Compiled;
use haskap_query::geo::GeoQuery;
use haskap_query::types::TypeExpr;
use serde_json::Value;

/// One entry of a subscription's `entities`.
#[derive(Debug, Clone)]
struct Selector {
    types: Option<TypeExpr>,
    id: Option<String>,
    pattern: Option<regex::Regex>,
}

/// A subscription, compiled for matching.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// None: every entity is selected.
    selectors: Option<Vec<Selector>>,
    triggers: Vec<String>,
    watched: Option<Vec<String>>,
    q: Option<Compiled>,
    scope: Option<TypeExpr>,
    geo: Option<GeoQuery>,
    expires_at: Option<i64>,
    paused: bool,
    periodic: bool,
    /// A part could not be compiled (a stored subscription from an older validation): it never
    /// matches rather than matching too much.
    broken: bool,
}

impl Matcher {
    /// Compiles a stored (canonical) subscription; short names in it expand with `ctx`.
    pub fn compile(sub: &Value, ctx: &ActiveContext) -> Matcher {
        let mut broken = false;
        let expand = |n: &str| if n.contains(':') { n.to_string() } else { ctx.expand(n) };
        let selectors = sub.get("entities").and_then(Value::as_array).map(|list| {
            list.iter()
                .map(|s| Selector {
                    types: s.get("type").and_then(Value::as_str).and_then(|t| match TypeExpr::parse(t) {
                        Ok(e) => Some(e.expand(&expand)),
                        Err(_) => {
                            broken = true;
                            None
                        }
                    }),
                    id: s.get("id").and_then(Value::as_str).map(str::to_string),
                    pattern: s.get("idPattern").and_then(Value::as_str).and_then(|p| match regex::Regex::new(p) {
                        Ok(r) => Some(r),
                        Err(_) => {
                            broken = true;
                            None
                        }
                    }),
                })
                .collect()
        });
        let strings = |v: Option<&Value>| -> Option<Vec<String>> {
            Some(v?.as_array()?.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        };
        let triggers = strings(sub.get("notificationTrigger"))
            .unwrap_or_else(|| vec!["attributeCreated".into(), "attributeUpdated".into()]);
        let q = sub.get("q").and_then(Value::as_str).and_then(|q| {
            // Clients write q as they would in a URL, percent-encoded (`name=="Eiffel%20Tower"`).
            let q = percent_encoding::percent_decode_str(q).decode_utf8_lossy();
            let q = q.as_ref();
            let compiled =
                haskap_query::q::parse(q).ok().and_then(|e| haskap_query::eval::compile(&e, q, &expand).ok());
            broken |= compiled.is_none();
            compiled
        });
        let scope = sub.get("scopeQ").and_then(Value::as_str).and_then(|s| {
            let e = TypeExpr::parse(s).ok();
            broken |= e.is_none();
            e
        });
        let geo = sub.get("geoQ").and_then(|g| {
            let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or_default();
            let coords = match g.get("coordinates") {
                Some(Value::String(c)) => serde_json::from_str(c).unwrap_or(Value::Null),
                Some(c) => c.clone(),
                None => Value::Null,
            };
            let property = expand(g.get("geoproperty").and_then(Value::as_str).unwrap_or("location"));
            let query = GeoQuery::new(text("georel"), text("geometry"), &coords, property).ok();
            broken |= query.is_none();
            query
        });
        Matcher {
            selectors,
            triggers,
            watched: strings(sub.get("watchedAttributes")),
            q,
            scope,
            geo,
            expires_at: sub
                .get("expiresAt")
                .and_then(Value::as_str)
                .and_then(parse_datetime)
                .map(|t| t.timestamp_micros()),
            paused: sub.get("isActive") == Some(&Value::Bool(false)),
            periodic: sub.get("timeInterval").is_some(),
            broken,
        }
    }

    /// Whether the subscription is active at `now` (not paused, not expired).
    pub fn active(&self, now: i64) -> bool {
        !self.paused && self.expires_at.is_none_or(|t| t > now)
    }

    /// The expanded entity types an entity must have one of to be selected; None when any
    /// entity may be (no `entities`, or a selector without a type).
    pub fn types(&self) -> Option<Vec<&str>> {
        let selectors = self.selectors.as_ref()?;
        let mut out = Vec::new();
        for s in selectors {
            out.extend(s.types.as_ref()?.names());
        }
        Some(out)
    }

    /// The entity ids the subscription is limited to; None unless every selector names an id.
    pub fn ids(&self) -> Option<Vec<&str>> {
        self.selectors.as_ref()?.iter().map(|s| s.id.as_deref()).collect()
    }

    /// Whether the subscription selects `e` by its `entities`, `q`, `scopeQ` and `geoQ`.
    pub fn selects(&self, e: &Entity) -> bool {
        let by_entities = self.selectors.as_ref().is_none_or(|list| {
            list.iter().any(|s| {
                s.types.as_ref().is_none_or(|t| t.matches(&e.types))
                    && s.id.as_ref().is_none_or(|id| *id == e.id)
                    && s.pattern.as_ref().is_none_or(|p| p.is_match(&e.id))
            })
        });
        !self.broken
            && by_entities
            && self.q.as_ref().is_none_or(|q| q.matches(e))
            && self
                .scope
                .as_ref()
                .is_none_or(|s| haskap_query::filter::scope_matches(s, e.scope.as_deref().unwrap_or(&[])))
            && self.geo.as_ref().is_none_or(|g| g.matches(e))
    }

    /// The trigger under which a change from `old` to `new` (None: absent) is notified at `now`,
    /// if it is. Periodic subscriptions are never notified of changes.
    pub fn on_change(&self, old: Option<&Entity>, new: Option<&Entity>, now: i64) -> Option<&'static str> {
        if self.periodic || !self.active(now) {
            return None;
        }
        let entity = new.or(old)?;
        let (trigger, changed) = trigger_of(old, new);
        let has = |t: &str| self.triggers.iter().any(|x| x == t);
        let fired = match trigger {
            "entityCreated" => {
                (has("entityCreated") || has("attributeCreated"))
                    && self.watched.as_ref().is_none_or(|w| entity.attrs.keys().any(|a| w.contains(a)))
            }
            // Deleting an entity deletes its attributes too: attributeDeleted subscriptions whose
            // watched attributes it had are told.
            "entityDeleted" => {
                has("entityDeleted")
                    || (has("attributeDeleted")
                        && self
                            .watched
                            .as_ref()
                            .map_or(!entity.attrs.is_empty(), |w| entity.attrs.keys().any(|a| w.contains(a))))
            }
            // The trigger and the watch list apply to the same attribute: a watched attribute must
            // have changed in a way the subscription asks about.
            _ => changed.iter().any(|(a, kind)| {
                self.watched.as_ref().is_none_or(|w| w.contains(a)) && (has("entityUpdated") || has(kind))
            }),
        };
        (fired && self.selects(entity)).then_some(trigger)
    }
}

/// What happened to an entity, and which attributes changed how.
pub fn trigger_of(old: Option<&Entity>, new: Option<&Entity>) -> (&'static str, Vec<(String, &'static str)>) {
    match (old, new) {
        (None, _) => ("entityCreated", Vec::new()),
        (_, None) => ("entityDeleted", Vec::new()),
        (Some(old), Some(new)) => {
            let mut changed = Vec::new();
            for (name, inst) in &new.attrs {
                match old.attrs.get(name) {
                    None => changed.push((name.clone(), "attributeCreated")),
                    Some(o) if !same_values(o, inst) => {
                        // Instances (by datasetId) that went or came are deletions and creations;
                        // anything else is an update.
                        let has = |list: &[Attribute], d: &Option<String>| list.iter().any(|x| x.dataset_id == *d);
                        let lost = o.iter().any(|x| !has(inst, &x.dataset_id));
                        let gained = inst.iter().any(|y| !has(o, &y.dataset_id));
                        if lost {
                            changed.push((name.clone(), "attributeDeleted"));
                        }
                        if gained {
                            changed.push((name.clone(), "attributeCreated"));
                        }
                        let kept_changed = inst.iter().any(|y| {
                            o.iter()
                                .find(|x| x.dataset_id == y.dataset_id)
                                .is_some_and(|x| !same_values(std::slice::from_ref(x), std::slice::from_ref(y)))
                        });
                        if kept_changed || (!lost && !gained) {
                            changed.push((name.clone(), "attributeUpdated"));
                        }
                    }
                    _ => {}
                }
            }
            for name in old.attrs.keys().filter(|n| !new.attrs.contains_key(*n)) {
                changed.push((name.clone(), "attributeDeleted"));
            }
            ("entityUpdated", changed)
        }
    }
}

/// Whether two attribute versions are the same but for their timestamps.
fn same_values(a: &[Attribute], b: &[Attribute]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.value == y.value
                && x.dataset_id == y.dataset_id
                && x.sub == y.sub
                && x.observed_at == y.observed_at
                && x.kind == y.kind
        })
}

/// A tenant's subscriptions with their matchers, indexed by the entity ids or else the entity
/// types they can select.
#[derive(Debug, Default)]
pub struct Index {
    entries: Vec<(Arc<Value>, Arc<Matcher>)>,
    by_id: HashMap<String, Vec<u32>>,
    by_type: HashMap<String, Vec<u32>>,
    any: Vec<u32>,
}

impl Index {
    /// Indexes `entries` (subscription, its matcher).
    pub fn new(entries: Vec<(Arc<Value>, Arc<Matcher>)>) -> Index {
        let mut by_id: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_type: HashMap<String, Vec<u32>> = HashMap::new();
        let mut any = Vec::new();
        let add = |map: &mut HashMap<String, Vec<u32>>, keys: Vec<&str>, i: u32| {
            for k in keys {
                let slot = map.entry(k.to_string()).or_default();
                if slot.last() != Some(&i) {
                    slot.push(i);
                }
            }
        };
        for (i, (_, m)) in entries.iter().enumerate() {
            let i = i as u32;
            match (m.ids(), m.types()) {
                (Some(ids), _) => add(&mut by_id, ids, i),
                (None, Some(types)) => add(&mut by_type, types, i),
                (None, None) => any.push(i),
            }
        }
        Index { entries, by_id, by_type, any }
    }

    /// The matcher already compiled for exactly this stored subscription, if any.
    pub fn reuse(&self, sub: &Arc<Value>) -> Option<Arc<Matcher>> {
        self.entries.iter().find(|(s, _)| Arc::ptr_eq(s, sub)).map(|(_, m)| m.clone())
    }

    /// Every entry.
    pub fn entries(&self) -> &[(Arc<Value>, Arc<Matcher>)] {
        &self.entries
    }

    /// The subscriptions that may select the entity `id` with one of `types`, in subscription
    /// order.
    pub fn candidates<'a>(
        &'a self,
        id: &str,
        types: &[&String],
    ) -> impl Iterator<Item = &'a (Arc<Value>, Arc<Matcher>)> {
        let mut picked: Vec<u32> = self.any.clone();
        picked.extend(self.by_id.get(id).into_iter().flatten());
        for t in types {
            picked.extend(self.by_type.get(t.as_str()).into_iter().flatten());
        }
        picked.sort_unstable();
        picked.dedup();
        picked.into_iter().map(|i| &self.entries[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ActiveContext {
        let core: Value = serde_json::from_str(haskap_model::builtin::CORE_CONTEXT).unwrap();
        ActiveContext::core(&core).unwrap()
    }

    fn entity(id: &str, ty: &str, temp: f64) -> Entity {
        let ctx = ctx();
        let parser = haskap_model::parse::Parser { ctx: &ctx, now: 0, limits: Default::default() };
        parser.entity(&json!({"id": id, "type": ty, "temperature": {"type": "Property", "value": temp}})).unwrap()
    }

    #[test]
    fn compiled_matchers_apply_selectors_triggers_q_and_expiry() {
        let ctx = ctx();
        let sub = json!({
            "entities": [{"type": "Room"}, {"idPattern": "^urn:x:.*"}],
            "notificationTrigger": ["entityCreated", "attributeUpdated"],
            "q": "temperature>20",
            "expiresAt": "2030-01-01T00:00:00Z",
        });
        let m = Matcher::compile(&sub, &ctx);
        let warm = entity("urn:r:1", "Room", 25.0);
        let cold = entity("urn:r:1", "Room", 15.0);
        assert_eq!(m.on_change(None, Some(&warm), 0), Some("entityCreated"));
        assert_eq!(m.on_change(None, Some(&cold), 0), None, "q");
        assert_eq!(m.on_change(Some(&cold), Some(&warm), 0), Some("entityUpdated"));
        assert_eq!(m.on_change(Some(&warm), None, 0), None, "entityDeleted not asked for");
        let attr_deleted = Matcher::compile(
            &json!({"notificationTrigger": ["attributeDeleted"], "watchedAttributes": [ctx.expand("temperature")]}),
            &ctx,
        );
        assert_eq!(
            attr_deleted.on_change(Some(&warm), None, 0),
            Some("entityDeleted"),
            "its watched attribute went too"
        );
        assert_eq!(m.on_change(None, Some(&entity("urn:x:1", "Car", 30.0)), 0), Some("entityCreated"));
        assert_eq!(m.on_change(None, Some(&entity("urn:y:1", "Car", 30.0)), 0), None);
        let later = parse_datetime("2030-01-01T00:00:01Z").unwrap().timestamp_micros();
        assert_eq!(m.on_change(None, Some(&warm), later), None, "expired");
        assert_eq!(m.types(), None, "an idPattern selector without type can select any type");
    }

    /// Regression: a created unwatched attribute beside an updated watched one fired an
    /// attributeCreated subscription watching the updated one.
    #[test]
    fn triggers_apply_to_the_watched_attributes() {
        let ctx = ctx();
        let parser = haskap_model::parse::Parser { ctx: &ctx, now: 0, limits: Default::default() };
        let before = parser.entity(&json!({"id": "urn:r:1", "type": "Room", "temperature": 20})).unwrap();
        let after =
            parser.entity(&json!({"id": "urn:r:1", "type": "Room", "temperature": 21, "humidity": 50})).unwrap();
        let created = Matcher::compile(
            &json!({"notificationTrigger": ["attributeCreated"], "watchedAttributes": [ctx.expand("temperature")]}),
            &ctx,
        );
        assert_eq!(created.on_change(Some(&before), Some(&after), 0), None);
        let updated = Matcher::compile(
            &json!({"notificationTrigger": ["attributeUpdated"], "watchedAttributes": [ctx.expand("temperature")]}),
            &ctx,
        );
        assert_eq!(updated.on_change(Some(&before), Some(&after), 0), Some("entityUpdated"));
    }

    /// Regression (ETSI 046_22_06, 046_05): deleting one instance of a multi-instance attribute is
    /// an attributeDeleted; q in a subscription may be percent-encoded as in a URL.
    #[test]
    fn instance_deletions_and_percent_encoded_q() {
        let ctx = ctx();
        let parser = haskap_model::parse::Parser { ctx: &ctx, now: 0, limits: Default::default() };
        let two = parser
            .entity(&json!({"id": "urn:b:1", "type": "Building", "name": [
                {"type": "Property", "value": "Eiffel Tower"},
                {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:d:fr"}]}))
            .unwrap();
        let one = parser
            .entity(
                &json!({"id": "urn:b:1", "type": "Building", "name": {"type": "Property", "value": "Eiffel Tower"}}),
            )
            .unwrap();
        let deleted = Matcher::compile(&json!({"notificationTrigger": ["attributeDeleted"]}), &ctx);
        let updated = Matcher::compile(&json!({"notificationTrigger": ["attributeUpdated"]}), &ctx);
        assert_eq!(deleted.on_change(Some(&two), Some(&one), 0), Some("entityUpdated"));
        assert_eq!(updated.on_change(Some(&two), Some(&one), 0), None, "nothing kept changed");
        let q = Matcher::compile(&json!({"q": "name==%22Eiffel%20Tower%22"}), &ctx);
        assert!(q.selects(&one));
    }

    #[test]
    fn the_index_offers_only_subscriptions_that_can_select_the_type() {
        let ctx = ctx();
        let subs: Vec<Arc<Value>> = vec![
            Arc::new(json!({"entities": [{"type": "Room"}]})),
            Arc::new(json!({"entities": [{"type": "Car|Room"}]})),
            Arc::new(json!({"watchedAttributes": ["temperature"]})),
            Arc::new(json!({"entities": [{"type": "Car"}]})),
            Arc::new(json!({"entities": [{"id": "urn:r:1", "type": "Room"}]})),
            Arc::new(json!({"entities": [{"id": "urn:r:2", "type": "Room"}]})),
        ];
        let index = Index::new(subs.iter().map(|s| (s.clone(), Arc::new(Matcher::compile(s, &ctx)))).collect());
        let room = ctx.expand("Room");
        let picked: Vec<usize> = index
            .candidates("urn:r:1", &[&room])
            .map(|(s, _)| subs.iter().position(|x| Arc::ptr_eq(x, s)).unwrap())
            .collect();
        assert_eq!(picked, [0, 1, 2, 4]);
        assert!(index.reuse(&subs[3]).is_some());
        assert!(index.reuse(&Arc::new(json!({}))).is_none());
    }
}

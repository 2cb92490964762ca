//! The rules between a query's fields that the description states on top
//! of what utoipa's types say (JSON Schema can; the types cannot).

use airq_core::aqi::Index;
use airq_core::name;

/// The rules between fields that JSON Schema can say and utoipa's types
/// cannot, so that the description admits exactly what the server takes:
///
/// - a query has at most one of `bbox` and `near` (both: `400`), in the
///   body of `POST /api/query` and in the query string of `GET
///   /api/latest` (whose filters are therefore described as one
///   form-exploded object: JSON Schema has no rule across parameters);
/// - a query's `range` is a band of its own `index` (the default index's
///   when none is given).
pub(super) fn with_cross_field_rules(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let one_place = json!({"required": ["bbox", "near"]});
    if let Some(Value::Object(query)) = doc.pointer_mut("/components/schemas/Query") {
        query.insert("not".into(), one_place.clone());
        let branches: Vec<Value> = query
            .get("properties")
            .and_then(|p| p.get("range"))
            .and_then(|r| r.get("anyOf"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let bands_of = |name: &str| {
            branches
                .iter()
                .find(|b| b["title"] == format!("{name} bands"))
                .cloned()
        };
        let any_band = branches.iter().find(|b| b["title"] == "any band").cloned();
        let default = Index::default().name();
        let mut rules = Vec::new();
        for ix in Index::ALL {
            let (Some(bands), Some(any)) = (bands_of(ix.name()), any_band.clone()) else {
                continue;
            };
            let range = json!({"properties": {"range": {"anyOf": [bands, any]}}});
            let when = if ix.name() == default {
                // No index, or an empty or null one, is the default.
                json!({"anyOf": [
                    {"not": {"required": ["index"]}},
                    {"properties": {"index": {"anyOf": [
                        {"type": "null"},
                        {"type": "string", "pattern": name::pattern([ix.name()])},
                    ]}}},
                ]})
            } else {
                json!({"required": ["index"], "properties": {"index": {
                    "type": "string", "pattern": name::name_pattern([ix.name()]),
                }}})
            };
            rules.push(json!({"if": when, "then": range}));
        }
        if !rules.is_empty() {
            query.insert("allOf".into(), Value::Array(rules));
        }
    }
    if let Some(Value::Array(params)) = doc.pointer_mut("/paths/~1api~1latest/get/parameters") {
        let (filters, rest): (Vec<Value>, Vec<Value>) =
            params.drain(..).partition(|p| p["in"] == "query");
        let mut properties = serde_json::Map::new();
        for f in &filters {
            // (A blank value, `?index=`, is the default: the names'
            // patterns say so.)
            let mut schema = f["schema"].clone();
            if let (Value::Object(m), Some(d)) = (&mut schema, f.get("description")) {
                m.insert("description".into(), d.clone());
            }
            if let Some(name) = f["name"].as_str() {
                properties.insert(name.to_owned(), schema);
            }
        }
        *params = rest;
        if !properties.is_empty() {
            params.insert(
                0,
                json!({
                    "name": "filters",
                    "in": "query",
                    "style": "form",
                    "explode": true,
                    "description": "The filters, each its own query parameter (`?country=DE&bbox=…`); at most one of `bbox` and `near`.",
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "additionalProperties": false,
                        "not": one_place,
                    },
                }),
            );
        }
    }
    doc
}

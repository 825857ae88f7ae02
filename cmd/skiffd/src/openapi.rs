//! The OpenAPI 3.1 document for the HTTP/JSON API, generated from the route table
//! below (the one list of paths, methods, roles and answers), served at
//! `/v1/openapi.json` and printed by `skiffd openapi`.

use serde_json::{Value, json};

/// (method, path, summary, role, request body schema, extra answers)
type Route = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

const ROUTES: &[Route] = &[
    (
        "post",
        "/v1/intents",
        "Record an intent (knobs or a whole spec): answers the decision, execution plan and policy result. Idempotent by the Idempotency-Key header.",
        Some("operator"),
        Some("Intent"),
        &[("400", "not an intent, or no Idempotency-Key"), ("422", "POLICY_DENIED: a rule denied the plan")],
    ),
    ("get", "/v1/services", "Every indexed service with its verdict, release and health.", Some("viewer"), None, &[]),
    (
        "get",
        "/v1/services/{svc}/status",
        "A service's decision, execution plan, reconciliation status (IN_SYNC | DRIFTED), release and health, from the index.",
        Some("viewer"),
        None,
        &[("404", "no such service")],
    ),
    (
        "get",
        "/v1/operations/{id}",
        "One operation: intent, steps with safety and status, failure, recent events.",
        Some("viewer"),
        None,
        &[("404", "no such operation")],
    ),
    ("get", "/healthz", "Liveness, with the index's size.", None, None, &[]),
    (
        "get",
        "/readyz",
        "Readiness: the bucket answers and the index is built (503 with an envelope otherwise).",
        None,
        None,
        &[],
    ),
    ("get", "/metrics", "Prometheus metrics.", None, None, &[]),
    ("get", "/v1/openapi.json", "This document.", None, None, &[]),
];

fn envelope_schema() -> Value {
    json!({
        "type": "object",
        "description": "The envelope every answer uses; the fields of `data` are also lifted to the top level.",
        "required": ["ok", "code", "summary", "facts", "recommended_actions"],
        "properties": {
            "ok": {"type": "boolean"},
            "code": {"type": "string", "enum": skiff_sdk::Code::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
            "summary": {"type": "string"},
            "facts": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "object"},
            "risk": {"type": "object"},
            "recommended_actions": {"type": "array", "items": {"type": "object"}},
            "operation_id": {"type": "string"},
            "idempotency_key": {"type": "string"},
        },
        "additionalProperties": true,
    })
}

fn intent_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "service_name": {"type": "string", "example": "orders-api"},
            "environment": {"type": "string", "example": "production"},
            "availability": {"type": "string", "enum": ["high", "standard", "low"]},
            "cost": {"type": "string", "enum": ["low", "balanced", "performance"]},
            "spec": {"description": "a whole spec: skiff.yaml text or a JSON object (`skiff schema`)"},
        },
    })
}

fn status_schema() -> Value {
    json!({
        "allOf": [{"$ref": "#/components/schemas/Envelope"}, {
            "type": "object",
            "properties": {
                "service_name": {"type": "string"},
                "environment": {"type": "string"},
                "decision": {"type": "object", "properties": {"availability_plan": {"type": "object"}, "cost_plan": {"type": "object"}}},
                "execution_plan": {"type": "object", "properties": {"actions": {"type": "array", "items": {"type": "object"}}}},
                "reconciliation_status": {"type": "string", "enum": ["IN_SYNC", "DRIFTED", "UNKNOWN"]},
                "release": {"type": "object"},
                "health": {"type": "object"},
            },
        }],
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, role, body, extra) in ROUTES {
        let mut responses = serde_json::Map::new();
        let ok_schema = if path.ends_with("/status") { "ServiceStatus" } else { "Envelope" };
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ok_schema}")}}}}),
        );
        if role.is_some() {
            responses.insert("401".into(), json!({"description": "UNAUTHENTICATED: no or unknown bearer token"}));
            responses.insert("403".into(), json!({"description": "PERMISSION_DENIED: the token's role is too low"}));
        }
        for (code, why) in *extra {
            responses.insert((*code).into(), json!({"description": why}));
        }
        let mut op = json!({"summary": summary, "responses": responses});
        if let Some(r) = role {
            op["security"] = json!([{"bearer": []}]);
            op["x-skiff-role"] = json!(r);
        }
        if let Some(b) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
            op["parameters"] =
                json!([{"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string"}}]);
        }
        if path.contains('{') {
            let name = path.split('{').nth(1).and_then(|s| s.split('}').next()).unwrap_or("id");
            op["parameters"] = json!([{"name": name, "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "skiffd", "version": env!("CARGO_PKG_VERSION"), "description": "Skiff's control plane over HTTP/JSON; gRPC (proto/skiff/v1) serves the same data on the same port."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Envelope": envelope_schema(), "Intent": intent_schema(), "ServiceStatus": status_schema()},
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_route() {
        let doc = super::document();
        for (method, path, ..) in super::ROUTES {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        let mut doc = doc;
        doc["info"]["version"] = "[version]".into();
        insta::assert_json_snapshot!("openapi", doc);
    }
}

//! `skiff schema`: the JSON Schema of skiff.yaml. Human mode prints the bare schema
//! so it can be redirected to a file; JSON mode wraps it in the envelope's `data`.

use skiff_sdk::Envelope;

use crate::Outcome;

pub(super) fn run() -> Outcome {
    let schema = skiff_spec::json_schema();
    let text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    let env = Envelope::ok("JSON Schema of skiff.yaml (draft 2020-12)").data(schema);
    Outcome { raw: true, ..Outcome::from(env).body(text) }
}

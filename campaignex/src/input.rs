//! Reading request bodies so that a 422 names every bad field, not just the first one serde
//! stops at: each top-level field is tried on its own against a valid template, then the
//! model's own validation adds the rules that span fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use cezbek_platform::http::FieldError;
use cezbek_schemas::ValueError;

pub fn field_errors(problems: Vec<ValueError>) -> Vec<FieldError> {
    problems.into_iter().map(|p| FieldError { field: p.field, reason: p.reason }).collect()
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => {
            Err(vec![FieldError { field: "body".into(), reason: "must be a JSON object".into() }])
        }
        Err(error) => Err(vec![FieldError {
            field: "body".into(),
            reason: format!("is not valid JSON: {error}"),
        }]),
    }
}

/// Deserialises `input` as `T`. On failure, finds every top-level field that is wrong (or
/// missing) by trying each against `template`, a valid `T`.
pub fn parse<T: DeserializeOwned + Serialize>(
    input: Map<String, Value>,
    template: &T,
) -> Result<T, Vec<FieldError>> {
    let first = match serde_path_to_error::deserialize::<_, T>(Value::Object(input.clone())) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let Ok(Value::Object(valid)) = serde_json::to_value(template) else {
        return Err(vec![describe(&first, &input)]);
    };
    let mut errors = Vec::new();
    for (field, value) in &input {
        if !valid.contains_key(field) {
            continue;
        }
        let mut trial = valid.clone();
        trial.insert(field.clone(), value.clone());
        if let Err(error) = serde_path_to_error::deserialize::<_, T>(Value::Object(trial)) {
            errors.push(describe(&error, &input));
        }
    }
    for field in valid.keys().filter(|field| !input.contains_key(*field)) {
        let mut trial = valid.clone();
        trial.remove(field);
        if serde_path_to_error::deserialize::<_, T>(Value::Object(trial)).is_err() {
            errors.push(FieldError { field: field.clone(), reason: "is required".into() });
        }
    }
    if errors.is_empty() {
        errors.push(describe(&first, &input));
    }
    Err(errors)
}

fn describe(
    error: &serde_path_to_error::Error<serde_json::Error>,
    fields: &Map<String, Value>,
) -> FieldError {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    // serde_json appends " at line 1 column 42", which means nothing to an API user.
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    if path != "." {
        return FieldError { field: path, reason: message };
    }
    // Flattened fields lose their path in serde; our value errors read "field: reason".
    match message.split_once(": ") {
        Some((field, reason)) if fields.contains_key(field) => {
            FieldError { field: field.to_owned(), reason: reason.to_owned() }
        }
        _ => FieldError { field: "body".into(), reason: message },
    }
}

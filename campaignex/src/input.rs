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

/// The body as a JSON value, with integral numbers written as decimals (`460.0`) made integers:
/// JSON has one number type, and `460.0` is the integer 460 to JSON Schema and to most clients'
/// serializers, while serde reads an integer field only from an integer literal.
pub fn value(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::from_slice::<Value>(body)?;
    integral_numbers_as_integers(&mut value);
    Ok(value)
}

fn integral_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // Within i64, where every integral f64 converts exactly; beyond it a number stays as
            // it is and the field's type refuses it.
            if float.fract() == 0.0 && float >= -(2f64.powi(63)) && float < 2f64.powi(63) {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Every text in a rule that holds a NUL character, which PostgreSQL (the rules' JSON column)
/// cannot store, named by its path (`conditions.merchants[2]`).
pub fn nul_fields(rule: &Value) -> Vec<FieldError> {
    fn walk(value: &Value, path: &str, found: &mut Vec<FieldError>) {
        match value {
            Value::String(text) if text.contains('\0') => found.push(FieldError {
                field: path.to_owned(),
                reason: "contains a NUL character, which cannot be stored".into(),
            }),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{index}]"), found);
                }
            }
            Value::Object(fields) => {
                for (name, field) in fields {
                    let at = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    walk(field, &at, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(rule, "", &mut found);
    found
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    match value(body) {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::value;

    #[test]
    fn nul_characters_are_named_by_their_path() {
        let rule = json!({"name": "a\u{0}b", "conditions": {"merchants": ["ok", "\u{0}"]}, "n": 1});
        let fields: Vec<String> = super::nul_fields(&rule).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["conditions.merchants[1]", "name"]);
    }

    #[test]
    fn integral_decimals_become_integers_and_others_stay() {
        let read =
            value(br#"{"a": 460.0, "b": [1.0, 1.5, -2.0], "c": {"d": 1e3}, "e": 1e19, "f": 7}"#);
        assert_eq!(
            read.ok(),
            Some(json!({"a": 460, "b": [1, 1.5, -2], "c": {"d": 1000}, "e": 1e19, "f": 7}))
        );
    }
}

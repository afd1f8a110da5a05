//! Whether an object on the server still says what the agent declared.
//!
//! The server adds fields the declaration never mentions (uid, resourceVersion,
//! managedFields, other managers' labels, defaults), so equality is the wrong test:
//! the question is whether every declared field is present with the declared value.

use serde_json::Value;

/// Whether `actual` contains `desired`: maps may hold extra keys, lists must have the
/// same length with each element containing the declared one, scalars must be equal.
/// A declared `null` (an unset optional) asks for nothing.
pub fn contains(actual: &Value, desired: &Value) -> bool {
    first_difference(actual, desired).is_none()
}

/// The first declared path whose value differs (by the rules of [`contains`]), e.g.
/// `metadata.labels.x`, for the log line that says why an object was restored; an
/// empty path means the whole value.
pub fn first_difference(actual: &Value, desired: &Value) -> Option<String> {
    match (desired, actual) {
        (Value::Null, _) => None,
        (Value::Object(want), Value::Object(have)) => {
            want.iter().find_map(|(key, value)| match have.get(key) {
                Some(found) => first_difference(found, value).map(|rest| join(key, &rest)),
                None if value.is_null() => None,
                None => Some(key.clone()),
            })
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            want.iter().zip(have).enumerate().find_map(|(i, (w, h))| {
                first_difference(h, w).map(|rest| join(&i.to_string(), &rest))
            })
        }
        (want, have) if want == have => None,
        _ => Some(String::new()),
    }
}

fn join(key: &str, rest: &str) -> String {
    if rest.is_empty() {
        key.to_owned()
    } else {
        format!("{key}.{rest}")
    }
}

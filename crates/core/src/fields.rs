//! Reading closed JSON objects (PROTOCOL.md §0): every field is named, typed and
//! checked in the order the protocol defines it, and an unknown field is refused.

use crate::error::Error;
use serde_json::{Map, Value};

/// A closed object whose fields are read one by one, in protocol order.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(value: &'a Value, what: &'static str) -> Result<Fields<'a>, Error> {
        match value {
            Value::Object(obj) => Ok(Fields { obj, what }),
            _ => Err(Error::malformed(format!("{what} must be a JSON object"))),
        }
    }

    /// Refuses any field not in `allowed`. Call after reading the known fields.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), Error> {
        match self.obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Error::malformed(format!("{}: unknown field {k:?}", self.what))),
            None => Ok(()),
        }
    }

    pub fn value(&self, name: &str) -> Result<&'a Value, Error> {
        self.obj.get(name).ok_or_else(|| Error::malformed(format!("{}: missing field {name:?}", self.what)))
    }

    pub fn u64(&self, name: &str) -> Result<u64, Error> {
        self.value(name)?.as_u64().ok_or_else(|| self.ill_typed(name, "a non-negative integer"))
    }

    pub fn str(&self, name: &str) -> Result<&'a str, Error> {
        self.value(name)?.as_str().ok_or_else(|| self.ill_typed(name, "a string"))
    }

    /// A field that must be present and is a string or `null`.
    pub fn nullable_str(&self, name: &str) -> Result<Option<&'a str>, Error> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(self.ill_typed(name, "a string or null")),
        }
    }

    pub fn array(&self, name: &str) -> Result<&'a Vec<Value>, Error> {
        self.value(name)?.as_array().ok_or_else(|| self.ill_typed(name, "an array"))
    }

    /// An array that may be absent (then empty).
    pub fn optional_array(&self, name: &str) -> Result<&'a [Value], Error> {
        match self.obj.get(name) {
            None => Ok(&[]),
            Some(_) => self.array(name).map(Vec::as_slice),
        }
    }

    /// A malformed error about field `name`.
    pub fn bad(&self, name: &str, why: impl std::fmt::Display) -> Error {
        Error::malformed(format!("{}: field {name:?} {why}", self.what))
    }

    fn ill_typed(&self, name: &str, expected: &str) -> Error {
        self.bad(name, format_args!("must be {expected}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn non_objects_are_malformed() {
        for v in [serde_json::json!([]), serde_json::json!(1), serde_json::json!("x"), Value::Null] {
            assert_eq!(Fields::new(&v, "t").err().map(|e| e.code), Some(ErrorCode::Malformed));
        }
    }

    #[test]
    fn fields_are_typed() {
        let v: Value = serde_json::json!({"a": 1, "b": "x", "c": null, "d": -1, "e": 1.5});
        let f = Fields::new(&v, "t").unwrap();
        assert_eq!(f.u64("a").unwrap(), 1);
        assert_eq!(f.str("b").unwrap(), "x");
        assert_eq!(f.nullable_str("c").unwrap(), None);
        assert!(f.u64("d").is_err());
        assert!(f.u64("e").is_err());
        assert!(f.str("a").is_err());
        assert!(f.value("zz").is_err());
        assert!(f.deny_unknown(&["a", "b", "c", "d"]).is_err());
        assert!(f.deny_unknown(&["a", "b", "c", "d", "e"]).is_ok());
    }
}

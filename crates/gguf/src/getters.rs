//! Typed metadata lookups. Each names the key in its error: `MissingKey` when absent, `WrongType` when the
//! stored type cannot serve, `OutOfRange` when an integer does not fit the asked width.

use crate::{Gguf, GgufError, Value};

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.type_name(),
    }
}

fn out_of_range(key: &str, value: &Value, target: &'static str) -> GgufError {
    GgufError::OutOfRange {
        key: key.to_owned(),
        value: value.to_string(),
        target,
    }
}

/// An integer value converted to `T`, or the error naming `key`.
fn integer_as<T: TryFrom<i128>>(key: &str, value: &Value, target: &'static str) -> Result<T, GgufError> {
    let wide: i128 = match (value.as_i64(), value.as_u64()) {
        (Some(v), _) => v.into(),
        (None, Some(v)) => v.into(),
        (None, None) if value.is_integer() => return Err(out_of_range(key, value, target)),
        (None, None) => return Err(wrong_type(key, target, value)),
    };
    T::try_from(wide).map_err(|_| out_of_range(key, value, target))
}

fn float_of(key: &str, value: &Value) -> Result<f32, GgufError> {
    value
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| wrong_type(key, "f32", value))
}

/// Element type name for "array of X" messages.
fn array_of(items: &[Value]) -> &'static str {
    match items.first().map(Value::type_name) {
        Some("u8") => "array of u8",
        Some("i8") => "array of i8",
        Some("u16") => "array of u16",
        Some("i16") => "array of i16",
        Some("u32") => "array of u32",
        Some("i32") => "array of i32",
        Some("u64") => "array of u64",
        Some("i64") => "array of i64",
        Some("f32") => "array of f32",
        Some("f64") => "array of f64",
        Some("bool") => "array of bool",
        Some("string") => "array of string",
        Some("array") => "array of array",
        _ => "array",
    }
}

impl Gguf {
    /// The value under `key`, or `MissingKey`.
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    /// Any integer type whose value fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        integer_as(key, self.require(key)?, "u32")
    }

    /// Any integer type whose value is non-negative.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        integer_as(key, self.require(key)?, "u64")
    }

    /// Any integer type whose value fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        integer_as(key, self.require(key)?, "i64")
    }

    /// f32 or f64 (rounded), or an integer converted.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        float_of(key, self.require(key)?)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let value = self.require(key)?;
        value.as_bool().ok_or_else(|| wrong_type(key, "bool", value))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let value = self.require(key)?;
        value.as_str().ok_or_else(|| wrong_type(key, "string", value))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let value = self.require(key)?;
        value.as_array().ok_or_else(|| wrong_type(key, "array", value))
    }

    /// An array of strings (an empty array qualifies).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(|v| {
                v.as_str().ok_or(GgufError::WrongType {
                    key: key.to_owned(),
                    expected: "array of string",
                    found: array_of(items),
                })
            })
            .collect()
    }

    /// An array of floats or integers, converted to f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(|v| {
                v.as_f64().map(|x| x as f32).ok_or(GgufError::WrongType {
                    key: key.to_owned(),
                    expected: "array of f32",
                    found: array_of(items),
                })
            })
            .collect()
    }

    /// An array of integers of any type, each fitting in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(|v| {
                if !v.is_integer() {
                    return Err(GgufError::WrongType {
                        key: key.to_owned(),
                        expected: "array of i32",
                        found: array_of(items),
                    });
                }
                integer_as(key, v, "i32")
            })
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// `None` when absent; errors when present with the wrong type or out of range.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get(key).map(|v| integer_as(key, v, "u32")).transpose()
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get(key).map(|v| integer_as(key, v, "u64")).transpose()
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.get(key).map(|v| float_of(key, v)).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| wrong_type(key, "bool", v)))
            .transpose()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| wrong_type(key, "string", v)))
            .transpose()
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        self.get(key)
            .map(|v| v.as_array().ok_or_else(|| wrong_type(key, "array", v)))
            .transpose()
    }
}

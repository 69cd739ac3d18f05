//! Decoding of C arguments. Every failure is a VALIDATION error naming the
//! C parameter.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};

use serde_json::Value;

use super::{BlazenError, Result};

/// A `const T *` handle argument: NULL is an error.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` made by this library for the
/// duration of the borrow.
pub unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a live handle when non-NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| BlazenError::invalid(name, "must not be NULL"))
}

/// A `T *` handle argument: NULL is an error.
///
/// # Safety
/// As [`handle`], and no other reference to it may be live.
pub unsafe fn handle_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: the caller promises a live handle when non-NULL.
    unsafe { ptr.as_mut() }.ok_or_else(|| BlazenError::invalid(name, "must not be NULL"))
}

/// A `const char *` argument decoded into `T`.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string.
pub unsafe fn text<T: FromCStr>(ptr: *const c_char, name: &str) -> Result<T> {
    // SAFETY: the caller promises a NUL-terminated string when non-NULL.
    let raw = (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) });
    T::from_c(raw, name)
}

/// Takes ownership of a callback table (see [`Callbacks`]).
pub fn callbacks<V: Callbacks>(v: V) -> V::Owner {
    v.own()
}

/// A C callback table passed by value. Owning it means calling
/// `drop_user_data` exactly once, whatever happens next.
pub trait Callbacks {
    /// The owning wrapper the stub receives.
    type Owner;
    /// Wraps the table; dropping the owner releases `user_data`.
    fn own(self) -> Self::Owner;
}

/// Decoding of a (possibly NULL) C string into a typed value.
pub trait FromCStr: Sized {
    /// Decodes `raw` (None for NULL) for the parameter called `name`.
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self>;
}

fn utf8<'a>(raw: &'a CStr, name: &str) -> Result<&'a str> {
    raw.to_str()
        .map_err(|e| BlazenError::invalid(name, format!("is not valid UTF-8 ({e})")))
}

fn required<'a>(raw: Option<&'a CStr>, name: &str) -> Result<&'a str> {
    utf8(
        raw.ok_or_else(|| BlazenError::invalid(name, "must not be NULL"))?,
        name,
    )
}

fn json(raw: Option<&CStr>, name: &str) -> Result<Option<Value>> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str(utf8(raw, name)?)
            .map(Some)
            .map_err(|e| BlazenError::invalid(name, format!("is not valid JSON ({e})"))),
    }
}

impl FromCStr for String {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        required(raw, name).map(str::to_owned)
    }
}

impl<T: FromCStr> FromCStr for Option<T> {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        raw.map(|r| T::from_c(Some(r), name)).transpose()
    }
}

impl FromCStr for uuid::Uuid {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let s = required(raw, name)?;
        uuid::Uuid::parse_str(s)
            .map_err(|e| BlazenError::invalid(name, format!("is not a UUID ({e})")))
    }
}

/// Raw bytes, no UTF-8 requirement (NULL is an error; wrap in `Option`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl FromCStr for Bytes {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        raw.map(|r| Bytes(r.to_bytes().to_vec()))
            .ok_or_else(|| BlazenError::invalid(name, "must not be NULL"))
    }
}

/// Any JSON value; NULL is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub Value);

impl FromCStr for Json {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        json(raw, name)?
            .map(Json)
            .ok_or_else(|| BlazenError::invalid(name, "must not be NULL"))
    }
}

/// Decodes NULL and `null` as `None`, anything else through `shape`.
fn optional_json<T>(
    raw: Option<&CStr>,
    name: &str,
    expected: &str,
    shape: impl FnOnce(Value) -> Option<T>,
) -> Result<Option<T>> {
    match json(raw, name)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => shape(v)
            .map(Some)
            .ok_or_else(|| BlazenError::invalid(name, format!("must be {expected}"))),
    }
}

/// Tag predicates: NULL, `null`, or an array of `"k=v"` / `"k=*"` strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagList(pub Vec<String>);

impl FromCStr for TagList {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let expected = "null or an array of \"key=value\" strings";
        let v = optional_json(raw, name, expected, |v| match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) if s.contains('=') => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>(),
            _ => None,
        })?;
        Ok(TagList(v.unwrap_or_default()))
    }
}

/// Capabilities: NULL, `null`, or an array of `{"kind": str, "version": u32}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(pub Vec<(String, u32)>);

impl FromCStr for Capabilities {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let expected = "null or an array of {\"kind\": string, \"version\": u32} objects";
        let v = optional_json(raw, name, expected, |v| match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| {
                    let o = i.as_object()?;
                    if o.keys().any(|k| k != "kind" && k != "version") {
                        return None;
                    }
                    let kind = o.get("kind")?.as_str()?.to_owned();
                    let version = match o.get("version") {
                        None => 0,
                        Some(v) => u32::try_from(v.as_u64()?).ok()?,
                    };
                    Some((kind, version))
                })
                .collect::<Option<Vec<_>>>(),
            _ => None,
        })?;
        Ok(Capabilities(v.unwrap_or_default()))
    }
}

/// String map: NULL, `null`, or an object of string to string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringMap(pub BTreeMap<String, String>);

impl FromCStr for StringMap {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let expected = "null or an object of string values";
        let v = optional_json(raw, name, expected, |v| match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect::<Option<BTreeMap<_, _>>>(),
            _ => None,
        })?;
        Ok(StringMap(v.unwrap_or_default()))
    }
}

/// A JSON object of options, decoded into `T` with unknown keys refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options<T>(pub T);

/// Checks of an options object beyond its shape (keys that go together),
/// run while decoding so a future-returning call fails at once.
pub trait CheckOptions {
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl<T: serde::de::DeserializeOwned + Default + CheckOptions> FromCStr for Options<T> {
    fn from_c(raw: Option<&CStr>, name: &str) -> Result<Self> {
        let options: T = match json(raw, name)? {
            None | Some(Value::Null) => T::default(),
            Some(v @ Value::Object(_)) => serde_path_to_error::deserialize(v).map_err(|e| {
                // Name the key a wrong value is at (`retry.max_attempts`,
                // `capabilities[0]`); errors about the object itself (an
                // unknown key) have no path.
                let path = e.path().to_string();
                match path.as_str() {
                    "." => BlazenError::invalid(name, e.into_inner()),
                    _ => BlazenError::invalid(name, format!("`{path}`: {}", e.into_inner())),
                }
            })?,
            Some(_) => return Err(BlazenError::invalid(name, "must be null or a JSON object")),
        };
        options.check().map_err(|e| BlazenError::invalid(name, e))?;
        Ok(Options(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn dec<T: FromCStr>(s: Option<&[u8]>) -> Result<T> {
        let c = s.map(|b| CString::new(b).unwrap());
        T::from_c(c.as_deref(), "arg")
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = dec::<String>(None).unwrap_err();
        assert_eq!(e.kind, super::super::ErrorKind::Validation);
        assert!(e.message.contains("`arg`"), "{}", e.message);
        assert!(dec::<String>(Some(b"\xff"))
            .unwrap_err()
            .message
            .contains("UTF-8"));
        assert!(dec::<Json>(Some(b"{"))
            .unwrap_err()
            .message
            .contains("JSON"));
        assert!(dec::<uuid::Uuid>(Some(b"nope"))
            .unwrap_err()
            .message
            .contains("UUID"));
    }

    #[test]
    fn json_shapes() {
        assert_eq!(dec::<TagList>(None).unwrap(), TagList::default());
        assert_eq!(dec::<TagList>(Some(b"null")).unwrap(), TagList::default());
        assert_eq!(dec::<TagList>(Some(br#"["a=b"]"#)).unwrap().0, vec!["a=b"]);
        assert!(dec::<TagList>(Some(br#"[1]"#)).is_err());
        assert!(dec::<TagList>(Some(br#"{"a":"b"}"#)).is_err());
        let caps = dec::<Capabilities>(Some(br#"[{"kind":"workflow:x","version":2}]"#)).unwrap();
        assert_eq!(caps.0, vec![("workflow:x".to_string(), 2)]);
        assert!(dec::<Capabilities>(Some(br#"[{"kind":"x","version":-1}]"#)).is_err());
        assert!(dec::<Capabilities>(Some(br#"[{"kind":"x","extra":1}]"#)).is_err());
        assert_eq!(dec::<StringMap>(Some(br#"{"a":"b"}"#)).unwrap().0["a"], "b");
        assert!(dec::<StringMap>(Some(br#"{"a":1}"#)).is_err());
        assert_eq!(dec::<Option<String>>(None).unwrap(), None);
    }
}

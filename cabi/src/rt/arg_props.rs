//! Property tests of the argument decoders: 10,000 cases each.
#![cfg(test)]

use std::collections::BTreeMap;
use std::ffi::CString;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::arg::{Capabilities, FromCStr, Json, StringMap, TagList};
use super::ErrorKind;

fn decode<T: FromCStr>(bytes: &[u8]) -> super::Result<T> {
    let c = CString::new(bytes.to_vec()).expect("no NUL in generated input");
    T::from_c(Some(&c), "param")
}

fn check_error<T: std::fmt::Debug>(r: &super::Result<T>) {
    if let Err(e) = r {
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("`param`"), "{}", e.message);
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arbitrary bytes without NUL (a C string's content).
fn c_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn tag_lists_round_trip(tags in prop::collection::vec("[a-z]{1,8}=[a-z*]{0,8}", 0..6)) {
        let text = Value::from(tags.clone()).to_string();
        prop_assert_eq!(decode::<TagList>(text.as_bytes()).unwrap().0, tags);
    }

    #[test]
    fn tag_lists_never_panic(v in any_json()) {
        let r = decode::<TagList>(v.to_string().as_bytes());
        check_error(&r);
        let ok_shape = match &v {
            Value::Null => true,
            Value::Array(a) => a.iter().all(|x| x.as_str().is_some_and(|s| s.contains('='))),
            _ => false,
        };
        prop_assert_eq!(r.is_ok(), ok_shape);
    }

    #[test]
    fn capabilities_round_trip(caps in prop::collection::vec((".{0,10}", any::<u32>()), 0..6)) {
        let text = Value::Array(caps.iter().map(|(k, v)| json!({"kind": k, "version": v})).collect()).to_string();
        prop_assert_eq!(decode::<Capabilities>(text.as_bytes()).unwrap().0, caps);
    }

    #[test]
    fn capabilities_never_panic(v in any_json()) {
        check_error(&decode::<Capabilities>(v.to_string().as_bytes()));
    }

    #[test]
    fn string_maps_round_trip(m in prop::collection::btree_map(".{0,8}", ".{0,8}", 0..6)) {
        let text = json!(m).to_string();
        prop_assert_eq!(decode::<StringMap>(text.as_bytes()).unwrap().0, m);
    }

    #[test]
    fn string_maps_never_panic(v in any_json()) {
        let r = decode::<StringMap>(v.to_string().as_bytes());
        check_error(&r);
        let ok_shape = match &v {
            Value::Null => true,
            Value::Object(o) => o.values().all(Value::is_string),
            _ => false,
        };
        prop_assert_eq!(r.is_ok(), ok_shape);
    }

    #[test]
    fn raw_bytes_give_a_value_or_a_named_error(b in c_bytes()) {
        check_error(&decode::<Json>(&b));
        check_error(&decode::<TagList>(&b));
        check_error(&decode::<Capabilities>(&b));
        check_error(&decode::<StringMap>(&b));
        check_error(&decode::<uuid::Uuid>(&b));
        check_error(&decode::<String>(&b));
        prop_assert_eq!(decode::<String>(&b).is_ok(), std::str::from_utf8(&b).is_ok());
    }

    #[test]
    fn uuids_round_trip_and_nothing_else_parses(n in any::<u128>(), s in "[^\\x00]{0,40}") {
        let id = uuid::Uuid::from_u128(n);
        prop_assert_eq!(decode::<uuid::Uuid>(id.to_string().as_bytes()).unwrap(), id);
        let r = decode::<uuid::Uuid>(s.as_bytes());
        check_error(&r);
        prop_assert_eq!(r.is_ok(), uuid::Uuid::parse_str(&s).is_ok());
    }
}

#[test]
fn maps_keep_their_entries() {
    let m: BTreeMap<String, String> = [("a".into(), "1".into())].into();
    assert_eq!(decode::<StringMap>(br#"{"a":"1"}"#).unwrap().0, m);
}

//! The option keys the docs name are the keys the options objects take.
//! Every `Options<T>` parameter of the stub table is matched with its serde
//! struct; the keys serde accepts (read from serde's own refusal of an
//! unknown key, so no list is kept by hand) must each be named in the
//! function's doc (and so in the header and the gem), and every key the
//! doc's options sentence names must be one serde accepts. The README
//! names each key too.

use std::collections::BTreeSet;
use std::path::Path;

use blazen_cabi_codegen::{generic_arg, type_name, ParamKind, Surface, Table};
use serde::de::DeserializeOwned;

use crate::client::{ConnectOptions, SubmitOptions};
use crate::server::ServerOptions;
use crate::worker::WorkerOptions;

/// The keys serde lists when it refuses an unknown key in `json` (where
/// `"\u0001"` is the unknown key), e.g. `{"retry": {"\u0001": 0}}`.
fn keys_refused_in<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> BTreeSet<String> {
    let err = serde_json::from_str::<T>(json).expect_err("an unknown key is refused");
    let text = err.to_string();
    if text.contains("there are no fields") {
        return BTreeSet::new();
    }
    let list = text
        .split_once("expected one of ")
        .or_else(|| text.split_once("expected "))
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no key list in {text:?}"));
    let list = list.split(" at line").next().unwrap_or(list);
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect()
}

/// Every key (nested ones included) of the options struct named `ty`.
fn keys_of(ty: &str) -> BTreeSet<String> {
    const X: &str = r#""\u0001":0"#;
    let mut keys = match ty {
        "ConnectOptions" => keys_refused_in::<ConnectOptions>(&format!("{{{X}}}")),
        "SubmitOptions" => {
            let mut k = keys_refused_in::<SubmitOptions>(&format!("{{{X}}}"));
            k.extend(keys_refused_in::<SubmitOptions>(&format!(
                r#"{{"resource_hint":{{{X}}}}}"#
            )));
            k
        }
        "ServerOptions" => keys_refused_in::<ServerOptions>(&format!("{{{X}}}")),
        "WorkerOptions" => {
            let w = |j: String| keys_refused_in::<WorkerOptions>(&j);
            let mut k = w(format!("{{{X}}}"));
            k.extend(w(format!(r#"{{"retry":{{{X}}}}}"#)));
            k.extend(w(format!(r#"{{"capabilities":[{{{X}}}]}}"#)));
            for mode in crate::vocabulary::AdmissionModeCode::ALL {
                let j = format!(r#"{{"admission":{{"mode":"{mode}",{X}}}}}"#);
                let refused = w(j);
                k.extend(refused.into_iter().filter(|x| !x.is_empty()));
            }
            k.insert("mode".into());
            k
        }
        other => panic!("an `Options<{other}>` parameter with no entry here: add one"),
    };
    keys.remove("");
    keys
}

/// Backticked snake_case words of `doc` (`` `max_in_flight` ``).
fn backticked(doc: &str) -> BTreeSet<String> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// The keys a doc names: its backticked words and the quoted keys of its
/// backticked JSON (`` `{"mode": "Fixed", "max_in_flight": n}` ``).
fn named_keys(doc: &str) -> BTreeSet<String> {
    let mut keys = backticked(doc);
    for span in doc.split('`').skip(1).step_by(2) {
        keys.extend(span.split('"').skip(1).step_by(2).map(str::to_string));
    }
    keys
}

#[test]
fn every_option_key_is_documented_and_every_documented_key_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let srcs = [root.join("cabi/src"), root.join("embedded-cp/src")];
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let readme_keys = named_keys(&readme);
    let mut checked = 0;
    for surface in Surface::ALL {
        let table = Table::read(&srcs, surface).expect("the stub table");
        for f in &table.functions {
            let Some(stub) = &f.stub else { continue };
            for p in &stub.params {
                let ParamKind::Text(ty) = &p.kind else {
                    continue;
                };
                if type_name(ty).as_deref() != Some("Options") {
                    continue;
                }
                let inner = generic_arg(ty).and_then(type_name).expect("Options<T>");
                let keys = keys_of(&inner);
                let named = named_keys(&f.doc);
                let missing: Vec<_> = keys.iter().filter(|k| !named.contains(*k)).collect();
                assert!(
                    missing.is_empty(),
                    "{}: the doc does not name the option keys {missing:?}",
                    f.name
                );
                let missing: Vec<_> = keys.iter().filter(|k| !readme_keys.contains(*k)).collect();
                assert!(
                    missing.is_empty(),
                    "README.md never names the option keys {missing:?} of `{}`",
                    f.name
                );
                // The options sentence: from the parameter's name to the
                // end of its parenthesis ("other keys are ...").
                let doc = &f.doc;
                let start = doc
                    .find(&format!("`{}`", p.name))
                    .expect("the doc names the parameter");
                let end = doc[start..]
                    .find("other keys")
                    .map_or(doc.len(), |e| start + e);
                let params: BTreeSet<String> = f.params.iter().map(|(n, _)| n.clone()).collect();
                let unknown: Vec<_> = backticked(&doc[start..end])
                    .into_iter()
                    .filter(|w| !keys.contains(w) && !params.contains(w))
                    // A function the sentence refers to is no key.
                    .filter(|w| !w.starts_with("blazen_"))
                    .collect();
                assert!(
                    unknown.is_empty(),
                    "{}: the doc names {unknown:?} as option keys; `{}` takes {keys:?}",
                    f.name,
                    p.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} options parameters checked");
}

//! Generates `target/generated/adversarial_cases.h`: for every entry point
//! in the stub table and each of its variants, one call per bad value of
//! each parameter (NULL, non-UTF-8, malformed or wrong-shape JSON, a bad
//! UUID, an out-of-range enum), with every other argument valid. The
//! checks live in `tests/c/adversarial.h`; `tests/c/test_adversarial.c`
//! runs the cases. A new stub is covered without writing a case; a new
//! parameter type the generator does not know stops the build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use blazen_cabi_codegen::{
    generic_arg, type_name, Export, Output, Param, ParamKind, Shape, Surface,
};
use syn::Type;

const BAD_UTF8: &str = "BAD_UTF8";

/// Last path segment of a type and its first generic argument.
fn name_of(ty: &Type) -> (String, Option<Type>) {
    (type_name(ty).unwrap_or_default(), generic_arg(ty).cloned())
}

fn c_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A valid C literal for a `const char *` parameter decoded as `ty`, and
/// the bad values to try.
fn text_values(ty: &Type) -> Result<(String, Vec<(String, &'static str)>)> {
    let (name, inner) = name_of(ty);
    let malformed = (c_str("{oops"), "malformed JSON");
    let utf8 = (BAD_UTF8.to_string(), "non-UTF-8");
    let null = ("NULL".to_string(), "NULL");
    Ok(match name.as_str() {
        "String" => (c_str("x"), vec![null, utf8]),
        "Uuid" => (
            c_str("00000000-0000-4000-8000-000000000000"),
            vec![null, utf8, (c_str("not-a-uuid"), "malformed UUID")],
        ),
        "Json" => (c_str("{}"), vec![null, utf8, malformed]),
        "TagList" => (
            "NULL".into(),
            vec![
                utf8,
                malformed,
                (c_str(r#"{"a":"b"}"#), "wrong-shape JSON"),
                (c_str("[1]"), "wrong-shape JSON"),
            ],
        ),
        "Capabilities" => (
            "NULL".into(),
            vec![
                utf8,
                malformed,
                (c_str(r#"[{"kind":3}]"#), "wrong-shape JSON"),
                (c_str("{}"), "wrong-shape JSON"),
            ],
        ),
        "StringMap" => (
            "NULL".into(),
            vec![
                utf8,
                malformed,
                (c_str("[1]"), "wrong-shape JSON"),
                (c_str(r#"{"a":1}"#), "wrong-shape JSON"),
            ],
        ),
        "Options" => (
            "NULL".into(),
            vec![
                utf8,
                malformed,
                (c_str("[1]"), "wrong-shape JSON"),
                (c_str(r#"{"no_such_option":1}"#), "unknown option"),
                (
                    c_str(r#"{"cert_path":"/only/a/cert.pem"}"#),
                    "incomplete TLS options",
                ),
            ],
        ),
        "Option" => {
            let inner = inner.expect("Option<T>");
            let (_, bad) = text_values(&inner)?;
            (
                "NULL".into(),
                bad.into_iter().filter(|(v, _)| v != "NULL").collect(),
            )
        }
        "LogFilter" => (
            c_str("info"),
            vec![
                null,
                utf8,
                (c_str("blazen=notalevel"), "malformed log filter"),
            ],
        ),
        // Raw bytes: anything goes; NULL gives the documented NULL result.
        "Bytes" => (c_str("x"), vec![]),
        other => bail!(
            "adversarial: no values for parameter type `{other}`; teach xtask/src/adversarial.rs"
        ),
    })
}

/// One case: a C expression list of arguments and what is being broken.
struct Case {
    args: Vec<String>,
    param: String,
    what: &'static str,
    needs: Vec<String>,
}

/// The parameters `surface` has, with their declared types (a swapped
/// callback table keeps its C name, which the header gives the swap).
fn params_of(e: &Export, surface: Surface) -> Vec<&Param> {
    e.params
        .iter()
        .filter(|p| p.only.is_none_or(|s| s == surface))
        .collect()
}

fn cases(e: &Export, surface: Surface) -> Result<Vec<Case>> {
    let params = params_of(e, surface);
    let mut valid = Vec::new();
    let mut needs = Vec::new();
    for p in &params {
        valid.push(match &p.kind {
            ParamKind::Handle(ty, _) => {
                let (n, _) = name_of(ty);
                needs.push(n.clone());
                format!("VALID({n})")
            }
            ParamKind::Scalar(_) => "0".into(),
            ParamKind::VTable(ty) => format!("vt_{}()", name_of(ty).0),
            ParamKind::Text(ty) => text_values(ty)?.0,
        });
    }
    let mut out = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let bad: Vec<(String, &'static str)> = match &p.kind {
            ParamKind::Handle(..) => vec![("NULL".into(), "NULL")],
            ParamKind::Text(ty) => text_values(ty)?.1,
            ParamKind::Scalar(_) if p.enum_like => vec![("99".into(), "out-of-range enum")],
            ParamKind::Scalar(_) | ParamKind::VTable(_) => vec![],
        };
        for (value, what) in bad {
            let mut args = valid.clone();
            args[i] = value;
            let mut needed = needs.clone();
            if let ParamKind::Handle(ty, _) = &p.kind {
                let n = name_of(ty).0;
                needed.retain(|x| *x != n);
            }
            out.push(Case {
                args,
                param: p.name.to_string(),
                what,
                needs: needed,
            });
        }
    }
    Ok(out)
}

fn neutral_check(output: &Output) -> String {
    match output {
        Output::Unit => "(void)0;".into(),
        Output::Text | Output::Handle(_) => "CHECK_NEUTRAL(r == NULL);".into(),
        Output::Scalar(ty) => match name_of(ty).0.as_str() {
            "i32" | "i64" => "CHECK_NEUTRAL(r == -1);".into(),
            "bool" => "CHECK_NEUTRAL(!r);".into(),
            _ => "CHECK_NEUTRAL(r == 0);".into(),
        },
        Output::OptionalScalar(_) => "CHECK_NEUTRAL(r == -1 && has == 7);".into(),
    }
}

/// Writes the generated cases of `surface`; returns (path, number of cases).
pub fn generate(root: &Path, surface: Surface) -> Result<(PathBuf, usize)> {
    let mut body = String::new();
    let mut total = 0;
    let table = crate::header::table(root, surface)?;
    for f in &table.functions {
        let Some(e) = &f.stub else { continue };
        let fname = &f.name;
        for c in &cases(e, surface)? {
            let label = c_str(&format!("{fname}({}: {})", c.param, c.what));
            let guard = c
                .needs
                .iter()
                .map(|n| format!("VALID({n}) != NULL"))
                .chain(std::iter::once("1".into()))
                .collect::<Vec<_>>()
                .join(" && ");
            let args = c.args.join(", ");
            let param = c_str(&c.param);
            let call = if let Shape::Sync { .. } = f.shape {
                match &e.output {
                    Output::Unit => {
                        format!("{fname}({args}); {}", neutral_check(&e.output))
                    }
                    Output::OptionalScalar(ty) => {
                        let t = quote::quote!(#ty).to_string();
                        let t = match t.as_str() {
                            "u64" => "uint64_t",
                            "u32" => "uint32_t",
                            other => bail!("adversarial: optional scalar {other}"),
                        };
                        format!(
                            "{t} v = 0; int32_t has = 7; int32_t r = {fname}({args}{}&v, &has); {}",
                            if args.is_empty() { "" } else { ", " },
                            neutral_check(&e.output)
                        )
                    }
                    _ => format!(
                        "__typeof__({fname}({args})) r = {fname}({args}); {}",
                        neutral_check(&e.output)
                    ),
                }
            } else if let Shape::Future { .. } = f.shape {
                format!("expect_future({fname}({args}), {param}, {label});")
            } else {
                let sep = if args.is_empty() { "" } else { ", " };
                match &e.output {
                            Output::Unit => format!(
                                "BlazenError *err = NULL; int32_t rc = {fname}({args}{sep}&err); expect_status(rc, err, 1, {param}, {label});"
                            ),
                            _ => format!(
                                "void *out = NULL; BlazenError *err = NULL; int32_t rc = {fname}({args}{sep}(void *)&out, &err); expect_status(rc, err, out == NULL, {param}, {label});"
                            ),
                        }
            };
            let needs = c_str(&c.needs.join(" "));
            let _ = writeln!(
                body,
                "    if ({guard}) {{ CASE_BEGIN({label}); {call} CASE_END(); }} else skip_case({label}, {needs});"
            );
            total += 1;
        }
    }
    let dir = crate::cc::generated_dir(root, surface);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("adversarial_cases.h");
    let text = format!(
        "/* Generated by `cargo xtask test` from the stub table; do not edit. */\n\
         #define ADVERSARIAL_CASES {total}\n\
         static void run_generated_cases(void) {{\n{body}}}\n"
    );
    std::fs::write(&path, text)?;
    Ok((path, total))
}

//! `cargo xtask ruby [--check]`: writes the Ruby gem's FFI attachments,
//! `bindings/ruby/lib/blazen/native/generated.rb`.
//!
//! It reads what cbindgen reads: the signature stubs the shared codegen
//! makes from every `#[export]`/`#[handle]` item, plus the crate's own
//! `extern "C"` functions, `BLAZEN_*` constants and `#[repr(C)]` callback
//! tables. `blocking: true` (the ffi gem releases the VM lock around the
//! call) comes from the table: the status-returning shape of every `async`
//! stub, `#[export(waits)]` functions, and hand-written functions whose doc
//! begins with "Blocks". Teardown functions never get it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use blazen_cabi_codegen::{annotated, Annotated, Surface as Build};
use quote::ToTokens;
use syn::{Item, Type};

const OUT: &str = "bindings/ruby/lib/blazen/native/generated.rb";

/// One C function as the gem attaches it.
struct Function {
    name: String,
    params: Vec<Type>,
    ret: Option<Type>,
    waits: bool,
    doc: String,
    /// The build whose shape this is, for a function whose shape differs
    /// between builds (None: the same in all).
    build: Option<Build>,
}

/// Everything the attachment file is made of, in source order.
#[derive(Default)]
struct Surface {
    consts: Vec<(String, String)>,
    structs: Vec<(String, Vec<(String, Type)>)>,
    functions: Vec<Function>,
}

fn doc_of(attrs: &[syn::Attribute]) -> String {
    attrs
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_gated(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

fn function(f: &syn::ItemFn, waits: bool) -> Function {
    let params = f
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(pt) => Some((*pt.ty).clone()),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let ret = match &f.sig.output {
        syn::ReturnType::Default => None,
        syn::ReturnType::Type(_, t) => Some((**t).clone()),
    };
    Function {
        name: f.sig.ident.to_string(),
        params,
        ret,
        waits,
        doc: doc_of(&f.attrs),
        build: None,
    }
}

impl Surface {
    fn add_file(&mut self, file: &syn::File) -> Result<()> {
        if is_gated(&file.attrs) {
            return Ok(());
        }
        for a in annotated(file)? {
            let builds: Vec<Option<Build>> = match &a {
                Annotated::Export(e) if e.varies_by_surface() => {
                    Build::ALL.into_iter().map(Some).collect()
                }
                _ => vec![None],
            };
            for build in builds {
                let stubs: syn::File = syn::parse2(match &a {
                    Annotated::Export(e) => e.header_stubs(build.unwrap_or(Build::V0_5)),
                    Annotated::Handle(h) => h.header_stubs(),
                })?;
                for item in stubs.items {
                    if let Item::Fn(f) = item {
                        let waits = match &a {
                            Annotated::Export(e) => e.may_wait(&f.sig.ident.to_string()),
                            Annotated::Handle(_) => false,
                        };
                        self.functions.push(Function {
                            build,
                            ..function(&f, waits)
                        });
                    }
                }
            }
        }
        self.add_items(&file.items);
        Ok(())
    }

    /// The hand-written part of the surface: `extern "C"` functions,
    /// constants and callback tables.
    fn add_items(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Fn(f) if !is_gated(&f.attrs) && is_extern_c(f) => {
                    let waits = doc_of(&f.attrs).starts_with("Blocks");
                    self.functions.push(function(f, waits));
                }
                Item::Const(c) if !is_gated(&c.attrs) => {
                    let name = c.ident.to_string();
                    if let (true, syn::Expr::Lit(syn::ExprLit { lit, .. })) =
                        (name.starts_with("BLAZEN_"), &*c.expr)
                    {
                        self.consts
                            .push((name, lit.to_token_stream().to_string().replace('_', "")));
                    }
                }
                Item::Struct(s) if !is_gated(&s.attrs) && is_repr_c(&s.attrs) => {
                    let fields = s
                        .fields
                        .iter()
                        .map(|f| (f.ident.as_ref().unwrap().to_string(), f.ty.clone()))
                        .collect();
                    self.structs.push((s.ident.to_string(), fields));
                }
                Item::Mod(m) if !is_gated(&m.attrs) => {
                    if let Some((_, items)) = &m.content {
                        self.add_items(items);
                    }
                }
                _ => {}
            }
        }
    }

    fn is_struct(&self, name: &str) -> bool {
        self.structs.iter().any(|(n, _)| n == name)
    }

    /// The ffi gem's type for a C parameter, field or return type.
    fn ffi_type(&self, ty: &Type, is_return: bool) -> Result<String> {
        Ok(match ty {
            Type::Ptr(p) => {
                let to_char = matches!(&*p.elem, Type::Path(e) if e.path.is_ident("c_char"));
                if to_char && p.const_token.is_some() && !is_return {
                    ":string".into()
                } else {
                    ":pointer".into()
                }
            }
            Type::Tuple(t) if t.elems.is_empty() => ":void".into(),
            Type::Path(p) => {
                let last = p.path.segments.last().unwrap().ident.to_string();
                match last.as_str() {
                    "bool" => ":bool".into(),
                    "u8" | "u16" | "u32" | "u64" => format!(":uint{}", &last[1..]),
                    "i8" | "i16" | "i32" | "i64" => format!(":int{}", &last[1..]),
                    "usize" => ":size_t".into(),
                    "f64" => ":double".into(),
                    "f32" => ":float".into(),
                    // Function pointers in callback tables.
                    "Option" => ":pointer".into(),
                    s if self.is_struct(s) => format!("{s}.by_value"),
                    other => bail!("no Ruby FFI type for `{other}`"),
                }
            }
            other => bail!("no Ruby FFI type for `{}`", other.to_token_stream()),
        })
    }

    /// One `attach_function` line with its doc's first sentence.
    fn render_attach(&self, out: &mut String, f: &Function, indent: &str) -> Result<()> {
        let params = f
            .params
            .iter()
            .map(|t| self.ffi_type(t, false))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("parameters of {}", f.name))?;
        let ret = match &f.ret {
            None => ":void".to_string(),
            Some(t) => self.ffi_type(t, true)?,
        };
        writeln!(out, "{indent}# {}", first_sentence(&f.doc))?;
        writeln!(
            out,
            "{indent}attach_function :{}, [{}], {ret}{}",
            f.name,
            params.join(", "),
            if f.waits { ", blocking: true" } else { "" }
        )?;
        Ok(())
    }

    fn render(&self) -> Result<String> {
        let mut out = String::new();
        out.push_str(
            "# frozen_string_literal: true\n\n\
             # Generated by `cargo xtask ruby` from the stub table in cabi/src; do\n\
             # not edit. `blocking: true` marks the functions that may wait (the\n\
             # ffi gem releases the VM lock around them); teardown functions never\n\
             # wait for a callback and are attached without it.\n\n\
             module Blazen\n  module Native\n",
        );
        for (name, value) in &self.consts {
            writeln!(out, "    {} = {value}", name.trim_start_matches("BLAZEN_"))?;
        }
        for (name, fields) in &self.structs {
            writeln!(out, "\n    class {name} < FFI::Struct")?;
            let rows = fields
                .iter()
                .map(|(f, ty)| Ok(format!(":{f}, {}", self.ffi_type(ty, false)?)))
                .collect::<Result<Vec<_>>>()?;
            writeln!(out, "      layout {}", rows.join(",\n             "))?;
            writeln!(out, "    end")?;
        }
        out.push('\n');
        for f in self.functions.iter().filter(|f| f.build.is_none()) {
            self.render_attach(&mut out, f, "    ")?;
        }
        out.push_str(
            "\n    # The reference surface the loaded library was built for\n    \
             # (`blazen_surface()`); the functions whose shape differs between\n    \
             # builds are attached in that build's shape.\n    \
             SURFACE = @load_error || !respond_to?(:blazen_surface) ? SURFACE_V0_5 : blazen_surface\n    \
             case SURFACE\n",
        );
        for build in Build::ALL.into_iter().rev() {
            if build == Build::V0_5 {
                out.push_str("    else\n");
            } else {
                writeln!(out, "    when SURFACE_V0_{}", build.number())?;
            }
            for f in self.functions.iter().filter(|f| f.build == Some(build)) {
                self.render_attach(&mut out, f, "      ")?;
            }
        }
        out.push_str("    end\n");
        let names = |waits: bool| {
            let mut v: Vec<&str> = self
                .functions
                .iter()
                .filter(|f| (!waits || f.waits) && f.build.is_none_or(|b| b == Build::V0_5))
                .map(|f| f.name.as_str())
                .collect();
            v.dedup();
            v.join(" ")
        };
        writeln!(out, "\n    # Every attached function.")?;
        writeln!(out, "    FUNCTIONS = %i[{}].freeze", names(false))?;
        writeln!(out, "    # The functions attached with `blocking: true`.")?;
        writeln!(out, "    WAITING = %i[{}].freeze", names(true))?;
        out.push_str("  end\nend\n");
        Ok(out)
    }
}

/// The doc's first sentence: up to a ". " that starts a capitalised one.
fn first_sentence(doc: &str) -> &str {
    let b = doc.as_bytes();
    (0..b.len().saturating_sub(2))
        .find(|&i| b[i] == b'.' && b[i + 1] == b' ' && b[i + 2].is_ascii_uppercase())
        .map_or(doc.trim_end_matches('.'), |i| &doc[..i])
}

fn is_extern_c(f: &syn::ItemFn) -> bool {
    f.sig
        .abi
        .as_ref()
        .is_some_and(|abi| abi.name.as_ref().is_some_and(|n| n.value() == "C"))
        && f.attrs.iter().any(|a| a.path().is_ident("no_mangle"))
}

fn is_repr_c(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("repr") && a.to_token_stream().to_string().contains('C'))
}

/// The attachment file as the stub table makes it now, and its function count.
pub fn generate(root: &Path) -> Result<(String, usize)> {
    let mut surface = Surface::default();
    for file in crate::header::sources(&root.join("cabi/src"))? {
        let text = std::fs::read_to_string(&file)?;
        let parsed =
            syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        surface
            .add_file(&parsed)
            .with_context(|| format!("reading {}", file.display()))?;
    }
    Ok((surface.render()?, surface.functions.len()))
}

pub fn run(root: &Path, check: bool) -> Result<()> {
    let (fresh, n) = generate(root)?;
    crate::write_or_check(root, OUT, &fresh, check, "ruby")?;
    println!("ruby: {n} functions attached");
    Ok(())
}

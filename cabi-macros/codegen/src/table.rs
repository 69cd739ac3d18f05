//! The resolved table: every C function one surface of the library exports,
//! with its shape, its C parameters and result, plus every handle (with its
//! free/take functions), callback table and constant. Built once from the
//! crate's sources; the header, the Ruby attachments and the bad-input cases
//! are all written from it, and a snapshot test holds it still.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Attribute, Item, Type};

use crate::model::{Export, Shape, Surface, Target};
use crate::vocabulary::{doc_text, Vocabulary};
use crate::walk::{annotated, attr_named, Annotated};

/// One exported C function.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub shape: Shape,
    /// For a [`Shape::Future`]: the take function that collects its result.
    pub take: Option<String>,
    /// The C parameters, as Rust FFI types.
    pub params: Vec<(String, Type)>,
    /// The C result (`None`: void).
    pub ret: Option<Type>,
    /// The doc comment, lines joined by spaces.
    pub doc: String,
    /// Whether the function's C shape differs between surfaces.
    pub varies: bool,
    /// The `#[export]` stub it was generated from, if any.
    pub stub: Option<Export>,
}

/// A handle type and the functions that release it and take it out of a
/// future.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleEntry {
    pub ty: String,
    pub free: Option<String>,
    pub take: Option<String>,
}

/// A `#[repr(C)]` struct (the callback tables and records passed by value).
#[derive(Clone, Debug)]
pub struct Struct {
    pub name: String,
    pub fields: Vec<(String, Type)>,
}

/// A `pub const BLAZEN_*` with a literal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constant {
    pub name: String,
    /// The literal as written, digit separators removed.
    pub value: String,
}

/// Everything one surface exports.
#[derive(Clone, Debug)]
pub struct Table {
    pub surface: Surface,
    pub functions: Vec<Function>,
    pub handles: Vec<HandleEntry>,
    pub structs: Vec<Struct>,
    pub constants: Vec<Constant>,
    /// The `#[vocabulary]` enums; their words are also in `constants`.
    pub vocabularies: Vec<Vocabulary>,
    /// Callback tables this surface swaps in: (Rust name, C name).
    pub renames: Vec<(String, String)>,
    /// Signature-only items of the generated functions, for cbindgen.
    pub stubs: TokenStream,
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_gated(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

fn is_extern_c(f: &syn::ItemFn) -> bool {
    f.sig
        .abi
        .as_ref()
        .is_some_and(|abi| abi.name.as_ref().is_some_and(|n| n.value() == "C"))
        && f.attrs.iter().any(|a| a.path().is_ident("no_mangle"))
}

fn is_repr_c(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("repr") && a.to_token_stream().to_string().contains('C'))
}

fn c_function(f: &syn::ItemFn, shape: Shape) -> Function {
    let params = f
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    syn::Pat::Ident(i) => i.ident.to_string(),
                    other => other.to_token_stream().to_string(),
                };
                Some((name, (*pt.ty).clone()))
            }
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let ret = match &f.sig.output {
        syn::ReturnType::Default => None,
        syn::ReturnType::Type(_, t) => match &**t {
            Type::Tuple(t) if t.elems.is_empty() => None,
            t => Some(t.clone()),
        },
    };
    Function {
        name: f.sig.ident.to_string(),
        shape,
        take: None,
        params,
        ret,
        doc: doc_text(&f.attrs),
        varies: false,
        stub: None,
    }
}

/// `#[hand_written]` / `#[hand_written(waits)]`.
fn hand_written(f: &syn::ItemFn) -> syn::Result<Option<Shape>> {
    let Some(a) = attr_named(&f.attrs, "hand_written") else {
        return Ok(None);
    };
    let waits = match &a.meta {
        syn::Meta::Path(_) => false,
        syn::Meta::List(l) if l.tokens.to_string() == "waits" => true,
        _ => {
            return Err(syn::Error::new_spanned(
                a,
                "expected `#[hand_written]` or `#[hand_written(waits)]`",
            ))
        }
    };
    Ok(Some(Shape::HandWritten { waits }))
}

impl Table {
    /// The table of `surface` from the parsed source files of the crate.
    pub fn from_files(files: &[syn::File], surface: Surface) -> syn::Result<Table> {
        let mut t = Table {
            surface,
            functions: Vec::new(),
            handles: Vec::new(),
            structs: Vec::new(),
            constants: Vec::new(),
            vocabularies: Vec::new(),
            renames: Vec::new(),
            stubs: TokenStream::new(),
        };
        for file in files.iter().filter(|f| !is_gated(&f.attrs)) {
            for a in annotated(file)? {
                t.add_annotated(a)?;
            }
            t.add_items(&file.items)?;
        }
        t.renames.sort();
        t.renames.dedup();
        // A future's take function is its result type's.
        for f in &mut t.functions {
            if let Shape::Future { yields } = &f.shape {
                f.take = match yields {
                    None => Some("blazen_future_take_unit".into()),
                    Some(ty) => {
                        let take = t
                            .handles
                            .iter()
                            .find(|h| &h.ty == ty)
                            .and_then(|h| h.take.clone());
                        Some(take.ok_or_else(|| {
                            syn::Error::new(
                                proc_macro2::Span::call_site(),
                                format!("{}: no `#[handle(take = ..)]` for `{ty}`", f.name),
                            )
                        })?)
                    }
                };
            }
        }
        Ok(t)
    }

    /// The table of `surface` from the source directories of the crates
    /// that make the library (its own, and those whose `#[vocabulary]`
    /// declarations it publishes).
    pub fn read(srcs: &[PathBuf], surface: Surface) -> Result<Table, String> {
        let mut files = Vec::new();
        for src in srcs {
            for path in rust_files(src).map_err(|e| format!("{}: {e}", src.display()))? {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let file =
                    syn::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                files.push(file);
            }
        }
        Table::from_files(&files, surface).map_err(|e| e.to_string())
    }

    fn add_annotated(&mut self, a: Annotated) -> syn::Result<()> {
        let (sigs, stub) = match &a {
            Annotated::Export(e) => {
                self.renames.extend(e.renames(self.surface));
                (e.c_signatures(Target::Header, self.surface), Some(e))
            }
            Annotated::Vocabulary(v) => {
                for w in &v.words {
                    self.constants.push(Constant {
                        name: w.constant.clone(),
                        value: v.value(w),
                    });
                }
                self.vocabularies.push(v.clone());
                return Ok(());
            }
            Annotated::Handle(h) => {
                self.handles.push(HandleEntry {
                    ty: h.ty.to_string(),
                    free: h.free.as_ref().map(|i| i.to_string()),
                    take: h.take.as_ref().map(|i| i.to_string()),
                });
                (h.signatures(Target::Header), None)
            }
        };
        for sig in sigs {
            let item = sig.item(TokenStream::new(), quote::quote!(unreachable!()));
            let f: syn::ItemFn = syn::parse2(item.clone())?;
            self.stubs.extend(item);
            self.functions.push(Function {
                varies: stub.is_some_and(|e| e.varies_by_surface()),
                stub: stub.cloned(),
                ..c_function(&f, sig.shape.clone())
            });
        }
        Ok(())
    }

    /// The hand-written part: `#[hand_written]` functions, constants and
    /// `#[repr(C)]` structs. An exported function that is neither
    /// generated nor marked is an error: nothing is exported outside the
    /// table.
    fn add_items(&mut self, items: &[Item]) -> syn::Result<()> {
        for item in items {
            match item {
                Item::Fn(f) if !is_gated(&f.attrs) => match hand_written(f)? {
                    Some(shape) if is_extern_c(f) => self.functions.push(c_function(f, shape)),
                    Some(_) => {
                        return Err(syn::Error::new_spanned(
                            &f.sig,
                            "`#[hand_written]` goes on a `#[no_mangle] extern \"C\"` function",
                        ))
                    }
                    None if is_extern_c(f) => {
                        return Err(syn::Error::new_spanned(
                            &f.sig,
                            "an exported function outside the table: generate it with `#[export]` or mark it `#[hand_written]`",
                        ))
                    }
                    None => {}
                },
                Item::Const(c) if !is_gated(&c.attrs) => {
                    let name = c.ident.to_string();
                    if let (true, syn::Expr::Lit(syn::ExprLit { lit, .. })) =
                        (name.starts_with("BLAZEN_"), &*c.expr)
                    {
                        self.constants.push(Constant {
                            name,
                            value: lit.to_token_stream().to_string().replace('_', ""),
                        });
                    }
                }
                Item::Struct(s) if !is_gated(&s.attrs) && is_repr_c(&s.attrs) => {
                    let fields = s
                        .fields
                        .iter()
                        .map(|f| {
                            let name = f.ident.as_ref().map(|i| i.to_string());
                            (name.unwrap_or_default(), f.ty.clone())
                        })
                        .collect();
                    self.structs.push(Struct {
                        name: s.ident.to_string(),
                        fields,
                    });
                }
                Item::Mod(m) if !is_gated(&m.attrs) => {
                    if let Some((_, items)) = &m.content {
                        self.add_items(items)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The `#define`s of every vocabulary, for the header.
    pub fn vocabulary_defines(&self) -> String {
        self.vocabularies
            .iter()
            .map(|v| v.c_defines())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether `name` is a `#[repr(C)]` struct of the table.
    pub fn is_struct(&self, name: &str) -> bool {
        self.structs.iter().any(|s| s.name == name)
    }

    /// A plain-text listing, one line per entry, sorted: what the snapshot
    /// test compares.
    pub fn listing(&self) -> String {
        let ty = |t: &Type| {
            let s = t.to_token_stream().to_string();
            s.replace("* const ", "*const ").replace("* mut ", "*mut ")
        };
        let mut out = String::new();
        let mut fns: Vec<&Function> = self.functions.iter().collect();
        fns.sort_by(|a, b| a.name.cmp(&b.name));
        let _ = writeln!(out, "# surface {}", self.surface.name());
        for f in fns {
            let params = f
                .params
                .iter()
                .map(|(n, t)| format!("{n}: {}", ty(t)))
                .collect::<Vec<_>>()
                .join(", ");
            let ret = f.ret.as_ref().map(|t| format!(" -> {}", ty(t)));
            let take = f.take.as_ref().map(|t| format!(", take {t}"));
            let _ = writeln!(
                out,
                "fn {}({params}){} [{}{}{}]",
                f.name,
                ret.unwrap_or_default(),
                f.shape.label(),
                take.unwrap_or_default(),
                if f.varies { ", varies" } else { "" },
            );
        }
        let mut handles = self.handles.clone();
        handles.sort_by(|a, b| a.ty.cmp(&b.ty));
        for h in handles {
            let _ = writeln!(
                out,
                "handle {} [free {}, take {}]",
                h.ty,
                h.free.as_deref().unwrap_or("-"),
                h.take.as_deref().unwrap_or("-")
            );
        }
        let mut structs: Vec<&Struct> = self.structs.iter().collect();
        structs.sort_by(|a, b| a.name.cmp(&b.name));
        for s in structs {
            let fields = s
                .fields
                .iter()
                .map(|(n, t)| format!("{n}: {}", ty(t)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "struct {} {{ {fields} }}", s.name);
        }
        let mut consts = self.constants.clone();
        consts.sort_by(|a, b| a.name.cmp(&b.name));
        for c in consts {
            let _ = writeln!(out, "const {} = {}", c.name, c.value);
        }
        for v in &self.vocabularies {
            let words = v.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>();
            let _ = writeln!(out, "vocabulary {} [{}]", v.ty, words.join(", "));
        }
        for (from, to) in &self.renames {
            let _ = writeln!(out, "rename {from} -> {to}");
        }
        out
    }
}

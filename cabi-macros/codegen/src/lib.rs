//! Expansion logic for the blazen-cabi attribute macros.
//!
//! This is an ordinary library so that two consumers can share it:
//! - `blazen-cabi-macros` (the proc-macro crate) calls [`expand_export`] and
//!   [`expand_handle`] to generate the real `extern "C"` entry points;
//! - the `xtask` header generator calls [`header_stubs`] on the parsed
//!   sources to get the same signatures as plain Rust items (bodies elided)
//!   that cbindgen can read on a stable toolchain.
//!
//! The C signature of every generated function is computed in exactly one
//! place ([`Export::c_signatures`]), so the header can never disagree with
//! the library.
//!
//! # Stub conventions
//!
//! `#[export]` goes on a function whose name is the C name of the operation.
//! Parameters map by their Rust type:
//!
//! | stub type              | C type              | decoding                          |
//! |------------------------|---------------------|-----------------------------------|
//! | `&T`                   | `const T *`         | NULL-checked handle               |
//! | `bool`, integers, `f64`| same                | passed through                    |
//! | `XxxVTable`            | `XxxVTable` (value) | owned first, released on any path |
//! | any other type `X`     | `const char *`      | `X: FromCStr` (UTF-8, JSON, UUID) |
//!
//! An `async fn` returning `Result<T>` becomes `NAME_blocking(.., T **out,
//! BlazenError **out_err) -> int32_t` and `NAME(..) -> BlazenFuture *`
//! (`#[export(blocking)]`: only the first; `#[export(status)]`: only the
//! first, named `NAME`). A plain `fn` becomes one function with no error
//! slot; bad input yields its return type's neutral value.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, FnArg, Ident, ItemFn, ItemStruct, LitStr, Pat, ReturnType, Token, Type,
    TypeReference,
};

/// How an `#[export]` stub is turned into entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `async fn`: `NAME_blocking` and the future-returning `NAME`.
    Both,
    /// `async fn` with `#[export(blocking)]`: only `NAME_blocking`.
    BlockingOnly,
    /// `async fn` with `#[export(status)]`: one status-returning `NAME`.
    Status,
    /// plain `fn`: one function, no error slot.
    Sync,
}

/// Whether tokens are generated for the compiler or for cbindgen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Real entry points, paths resolved inside the `blazen_cabi` crate.
    Library,
    /// Signature-only items for the header generator.
    Header,
}

/// How one stub parameter crosses the boundary.
#[derive(Clone, Debug)]
pub enum ParamKind {
    /// `&T`: a `const T *` handle (`&mut T`: `T *`).
    Handle(Type, bool),
    /// A scalar passed by value.
    Scalar(Type),
    /// A callback table passed by value; the library owns its `user_data`.
    VTable(Type),
    /// A `const char *` decoded through `FromCStr` into the given type.
    Text(Type),
}

/// One stub parameter.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: Ident,
    pub kind: ParamKind,
    /// `#[enum_like]`: an integer with a closed set of meanings, checked by
    /// the stub (generated tests pass it an out-of-range value).
    pub enum_like: bool,
}

/// What a stub returns.
#[derive(Clone, Debug)]
pub enum Output {
    /// `()` / `Result<()>`.
    Unit,
    /// `String` / `Option<String>`: a caller-owned `char *`.
    Text,
    /// A scalar returned as is.
    Scalar(Type),
    /// `Option<u64>` and friends in a sync stub: the `(out_value, has_value)` shape.
    OptionalScalar(Type),
    /// A handle type, returned as `T *` (boxed, caller-owned).
    Handle(Type),
}

/// A parsed `#[export]` stub.
#[derive(Clone, Debug)]
pub struct Export {
    pub mode: Mode,
    /// `#[export(waits)]` on a plain `fn`: it may block the calling thread
    /// (for the network or the library's own work, never a callback), so
    /// hosts with a global lock release it around the call.
    pub waits: bool,
    pub name: Ident,
    pub docs: Vec<Attribute>,
    pub params: Vec<Param>,
    pub output: Output,
    pub item: ItemFn,
}

struct ExportArgs {
    mode: Option<Mode>,
    waits: bool,
}

impl Parse for ExportArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let idents = Punctuated::<Ident, Token![,]>::parse_terminated(input)?;
        let mut mode = None;
        let mut waits = false;
        for id in idents {
            let m = match id.to_string().as_str() {
                "waits" => {
                    waits = true;
                    continue;
                }
                "blocking" => Mode::BlockingOnly,
                "status" => Mode::Status,
                other => {
                    return Err(syn::Error::new(
                        id.span(),
                        format!(
                            "unknown export option `{other}` (expected `blocking`, `status` or `waits`)"
                        ),
                    ))
                }
            };
            if mode.replace(m).is_some() {
                return Err(syn::Error::new(
                    id.span(),
                    "only one export option is allowed",
                ));
            }
        }
        Ok(Self { mode, waits })
    }
}

const SCALARS: &[&str] = &[
    "bool", "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f32", "f64",
];

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn type_name(ty: &Type) -> Option<String> {
    last_segment(ty).map(|s| s.ident.to_string())
}

fn is_scalar(ty: &Type) -> bool {
    type_name(ty).is_some_and(|n| SCALARS.contains(&n.as_str()))
}

fn generic_arg(ty: &Type) -> Option<&Type> {
    match &last_segment(ty)?.arguments {
        syn::PathArguments::AngleBracketed(a) => a.args.iter().find_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn classify_param(ty: &Type) -> syn::Result<ParamKind> {
    if let Type::Reference(TypeReference {
        mutability, elem, ..
    }) = ty
    {
        return match &**elem {
            Type::Path(_) if type_name(elem).as_deref() != Some("str") => {
                Ok(ParamKind::Handle((**elem).clone(), mutability.is_some()))
            }
            _ => Err(syn::Error::new_spanned(
                ty,
                "a borrowed parameter must be a handle type (`&Handle`); take strings as `String`",
            )),
        };
    }
    if matches!(ty, Type::Ptr(_)) {
        return Err(syn::Error::new_spanned(
            ty,
            "raw pointers are not allowed in stubs; the macro does the pointer work",
        ));
    }
    if is_scalar(ty) {
        return Ok(ParamKind::Scalar(ty.clone()));
    }
    if type_name(ty).is_some_and(|n| n.ends_with("VTable")) {
        return Ok(ParamKind::VTable(ty.clone()));
    }
    if last_segment(ty).is_some() {
        return Ok(ParamKind::Text(ty.clone()));
    }
    Err(syn::Error::new_spanned(
        ty,
        "unsupported parameter type in an exported stub",
    ))
}

fn classify_output(ty: &Type, sync: bool) -> syn::Result<Output> {
    if is_unit(ty) {
        return Ok(Output::Unit);
    }
    if is_scalar(ty) {
        return Ok(Output::Scalar(ty.clone()));
    }
    match type_name(ty).as_deref() {
        Some("String") => return Ok(Output::Text),
        Some("Option") => {
            let inner = generic_arg(ty)
                .ok_or_else(|| syn::Error::new_spanned(ty, "Option needs a type argument"))?;
            if type_name(inner).as_deref() == Some("String") {
                return Ok(Output::Text);
            }
            if is_scalar(inner) && sync {
                return Ok(Output::OptionalScalar(inner.clone()));
            }
            if !is_scalar(inner) && last_segment(inner).is_some() {
                return Ok(Output::Handle(inner.clone()));
            }
        }
        Some(_) => return Ok(Output::Handle(ty.clone())),
        None => {}
    }
    Err(syn::Error::new_spanned(
        ty,
        "unsupported return type in an exported stub",
    ))
}

fn doc_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect()
}

impl Export {
    /// Parses an `#[export(...)]` attribute and the function it sits on.
    pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Self> {
        let args: ExportArgs = syn::parse2(attr)?;
        let item: ItemFn = syn::parse2(item)?;
        let is_async = item.sig.asyncness.is_some();
        let mode = match (is_async, args.mode) {
            (true, _) if args.waits => {
                return Err(syn::Error::new_spanned(
                    &item.sig,
                    "`waits` applies to plain `fn` stubs (async ones wait already)",
                ))
            }
            (true, None) => Mode::Both,
            (true, Some(m)) => m,
            (false, None) => Mode::Sync,
            (false, Some(_)) => {
                return Err(syn::Error::new_spanned(
                    &item.sig,
                    "`blocking` and `status` apply to `async fn` stubs only",
                ))
            }
        };
        let docs = doc_attrs(&item.attrs);
        if docs.is_empty() {
            return Err(syn::Error::new_spanned(
                &item.sig.ident,
                "an exported function needs a doc comment stating ownership of its arguments and result",
            ));
        }
        if !item.sig.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &item.sig.generics,
                "stubs cannot be generic",
            ));
        }
        let mut item = item;
        let mut params = Vec::new();
        for input in item.sig.inputs.iter_mut() {
            let FnArg::Typed(pt) = input else {
                return Err(syn::Error::new_spanned(input, "stubs are free functions"));
            };
            let Pat::Ident(pi) = &*pt.pat else {
                return Err(syn::Error::new_spanned(
                    &pt.pat,
                    "parameters must be plain names",
                ));
            };
            let before = pt.attrs.len();
            pt.attrs.retain(|a| !a.path().is_ident("enum_like"));
            let enum_like = pt.attrs.len() != before;
            if let Some(a) = pt.attrs.first() {
                return Err(syn::Error::new_spanned(
                    a,
                    "the only parameter attribute is `#[enum_like]`",
                ));
            }
            let kind = classify_param(&pt.ty)?;
            if enum_like && !matches!(kind, ParamKind::Scalar(_)) {
                return Err(syn::Error::new_spanned(
                    &pt.ty,
                    "`#[enum_like]` marks an integer parameter",
                ));
            }
            params.push(Param {
                name: pi.ident.clone(),
                kind,
                enum_like,
            });
        }
        let ret_ty: Type = match &item.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, t) => (**t).clone(),
        };
        let output = if mode == Mode::Sync {
            classify_output(&ret_ty, true)?
        } else {
            if type_name(&ret_ty).as_deref() != Some("Result") {
                return Err(syn::Error::new_spanned(
                    &ret_ty,
                    "an async stub returns `Result<T>` (the crate's error alias)",
                ));
            }
            let inner = generic_arg(&ret_ty)
                .ok_or_else(|| syn::Error::new_spanned(&ret_ty, "Result needs a type argument"))?;
            match classify_output(inner, false)? {
                o @ (Output::Unit | Output::Handle(_)) => o,
                Output::Text if mode != Mode::Both => Output::Text,
                _ => {
                    return Err(syn::Error::new_spanned(
                        inner,
                        "an async stub yields `()` or a handle type (or, with `blocking`/`status`, a `String` of JSON)",
                    ))
                }
            }
        };
        Ok(Self {
            mode,
            waits: args.waits,
            name: item.sig.ident.clone(),
            docs,
            params,
            output,
            item,
        })
    }

    fn body_ident(&self) -> Ident {
        format_ident!("__{}_body", self.name)
    }

    /// Whether the generated function `c_name` may block the calling
    /// thread: every status-returning shape of an `async` stub (they block
    /// on the runtime) and `#[export(waits)]` functions. Hosts with a global
    /// lock release it around these calls and no others.
    pub fn may_wait(&self, c_name: &str) -> bool {
        match self.mode {
            Mode::Sync => self.waits,
            Mode::Both => c_name.ends_with("_blocking"),
            Mode::BlockingOnly | Mode::Status => true,
        }
    }

    /// C names of the generated functions, in header order.
    pub fn c_names(&self) -> Vec<String> {
        let n = self.name.to_string();
        match self.mode {
            Mode::Both => vec![format!("{n}_blocking"), n],
            Mode::BlockingOnly => vec![format!("{n}_blocking")],
            Mode::Status | Mode::Sync => vec![n],
        }
    }

    /// The C-side parameter list for the stub's own parameters.
    fn c_params(&self, t: Target) -> Vec<TokenStream> {
        let c_char = c_char(t);
        self.params
            .iter()
            .map(|p| {
                let name = &p.name;
                match &p.kind {
                    ParamKind::Handle(ty, false) => quote!(#name: *const #ty),
                    ParamKind::Handle(ty, true) => quote!(#name: *mut #ty),
                    ParamKind::Scalar(ty) | ParamKind::VTable(ty) => quote!(#name: #ty),
                    ParamKind::Text(_) => quote!(#name: *const #c_char),
                }
            })
            .collect()
    }

    /// Out-parameters and return type of the status-returning shape.
    fn status_tail(&self, t: Target) -> (Vec<TokenStream>, TokenStream) {
        let err = error_ty(t);
        let mut outs = Vec::new();
        match &self.output {
            Output::Handle(ty) => {
                let out = out_ident(ty);
                outs.push(quote!(#out: *mut *mut #ty));
            }
            Output::Text => {
                let c = c_char(t);
                outs.push(quote!(out_json: *mut *mut #c));
            }
            _ => {}
        }
        outs.push(quote!(out_err: *mut *mut #err));
        (outs, quote!(i32))
    }

    /// Every generated signature (`fn NAME(args) -> R`), with the docs.
    /// Header stubs and real entry points are both built from this.
    fn c_signatures(&self, t: Target) -> Vec<(Ident, Vec<TokenStream>, TokenStream, TokenStream)> {
        let params = self.c_params(t);
        let mut sigs = Vec::new();
        let extra_doc = |s: &str| -> TokenStream {
            let lit = LitStr::new(&format!(" {s}"), Span::call_site());
            quote!(#[doc = ""] #[doc = #lit])
        };
        match self.mode {
            Mode::Both | Mode::BlockingOnly | Mode::Status => {
                let (outs, ret) = self.status_tail(t);
                let name = if self.mode == Mode::Status {
                    self.name.clone()
                } else {
                    format_ident!("{}_blocking", self.name)
                };
                let mut all = params.clone();
                all.extend(outs);
                let out_note = match &self.output {
                    Output::Handle(ty) => format!(
                        "Blocks the calling thread. Returns 0 and stores a new caller-owned `{}` in `*{}` (free it with its `_free`), or -1 and stores a caller-owned `BlazenError` in `*out_err` (free with `blazen_error_free`). Either out-pointer may be NULL.",
                        quote!(#ty),
                        out_ident(ty)
                    ),
                    Output::Text => "Blocks the calling thread. Returns 0 and stores a caller-owned JSON string in `*out_json` (free with `blazen_string_free`), or -1 and stores a caller-owned `BlazenError` in `*out_err` (free with `blazen_error_free`). Either out-pointer may be NULL.".to_string(),
                    _ => "Blocks the calling thread. Returns 0, or -1 and stores a caller-owned `BlazenError` in `*out_err` (free with `blazen_error_free`; `out_err` may be NULL).".to_string(),
                };
                sigs.push((name, all, ret, extra_doc(&out_note)));
                if self.mode == Mode::Both {
                    let fut = future_ty(t);
                    let take = match &self.output {
                        Output::Handle(ty) => {
                            format!("the matching `blazen_future_take_*` for `{}`", quote!(#ty))
                        }
                        _ => "`blazen_future_take_unit`".to_string(),
                    };
                    let note = format!(
                        "Non-blocking: returns a caller-owned `BlazenFuture` (never NULL) running the operation; await it with `blazen_future_poll`, `blazen_future_wait` or `blazen_future_fd`, collect it with {take}, and release it with `blazen_future_free`. Invalid arguments give an already-failed future."
                    );
                    sigs.push((
                        self.name.clone(),
                        params,
                        quote!(*mut #fut),
                        extra_doc(&note),
                    ));
                }
            }
            Mode::Sync => {
                let mut all = params;
                let ret = match &self.output {
                    Output::Unit => quote!(()),
                    Output::Text => {
                        let c = c_char(t);
                        quote!(*mut #c)
                    }
                    Output::Scalar(ty) => quote!(#ty),
                    Output::Handle(ty) => quote!(*mut #ty),
                    Output::OptionalScalar(ty) => {
                        all.push(quote!(out_value: *mut #ty));
                        all.push(quote!(has_value: *mut i32));
                        quote!(i32)
                    }
                };
                let note = match &self.output {
                    Output::OptionalScalar(_) => Some("Returns 0 and sets `*has_value` to 1 (value stored in `*out_value`) or 0 (no value); returns -1 when a handle is NULL. Either out-pointer may be NULL."),
                    Output::Text => Some("The returned string is caller-owned (free with `blazen_string_free`); NULL when absent or on invalid arguments."),
                    _ => None,
                };
                let extra = note.map(extra_doc).unwrap_or_default();
                sigs.push((self.name.clone(), all, ret, extra));
            }
        }
        sigs
    }

    /// Signature-only items for cbindgen.
    pub fn header_stubs(&self) -> TokenStream {
        let docs = &self.docs;
        self.c_signatures(Target::Header)
            .into_iter()
            .map(|(name, params, ret, extra)| {
                quote! {
                    #(#docs)*
                    #extra
                    #[no_mangle]
                    pub unsafe extern "C" fn #name(#(#params),*) -> #ret { unreachable!() }
                }
            })
            .collect()
    }

    /// Statements decoding every C argument into the body's argument,
    /// callback tables first so their `user_data` is owned on every path.
    fn decoders(&self, owned_handles: bool) -> TokenStream {
        let mut vt = Vec::new();
        let mut rest = Vec::new();
        for p in &self.params {
            let name = &p.name;
            let lit = LitStr::new(&name.to_string(), name.span());
            match &p.kind {
                ParamKind::VTable(_) => {
                    vt.push(quote!(let #name = crate::rt::arg::callbacks(#name);));
                }
                ParamKind::Handle(..) if owned_handles => rest.push(
                    quote!(let #name = ::core::clone::Clone::clone(unsafe { crate::rt::arg::handle(#name, #lit) }?);),
                ),
                ParamKind::Handle(_, false) => {
                    rest.push(quote!(let #name = unsafe { crate::rt::arg::handle(#name, #lit) }?;))
                }
                ParamKind::Handle(_, true) => rest.push(
                    quote!(let #name = unsafe { crate::rt::arg::handle_mut(#name, #lit) }?;),
                ),
                ParamKind::Scalar(_) => {}
                ParamKind::Text(ty) => rest.push(
                    quote!(let #name: #ty = unsafe { crate::rt::arg::text(#name, #lit) }?;),
                ),
            }
        }
        quote!(#(#vt)* #(#rest)*)
    }

    fn call_args(&self, owned_handles: bool) -> Vec<TokenStream> {
        self.params
            .iter()
            .map(|p| {
                let name = &p.name;
                match p.kind {
                    ParamKind::Handle(..) if owned_handles => quote!(&#name),
                    _ => quote!(#name),
                }
            })
            .collect()
    }

    /// The renamed stub: the original body under a private name, with
    /// callback parameters turned into their owning wrappers.
    fn body_fn(&self) -> TokenStream {
        let mut item = self.item.clone();
        item.sig.ident = self.body_ident();
        item.attrs.retain(|a| !a.path().is_ident("doc"));
        item.vis = syn::Visibility::Inherited;
        for (input, p) in item.sig.inputs.iter_mut().zip(&self.params) {
            if let (FnArg::Typed(pt), ParamKind::VTable(ty)) = (input, &p.kind) {
                *pt.ty = syn::parse_quote!(<#ty as crate::rt::arg::Callbacks>::Owner);
            }
        }
        quote! {
            #[allow(clippy::too_many_arguments, non_snake_case)]
            #item
        }
    }

    /// The real entry points.
    pub fn expand(&self) -> TokenStream {
        let body_fn = self.body_fn();
        let body = self.body_ident();
        let docs = &self.docs;
        let label = LitStr::new(&self.name.to_string(), self.name.span());
        let sigs = self.c_signatures(Target::Library);
        let mut fns = Vec::new();
        for (i, (name, params, ret, extra)) in sigs.into_iter().enumerate() {
            let call = match self.mode {
                Mode::Sync => {
                    let dec = self.decoders(false);
                    let args = self.call_args(false);
                    let ret_call = match &self.output {
                        Output::OptionalScalar(_) => {
                            quote!(crate::rt::ret::optional(#label, out_value, has_value, || { #dec Ok(#body(#(#args),*)) }))
                        }
                        _ => {
                            quote!(crate::rt::ret::sync(#label, || { #dec Ok(#body(#(#args),*)) }))
                        }
                    };
                    ret_call
                }
                _ => {
                    let dec = self.decoders(true);
                    let args = self.call_args(true);
                    let make = quote!(move || { #dec Ok(async move { #body(#(#args),*).await }) });
                    let is_future = self.mode == Mode::Both && i == 1;
                    match (&self.output, is_future) {
                        (_, true) => quote!(crate::rt::call::future(#label, #make)),
                        (Output::Handle(ty), false) => {
                            let out = out_ident(ty);
                            quote!(crate::rt::call::blocking(#label, #out, out_err, #make))
                        }
                        (Output::Text, false) => {
                            quote!(crate::rt::call::blocking_text(#label, out_json, out_err, #make))
                        }
                        (_, false) => {
                            quote!(crate::rt::call::blocking_unit(#label, out_err, #make))
                        }
                    }
                }
            };
            fns.push(quote! {
                #(#docs)*
                #extra
                #[no_mangle]
                #[allow(clippy::too_many_arguments, clippy::missing_safety_doc, unused_unsafe)]
                pub unsafe extern "C" fn #name(#(#params),*) -> #ret {
                    #call
                }
            });
        }
        quote! {
            #body_fn
            #(#fns)*
        }
    }
}

fn out_ident(ty: &Type) -> Ident {
    let name = type_name(ty).unwrap_or_default();
    let snake =
        name.strip_prefix("Blazen")
            .unwrap_or(&name)
            .chars()
            .fold(String::new(), |mut acc, c| {
                if c.is_uppercase() {
                    if !acc.is_empty() {
                        acc.push('_');
                    }
                    acc.extend(c.to_lowercase());
                } else {
                    acc.push(c);
                }
                acc
            });
    let short = snake.rsplit('_').next().unwrap_or("value");
    format_ident!(
        "out_{}",
        if snake.ends_with("_list") {
            "list"
        } else {
            short
        }
    )
}

fn c_char(t: Target) -> TokenStream {
    match t {
        Target::Library => quote!(::core::ffi::c_char),
        Target::Header => quote!(c_char),
    }
}

fn error_ty(t: Target) -> TokenStream {
    match t {
        Target::Library => quote!(crate::rt::BlazenError),
        Target::Header => quote!(BlazenError),
    }
}

fn future_ty(t: Target) -> TokenStream {
    match t {
        Target::Library => quote!(crate::rt::BlazenFuture),
        Target::Header => quote!(BlazenFuture),
    }
}

/// `#[handle(free = "...", take = "...")]` on a handle struct.
#[derive(Clone, Debug)]
pub struct Handle {
    pub ty: Ident,
    pub free: Option<Ident>,
    pub take: Option<Ident>,
    pub item: ItemStruct,
}

impl Handle {
    /// Parses the attribute and the struct it sits on.
    pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Self> {
        let item: ItemStruct = syn::parse2(item)?;
        let metas = syn::parse::Parser::parse2(
            Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated,
            attr,
        )?;
        let mut free = None;
        let mut take = None;
        for m in metas {
            let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &m.value
            else {
                return Err(syn::Error::new_spanned(
                    &m.value,
                    "expected a string literal",
                ));
            };
            let id = Ident::new(&s.value(), s.span());
            if m.path.is_ident("free") {
                free = Some(id);
            } else if m.path.is_ident("take") {
                take = Some(id);
            } else {
                return Err(syn::Error::new_spanned(
                    &m.path,
                    "expected `free` or `take`",
                ));
            }
        }
        if free.is_none() && take.is_none() {
            return Err(syn::Error::new(
                Span::call_site(),
                "`#[handle]` needs `free` and/or `take`",
            ));
        }
        Ok(Self {
            ty: item.ident.clone(),
            free,
            take,
            item,
        })
    }

    fn signatures(&self, t: Target) -> Vec<(Ident, TokenStream, TokenStream, String)> {
        let ty = &self.ty;
        let err = error_ty(t);
        let fut = future_ty(t);
        let mut v = Vec::new();
        if let Some(take) = &self.take {
            let out = out_ident(&syn::parse_quote!(#ty));
            v.push((
                take.clone(),
                quote!(fut: *mut #fut, #out: *mut *mut #ty, out_err: *mut *mut #err),
                quote!(i32),
                format!("Takes the result of a future that yields a `{ty}`. Exactly once, after the future is ready: returns 0 and stores a caller-owned `{ty}` in `*{out}`, or -1 and stores a caller-owned `BlazenError` (the operation's error; INTERNAL for a pending future, a second take, or a future of another type). The future stays owned by the caller. Out-pointers may be NULL."),
            ));
        }
        if let Some(free) = &self.free {
            v.push((
                free.clone(),
                quote!(handle: *mut #ty),
                quote!(()),
                format!("Releases a caller-owned `{ty}`. NULL is accepted and ignored; the handle must not be used afterwards. Returns promptly: it never waits for a host callback to start or finish (a callback table the handle owns gets `drop_user_data` as its last call, on a library thread once its callbacks are over, or on this thread when none is in flight)."),
            ));
        }
        v
    }

    /// Signature-only items for cbindgen.
    pub fn header_stubs(&self) -> TokenStream {
        self.signatures(Target::Header)
            .into_iter()
            .map(|(name, params, ret, doc)| {
                let doc = format!(" {doc}");
                quote! {
                    #[doc = #doc]
                    #[no_mangle]
                    pub unsafe extern "C" fn #name(#params) -> #ret { unreachable!() }
                }
            })
            .collect()
    }

    /// The struct unchanged plus its `take`/`free` entry points.
    pub fn expand(&self) -> TokenStream {
        let item = &self.item;
        let ty = &self.ty;
        let fns = self
            .signatures(Target::Library)
            .into_iter()
            .map(|(name, params, ret, doc)| {
                let is_take = Some(&name) == self.take.as_ref();
                let label = LitStr::new(&name.to_string(), name.span());
                let body = if is_take {
                    let out = out_ident(&syn::parse_quote!(#ty));
                    quote!(unsafe { crate::rt::future::take::<#ty>(#label, fut, #out, out_err) })
                } else {
                    quote!(unsafe { crate::rt::ret::free::<#ty>(#label, handle) })
                };
                let doc = format!(" {doc}");
                quote! {
                    #[doc = #doc]
                    #[no_mangle]
                    #[allow(clippy::missing_safety_doc)]
                    pub unsafe extern "C" fn #name(#params) -> #ret { #body }
                }
            });
        quote! {
            #item
            impl crate::rt::ret::OwnedHandle for #ty {}
            #(#fns)*
        }
    }
}

/// Entry point of the `#[export]` attribute.
pub fn expand_export(attr: TokenStream, item: TokenStream) -> TokenStream {
    Export::parse(attr, item)
        .map(|e| e.expand())
        .unwrap_or_else(syn::Error::into_compile_error)
}

/// Entry point of the `#[handle]` attribute.
pub fn expand_handle(attr: TokenStream, item: TokenStream) -> TokenStream {
    Handle::parse(attr, item)
        .map(|h| h.expand())
        .unwrap_or_else(syn::Error::into_compile_error)
}

fn attr_named<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs
        .iter()
        .find(|a| a.path().segments.last().is_some_and(|s| s.ident == name))
}

fn attr_tokens(a: &Attribute) -> TokenStream {
    match &a.meta {
        syn::Meta::List(l) => l.tokens.clone(),
        _ => TokenStream::new(),
    }
}

/// An annotated item of a source file.
#[allow(clippy::large_enum_variant)] // a few dozen per file, built once per header
pub enum Annotated {
    Export(Export),
    Handle(Handle),
}

/// Every `#[export]` function and `#[handle]` struct of a parsed source file
/// (inline modules included), in source order. A `#![cfg(..)]` file and
/// `#[cfg(..)]` items (tests, test-only features) are left out: they are not
/// part of the published surface.
pub fn annotated(file: &syn::File) -> syn::Result<Vec<Annotated>> {
    let mut v = Vec::new();
    if !file.attrs.iter().any(|a| a.path().is_ident("cfg")) {
        walk(&file.items, &mut v)?;
    }
    Ok(v)
}

fn is_cfg_gated(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Fn(f) => &f.attrs,
        syn::Item::Struct(s) => &s.attrs,
        syn::Item::Mod(m) => &m.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

fn walk(items: &[syn::Item], v: &mut Vec<Annotated>) -> syn::Result<()> {
    for item in items.iter().filter(|i| !is_cfg_gated(i)) {
        match item {
            syn::Item::Fn(f) => {
                if let Some(a) = attr_named(&f.attrs, "export") {
                    let mut f = f.clone();
                    f.attrs.retain(|x| x != a);
                    v.push(Annotated::Export(Export::parse(
                        attr_tokens(a),
                        quote!(#f),
                    )?));
                }
            }
            syn::Item::Struct(s) => {
                if let Some(a) = attr_named(&s.attrs, "handle") {
                    let mut s = s.clone();
                    s.attrs.retain(|x| x != a);
                    v.push(Annotated::Handle(Handle::parse(
                        attr_tokens(a),
                        quote!(#s),
                    )?));
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    walk(items, v)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Signature stubs of every annotated item of a parsed source file, for
/// cbindgen.
pub fn header_stubs(file: &syn::File) -> syn::Result<TokenStream> {
    Ok(annotated(file)?
        .iter()
        .map(|a| match a {
            Annotated::Export(e) => e.header_stubs(),
            Annotated::Handle(h) => h.header_stubs(),
        })
        .collect())
}

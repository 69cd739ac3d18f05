//! Stage 2: the C signatures of the model, for the compiler and for
//! cbindgen alike (computed once per item, so the header cannot disagree
//! with the library).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Ident, LitStr, Type};

use crate::model::{CSignature, Export, Handle, Mode, Output, ParamKind, Shape, Surface, Target};
use crate::parse::type_name;

/// The runtime module every generated path goes through, named once.
pub(crate) fn rt() -> TokenStream {
    quote!(crate::rt)
}

impl Export {
    /// The C-side parameter list for the stub's own parameters.
    fn c_params(&self, t: Target, surface: Surface) -> Vec<TokenStream> {
        let c_char = c_char(t);
        self.params_in(surface)
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

    /// Every generated signature (`fn NAME(args) -> R`) in `surface`, with
    /// the docs. Header stubs and real entry points are both built from
    /// this.
    pub fn c_signatures(&self, t: Target, surface: Surface) -> Vec<CSignature> {
        let params = self.c_params(t, surface);
        let mut sigs = Vec::new();
        let stub_docs = &self.docs;
        let sig = |name: Ident,
                   shape: Shape,
                   params: Vec<TokenStream>,
                   ret: TokenStream,
                   note: Option<&str>| {
            let extra = note.map(|n| {
                let lit = LitStr::new(&format!(" {n}"), Span::call_site());
                quote!(#[doc = ""] #[doc = #lit])
            });
            CSignature {
                name,
                shape,
                params,
                ret,
                docs: quote!(#(#stub_docs)* #extra),
            }
        };
        match self.mode {
            Mode::Both | Mode::BlockingOnly | Mode::Status | Mode::StatusAndBlocking => {
                let (outs, ret) = self.status_tail(t);
                let name = if matches!(self.mode, Mode::Status | Mode::StatusAndBlocking) {
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
                if self.mode == Mode::StatusAndBlocking {
                    let also = format!(
                        "{out_note} Also exported, same shape, as `{}_blocking`.",
                        self.name
                    );
                    sigs.push(sig(
                        name,
                        Shape::Blocking,
                        all.clone(),
                        ret.clone(),
                        Some(&also),
                    ));
                    let alias = format_ident!("{}_blocking", self.name);
                    let same = format!("{out_note} The same function as `{}`.", self.name);
                    sigs.push(sig(alias, Shape::Blocking, all, ret, Some(&same)));
                } else {
                    sigs.push(sig(name, Shape::Blocking, all, ret, Some(&out_note)));
                }
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
                    let yields = match &self.output {
                        Output::Handle(ty) => type_name(ty),
                        _ => None,
                    };
                    sigs.push(sig(
                        self.name.clone(),
                        Shape::Future { yields },
                        params,
                        quote!(*mut #fut),
                        Some(&note),
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
                let shape = Shape::Sync { waits: self.waits };
                sigs.push(sig(self.name.clone(), shape, all, ret, note));
            }
        }
        sigs
    }

    /// Signature-only items for cbindgen, as `surface` has them.
    pub fn header_stubs(&self, surface: Surface) -> TokenStream {
        stubs(self.c_signatures(Target::Header, surface))
    }

    /// The C names cbindgen must give swapped callback tables in
    /// `surface`'s header: (Rust type, C name).
    pub fn renames(&self, surface: Surface) -> Vec<(String, String)> {
        self.params
            .iter()
            .filter_map(|p| match (&p.as_type, &p.kind) {
                (Some((s, alt)), ParamKind::VTable(declared)) if *s == surface => Some((
                    type_name(alt).unwrap_or_default(),
                    type_name(declared).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn out_ident(ty: &Type) -> Ident {
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

pub(crate) fn c_char(t: Target) -> TokenStream {
    match t {
        Target::Library => quote!(::core::ffi::c_char),
        Target::Header => quote!(c_char),
    }
}

pub(crate) fn error_ty(t: Target) -> TokenStream {
    match t {
        Target::Library => {
            let rt = rt();
            quote!(#rt::BlazenError)
        }
        Target::Header => quote!(BlazenError),
    }
}

pub(crate) fn future_ty(t: Target) -> TokenStream {
    match t {
        Target::Library => {
            let rt = rt();
            quote!(#rt::BlazenFuture)
        }
        Target::Header => quote!(BlazenFuture),
    }
}

impl Handle {
    pub fn signatures(&self, t: Target) -> Vec<CSignature> {
        let ty = &self.ty;
        let err = error_ty(t);
        let fut = future_ty(t);
        let mut v = Vec::new();
        if let Some(take) = &self.take {
            let out = out_ident(&syn::parse_quote!(#ty));
            v.push(handle_sig(
                take.clone(),
                Shape::Take {
                    handle: ty.to_string(),
                },
                vec![quote!(fut: *mut #fut), quote!(#out: *mut *mut #ty), quote!(out_err: *mut *mut #err)],
                quote!(i32),
                &format!("Takes the result of a future that yields a `{ty}`. Exactly once, after the future is ready: returns 0 and stores a caller-owned `{ty}` in `*{out}`, or -1 and stores a caller-owned `BlazenError` (the operation's error; INTERNAL for a pending future, a second take, or a future of another type). The future stays owned by the caller. Out-pointers may be NULL."),
            ));
        }
        if let Some(free) = &self.free {
            v.push(handle_sig(
                free.clone(),
                Shape::Free {
                    handle: ty.to_string(),
                },
                vec![quote!(handle: *mut #ty)],
                quote!(()),
                &format!("Releases a caller-owned `{ty}`. NULL is accepted and ignored; the handle must not be used afterwards. Returns promptly: it never waits for a host callback to start or finish. A handle whose work has ended (a worker whose run returned, a subscription whose stream ended or was cancelled) holds no callback table and calls nothing; otherwise its table gets `drop_user_data` here (none for NULL `user_data`), or right after a callback then in flight, on that callback's library thread."),
            ));
        }
        v
    }

    /// Signature-only items for cbindgen.
    pub fn header_stubs(&self) -> TokenStream {
        stubs(self.signatures(Target::Header))
    }
}

fn handle_sig(
    name: Ident,
    shape: Shape,
    params: Vec<TokenStream>,
    ret: TokenStream,
    doc: &str,
) -> CSignature {
    let doc = format!(" {doc}");
    CSignature {
        name,
        shape,
        params,
        ret,
        docs: quote!(#[doc = #doc]),
    }
}

impl CSignature {
    /// The `extern "C"` item with `body`, carrying the signature's docs and
    /// `attrs`; the one place a generated function is written.
    pub fn item(&self, attrs: TokenStream, body: TokenStream) -> TokenStream {
        let CSignature {
            name,
            params,
            shape: _,
            ret,
            docs,
        } = self;
        quote! {
            #docs
            #[no_mangle]
            #attrs
            pub unsafe extern "C" fn #name(#(#params),*) -> #ret { #body }
        }
    }
}

/// Signature-only items (bodies elided) for cbindgen.
fn stubs(sigs: Vec<CSignature>) -> TokenStream {
    sigs.iter()
        .map(|s| s.item(TokenStream::new(), quote!(unreachable!())))
        .collect()
}

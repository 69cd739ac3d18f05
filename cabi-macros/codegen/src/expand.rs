//! Stage 3: the real entry points (argument decoding, the panic boundary
//! and the call into the runtime) around the model's signatures.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, Ident, LitStr};

use crate::model::{Export, Handle, Output, ParamKind, Shape, Surface, Target};
use crate::signature::{out_ident, rt};

impl Export {
    fn body_ident(&self) -> Ident {
        format_ident!("__{}_body", self.name)
    }

    /// Statements decoding every C argument of `surface` into the body's
    /// argument, callback tables first so their `user_data` is owned on
    /// every path; a parameter the surface lacks gets its default.
    fn decoders(&self, owned_handles: bool, surface: Surface) -> TokenStream {
        let rt = rt();
        let mut vt = Vec::new();
        let mut rest = Vec::new();
        let present = self.params_in(surface);
        for p in &self.params {
            let name = &p.name;
            let lit = LitStr::new(&name.to_string(), name.span());
            if !present.iter().any(|q| q.name == p.name) {
                let ty = match &p.kind {
                    ParamKind::Text(ty) | ParamKind::Scalar(ty) => ty,
                    _ => {
                        rest.push(quote!(compile_error!("only text and scalar parameters can be missing from a surface");));
                        continue;
                    }
                };
                rest.push(quote!(let #name: #ty = ::core::default::Default::default();));
                continue;
            }
            match &p.kind {
                ParamKind::VTable(_) => {
                    vt.push(quote!(let #name = #rt::arg::callbacks(#name);));
                }
                ParamKind::Handle(..) if owned_handles => rest.push(
                    quote!(let #name = ::core::clone::Clone::clone(unsafe { #rt::arg::handle(#name, #lit) }?);),
                ),
                ParamKind::Handle(_, false) => {
                    rest.push(quote!(let #name = unsafe { #rt::arg::handle(#name, #lit) }?;))
                }
                ParamKind::Handle(_, true) => rest.push(
                    quote!(let #name = unsafe { #rt::arg::handle_mut(#name, #lit) }?;),
                ),
                ParamKind::Scalar(_) => {}
                ParamKind::Text(ty) => rest.push(
                    quote!(let #name: #ty = unsafe { #rt::arg::text(#name, #lit) }?;),
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
        let rt = rt();
        let mut item = self.item.clone();
        item.sig.ident = self.body_ident();
        item.attrs.retain(|a| !a.path().is_ident("doc"));
        item.vis = syn::Visibility::Inherited;
        for (input, p) in item.sig.inputs.iter_mut().zip(&self.params) {
            if let (FnArg::Typed(pt), ParamKind::VTable(ty)) = (input, &p.kind) {
                *pt.ty = syn::parse_quote!(<#ty as #rt::arg::Callbacks>::Owner);
            }
        }
        quote! {
            #[allow(clippy::too_many_arguments, non_snake_case)]
            #item
        }
    }

    /// The real entry points: once, or, when the surfaces differ, once per
    /// surface under that surface's cargo feature.
    pub fn expand(&self) -> TokenStream {
        let body_fn = self.body_fn();
        if !self.varies_by_surface() {
            let fns = self.entry_points(Surface::V0_5, TokenStream::new());
            return quote! { #body_fn #fns };
        }
        let variants = Surface::ALL.into_iter().map(|s| {
            let others = Surface::ALL
                .into_iter()
                .filter(|o| *o != s)
                .filter_map(Surface::feature);
            let cfg = match s.feature() {
                Some(f) => quote!(#[cfg(feature = #f)]),
                None => quote!(#[cfg(not(any(#(feature = #others),*)))]),
            };
            self.entry_points(s, cfg)
        });
        quote! {
            #body_fn
            #(#variants)*
        }
    }

    /// The entry points of one surface, each carrying `cfg`.
    fn entry_points(&self, surface: Surface, cfg: TokenStream) -> TokenStream {
        let body = self.body_ident();
        let rt = rt();
        let label = LitStr::new(&self.name.to_string(), self.name.span());
        let sigs = self.c_signatures(Target::Library, surface);
        let mut fns = Vec::new();
        for sig in &sigs {
            let call = match sig.shape {
                Shape::Sync { .. } => {
                    let dec = self.decoders(false, surface);
                    let args = self.call_args(false);
                    let ret_call = match &self.output {
                        Output::OptionalScalar(_) => {
                            quote!(#rt::ret::optional(#label, out_value, has_value, || { #dec Ok(#body(#(#args),*)) }))
                        }
                        _ => {
                            quote!(#rt::ret::sync(#label, || { #dec Ok(#body(#(#args),*)) }))
                        }
                    };
                    ret_call
                }
                _ => {
                    let dec = self.decoders(true, surface);
                    let args = self.call_args(true);
                    let make = quote!(move || { #dec Ok(async move { #body(#(#args),*).await }) });
                    let is_future = matches!(sig.shape, Shape::Future { .. });
                    match (&self.output, is_future) {
                        (_, true) => quote!(#rt::call::future(#label, #make)),
                        (Output::Handle(ty), false) => {
                            let out = out_ident(ty);
                            quote!(#rt::call::blocking(#label, #out, out_err, #make))
                        }
                        (Output::Text, false) => {
                            quote!(#rt::call::blocking_text(#label, out_json, out_err, #make))
                        }
                        (_, false) => {
                            quote!(#rt::call::blocking_unit(#label, out_err, #make))
                        }
                    }
                }
            };
            fns.push(sig.item(
                quote!(#cfg #[allow(clippy::too_many_arguments, clippy::missing_safety_doc, unused_unsafe)]),
                call,
            ));
        }
        quote!(#(#fns)*)
    }
}

impl Handle {
    /// The struct unchanged plus its `take`/`free` entry points.
    pub fn expand(&self) -> TokenStream {
        let rt = rt();
        let item = &self.item;
        let ty = &self.ty;
        let fns = self.signatures(Target::Library).into_iter().map(|sig| {
            let is_take = matches!(sig.shape, Shape::Take { .. });
            let label = LitStr::new(&sig.name.to_string(), sig.name.span());
            let body = if is_take {
                let out = out_ident(&syn::parse_quote!(#ty));
                quote!(unsafe { #rt::future::take::<#ty>(#label, fut, #out, out_err) })
            } else {
                quote!(unsafe { #rt::ret::free::<#ty>(#label, handle) })
            };
            sig.item(quote!(#[allow(clippy::missing_safety_doc)]), body)
        });
        quote! {
            #item
            impl #rt::ret::OwnedHandle for #ty {}
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

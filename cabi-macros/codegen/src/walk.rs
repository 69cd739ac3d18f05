//! Finding the annotated items of a source file (for the generators that
//! read the crate's sources instead of running inside the compiler).

use proc_macro2::TokenStream;
use quote::quote;
use syn::Attribute;

use crate::model::{Export, Handle, Surface};
use crate::vocabulary::Vocabulary;

pub(crate) fn attr_named<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
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
    Vocabulary(Vocabulary),
}

/// Every `#[export]` function, `#[handle]` struct and `#[vocabulary]` enum of
/// a parsed source file
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
        syn::Item::Enum(e) => &e.attrs,
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
            syn::Item::Enum(e) => {
                if let Some(a) = attr_named(&e.attrs, "vocabulary") {
                    let mut e = e.clone();
                    e.attrs.retain(|x| x != a);
                    v.push(Annotated::Vocabulary(Vocabulary::parse(
                        attr_tokens(a),
                        quote!(#e),
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

/// Signature stubs of every annotated item of a parsed source file, as
/// `surface` has them, for cbindgen.
pub fn header_stubs(file: &syn::File, surface: Surface) -> syn::Result<TokenStream> {
    Ok(annotated(file)?
        .iter()
        .map(|a| match a {
            Annotated::Export(e) => e.header_stubs(surface),
            Annotated::Handle(h) => h.header_stubs(),
            Annotated::Vocabulary(_) => TokenStream::new(),
        })
        .collect())
}

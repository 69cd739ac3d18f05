//! `#[vocabulary]`: a closed set of names (error kinds, run statuses, event
//! types, subkinds, admission modes) declared once, as an enum, and turned
//! into the Rust type with its conversions, the header's constants and the
//! Ruby gem's constants and table.
//!
//! ```ignore
//! /// Event types the library and the control plane send.
//! #[vocabulary(constants = "BLAZEN_EVENT_", ruby = "EVENT_TYPES")]
//! pub enum EventType {
//!     /// The run was handed to a worker.
//!     #[text = "status.running"]
//!     StatusRunning,
//! }
//! ```
//!
//! A variant's text is its `#[text = ".."]` or else its name; its constant
//! is the prefix plus its name in upper snake case, or `#[constant = ".."]`.
//! When every variant has a discriminant (`Auth = 1`) the vocabulary is
//! numbered: the constants are those numbers (`uint32_t`) and the type gets
//! `code`/`from_code`; otherwise the constants are the texts (C strings).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Ident, ItemEnum, LitStr};

/// One name of a vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub ident: String,
    /// Its text (what goes on the wire, in JSON and in messages).
    pub text: String,
    /// Its number, for a numbered vocabulary.
    pub code: Option<u64>,
    /// The full C constant name.
    pub constant: String,
    /// The doc comment, lines joined by spaces.
    pub doc: String,
}

/// A parsed `#[vocabulary]` enum.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    pub ty: Ident,
    /// The doc comment of the enum, lines joined by spaces.
    pub doc: String,
    /// The name of the Ruby table (`EVENT_TYPES`), if any.
    pub ruby: Option<String>,
    pub words: Vec<Word>,
    pub item: ItemEnum,
}

fn str_attr(attrs: &[Attribute], name: &str) -> syn::Result<Option<String>> {
    let Some(a) = attrs.iter().find(|a| a.path().is_ident(name)) else {
        return Ok(None);
    };
    if let syn::Meta::NameValue(syn::MetaNameValue {
        value:
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }),
        ..
    }) = &a.meta
    {
        return Ok(Some(s.value()));
    }
    Err(syn::Error::new_spanned(
        a,
        format!("expected `#[{name} = \"...\"]`"),
    ))
}

/// The doc comment of `attrs`, lines joined by spaces.
pub(crate) fn doc_text(attrs: &[Attribute]) -> String {
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

fn upper_snake(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_uppercase());
    }
    out
}

impl Vocabulary {
    /// Parses the attribute and the enum it sits on.
    pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Self> {
        let item: ItemEnum = syn::parse2(item)?;
        let mut prefix = None;
        let mut ruby = None;
        for (path, s) in crate::parse::string_args(attr)? {
            if path.is_ident("constants") {
                prefix = Some(s.value());
            } else if path.is_ident("ruby") {
                ruby = Some(s.value());
            } else {
                return Err(syn::Error::new_spanned(
                    &path,
                    "expected `constants` or `ruby`",
                ));
            }
        }
        let prefix = prefix.ok_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "`#[vocabulary]` needs `constants = \"BLAZEN_..._\"`",
            )
        })?;
        let numbered = item
            .variants
            .iter()
            .filter(|v| v.discriminant.is_some())
            .count();
        if numbered != 0 && numbered != item.variants.len() {
            return Err(syn::Error::new_spanned(
                &item.ident,
                "either every variant of a vocabulary has a number or none has",
            ));
        }
        let mut words = Vec::new();
        for v in &item.variants {
            if !v.fields.is_empty() {
                return Err(syn::Error::new_spanned(
                    v,
                    "a vocabulary's variants have no fields",
                ));
            }
            let code = match &v.discriminant {
                None => None,
                Some((
                    _,
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(n),
                        ..
                    }),
                )) => Some(n.base10_parse::<u64>()?),
                Some((_, e)) => {
                    return Err(syn::Error::new_spanned(e, "expected an integer literal"))
                }
            };
            let ident = v.ident.to_string();
            let suffix = str_attr(&v.attrs, "constant")?.unwrap_or_else(|| upper_snake(&ident));
            words.push(Word {
                text: str_attr(&v.attrs, "text")?.unwrap_or_else(|| ident.clone()),
                constant: format!("{prefix}{suffix}"),
                ident,
                code,
                doc: doc_text(&v.attrs),
            });
        }
        for (i, w) in words.iter().enumerate() {
            if let Some(o) = words[..i].iter().find(|o| {
                o.text == w.text
                    || o.constant == w.constant
                    || (o.code.is_some() && o.code == w.code)
            }) {
                return Err(syn::Error::new_spanned(
                    &item.ident,
                    format!(
                        "`{}` and `{}` share a text, a number or a constant",
                        o.ident, w.ident
                    ),
                ));
            }
        }
        Ok(Self {
            ty: item.ident.clone(),
            doc: doc_text(&item.attrs),
            ruby,
            words,
            item,
        })
    }

    /// Whether the words are numbered.
    pub fn numbered(&self) -> bool {
        self.words.first().is_some_and(|w| w.code.is_some())
    }

    /// A word's constant value as C (and Ruby) writes it: its number, or
    /// its text as a string literal.
    pub fn value(&self, w: &Word) -> String {
        match w.code {
            Some(n) => n.to_string(),
            None => format!("{:?}", w.text),
        }
    }

    /// The enum with its conversions (`ALL`, `text`, `from_text`, and for
    /// a numbered vocabulary `code`/`from_code`).
    pub fn expand(&self) -> TokenStream {
        let mut item = self.item.clone();
        for v in &mut item.variants {
            v.attrs
                .retain(|a| !a.path().is_ident("text") && !a.path().is_ident("constant"));
        }
        let ty = &self.ty;
        let n = self.words.len();
        let idents: Vec<Ident> = self
            .words
            .iter()
            .map(|w| format_ident!("{}", w.ident))
            .collect();
        let texts: Vec<LitStr> = self
            .words
            .iter()
            .map(|w| LitStr::new(&w.text, Span::call_site()))
            .collect();
        let repr = self.numbered().then(|| quote!(#[repr(u32)]));
        let numbered = self.numbered().then(|| {
            let codes: Vec<u32> = self
                .words
                .iter()
                .map(|w| w.code.unwrap_or_default() as u32)
                .collect();
            quote! {
                /// The word's number (its C constant).
                pub const fn code(self) -> u32 {
                    self as u32
                }

                /// The word numbered `code`, if any.
                pub const fn from_code(code: u32) -> Option<Self> {
                    match code {
                        #(#codes => Some(Self::#idents),)*
                        _ => None,
                    }
                }
            }
        });
        quote! {
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #repr
            #item

            impl #ty {
                /// Every word, in declaration order.
                pub const ALL: [Self; #n] = [#(Self::#idents),*];

                /// The word's text.
                pub const fn text(self) -> &'static str {
                    match self {
                        #(Self::#idents => #texts,)*
                    }
                }

                /// The word whose text is `text`, if any.
                pub fn from_text(text: &str) -> Option<Self> {
                    match text {
                        #(#texts => Some(Self::#idents),)*
                        _ => None,
                    }
                }

                #numbered
            }

            impl ::core::fmt::Display for #ty {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(self.text())
                }
            }
        }
    }

    /// The C `#define`s of the words, each with its doc, for the header.
    pub fn c_defines(&self) -> String {
        let mut out = format!("/**\n * {}\n */\n", self.doc);
        for w in &self.words {
            if !w.doc.is_empty() {
                out.push_str(&format!("/** {} */\n", w.doc));
            }
            out.push_str(&format!("#define {} {}\n", w.constant, self.value(w)));
        }
        out
    }
}

/// Entry point of the `#[vocabulary]` attribute.
pub fn expand_vocabulary(attr: TokenStream, item: TokenStream) -> TokenStream {
    Vocabulary::parse(attr, item)
        .map(|v| v.expand())
        .unwrap_or_else(syn::Error::into_compile_error)
}

//! Stage 1: parsing an annotated item into the model, with the rules on
//! what a stub may look like.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, FnArg, Ident, ItemFn, ItemStruct, Pat, ReturnType, Token, Type, TypeReference,
};

use crate::model::{Export, Handle, Mode, Output, Param, ParamKind, Surface};

struct ExportArgs {
    mode: Option<Mode>,
    waits: bool,
}

impl Parse for ExportArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let idents = Punctuated::<Ident, Token![,]>::parse_terminated(input)?;
        let mut mode = None;
        let mut waits = false;
        let both = idents.len() == 2
            && idents.iter().any(|i| i == "status")
            && idents.iter().any(|i| i == "blocking");
        if both {
            return Ok(Self {
                mode: Some(Mode::StatusAndBlocking),
                waits,
            });
        }
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
                            "unknown export option `{other}` (expected `blocking`, `status`, `status, blocking` or `waits`)"
                        ),
                    ))
                }
            };
            if mode.replace(m).is_some() {
                return Err(syn::Error::new(
                    id.span(),
                    "only one export option is allowed (or `status, blocking`)",
                ));
            }
        }
        Ok(Self { mode, waits })
    }
}

const SCALARS: &[&str] = &[
    "bool", "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f32", "f64",
];

/// The argument of a parameter's `#[surface(..)]`.
enum SurfaceArg {
    /// `#[surface(v0_6)]`
    Only(Surface),
    /// `#[surface(v0_6 = Type)]`
    As(Surface, Box<Type>),
}

impl Parse for SurfaceArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let id: Ident = input.parse()?;
        let surface = Surface::parse(&id.to_string()).ok_or_else(|| {
            syn::Error::new(id.span(), "unknown surface (expected `v0_5` or `v0_6`)")
        })?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Ok(SurfaceArg::As(surface, Box::new(input.parse()?)))
        } else {
            Ok(SurfaceArg::Only(surface))
        }
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// The last path segment of a type (`Option` for `Option<T>`).
pub fn type_name(ty: &Type) -> Option<String> {
    last_segment(ty).map(|s| s.ident.to_string())
}

fn is_scalar(ty: &Type) -> bool {
    type_name(ty).is_some_and(|n| SCALARS.contains(&n.as_str()))
}

/// The first type argument of a generic type (`T` for `Option<T>`).
pub fn generic_arg(ty: &Type) -> Option<&Type> {
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
            let mut only = None;
            let mut as_type = None;
            for a in pt.attrs.iter().filter(|a| a.path().is_ident("surface")) {
                match a.parse_args::<SurfaceArg>()? {
                    SurfaceArg::Only(s) => only = Some(s),
                    SurfaceArg::As(s, t) => as_type = Some((s, *t)),
                }
            }
            pt.attrs.retain(|a| !a.path().is_ident("surface"));
            if let Some(a) = pt.attrs.first() {
                return Err(syn::Error::new_spanned(
                    a,
                    "parameter attributes are `#[enum_like]` and `#[surface(..)]`",
                ));
            }
            let kind = classify_param(&pt.ty)?;
            if let Some((_, t)) = &as_type {
                if !matches!(kind, ParamKind::VTable(_))
                    || classify_param(t)
                        .ok()
                        .map(|k| matches!(k, ParamKind::VTable(_)))
                        != Some(true)
                {
                    return Err(syn::Error::new_spanned(
                        t,
                        "`#[surface(vX_Y = Type)]` swaps one callback table for another",
                    ));
                }
            }
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
                only,
                as_type,
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

    /// Whether some parameter differs between surfaces (the entry points
    /// are then generated once per surface, each under its cargo feature).
    pub fn varies_by_surface(&self) -> bool {
        self.params
            .iter()
            .any(|p| p.only.is_some() || p.as_type.is_some())
    }

    /// The parameters as C sees them in `surface`: those of other surfaces
    /// left out, swapped callback tables swapped.
    pub fn params_in(&self, surface: Surface) -> Vec<Param> {
        self.params
            .iter()
            .filter(|p| p.only.is_none_or(|s| s == surface))
            .map(|p| match &p.as_type {
                Some((s, t)) if *s == surface => Param {
                    kind: ParamKind::VTable(t.clone()),
                    ..p.clone()
                },
                _ => p.clone(),
            })
            .collect()
    }
}

/// The `key = "value"` arguments of an attribute, each value a string
/// literal.
pub(crate) fn string_args(attr: TokenStream) -> syn::Result<Vec<(syn::Path, syn::LitStr)>> {
    let metas = syn::parse::Parser::parse2(
        Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated,
        attr,
    )?;
    metas
        .into_iter()
        .map(|m| match m.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Ok((m.path, s)),
            other => Err(syn::Error::new_spanned(other, "expected a string literal")),
        })
        .collect()
}

impl Handle {
    /// Parses the attribute and the struct it sits on.
    pub fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Self> {
        let item: ItemStruct = syn::parse2(item)?;
        let mut free = None;
        let mut take = None;
        for (path, s) in string_args(attr)? {
            let id = Ident::new(&s.value(), s.span());
            if path.is_ident("free") {
                free = Some(id);
            } else if path.is_ident("take") {
                take = Some(id);
            } else {
                return Err(syn::Error::new_spanned(&path, "expected `free` or `take`"));
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
}

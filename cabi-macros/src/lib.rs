//! Attribute macros for blazen-cabi. The expansion itself lives in
//! `blazen-cabi-codegen`, shared with the header generator.
use proc_macro::TokenStream;

/// Turns a documented stub into its C entry points (see the codegen crate
/// for the conventions).
#[proc_macro_attribute]
pub fn export(attr: TokenStream, item: TokenStream) -> TokenStream {
    blazen_cabi_codegen::expand_export(attr.into(), item.into()).into()
}

/// Generates `free` and/or `take` entry points for a handle struct.
#[proc_macro_attribute]
pub fn handle(attr: TokenStream, item: TokenStream) -> TokenStream {
    blazen_cabi_codegen::expand_handle(attr.into(), item.into()).into()
}

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

/// Declares a closed set of names once: the enum with its conversions, and
/// (through the generators) the header's constants and the gem's tables.
#[proc_macro_attribute]
pub fn vocabulary(attr: TokenStream, item: TokenStream) -> TokenStream {
    blazen_cabi_codegen::expand_vocabulary(attr.into(), item.into()).into()
}

/// Marks a hand-written `#[no_mangle] extern "C"` function as part of the
/// table (`#[hand_written(waits)]`: it may block the calling thread, so
/// hosts with a global lock release it around the call). The item is left
/// as written; the generators read the attribute, and refuse an exported
/// function that carries neither it nor `#[export]`.
#[proc_macro_attribute]
pub fn hand_written(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = attr.to_string();
    if !attr.is_empty() && attr != "waits" {
        return "compile_error!(\"expected `#[hand_written]` or `#[hand_written(waits)]`\");"
            .parse()
            .expect("a compile_error! invocation");
    }
    item
}

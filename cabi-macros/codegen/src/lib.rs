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

mod expand;
mod model;
mod parse;
mod signature;
mod table;
mod vocabulary;
mod walk;

pub use expand::{expand_export, expand_handle};
pub use model::{
    CSignature, Export, Handle, Mode, Output, Param, ParamKind, Shape, Surface, Target,
};
pub use parse::{generic_arg, type_name};
pub use table::{rust_files, Constant, Function, HandleEntry, Struct, Table};
pub use vocabulary::{expand_vocabulary, Vocabulary, Word};
pub use walk::{annotated, header_stubs, Annotated};

//! The typed model of an annotated item: what the macro, the header stubs,
//! the Ruby attachments and the adversarial cases all read.

use proc_macro2::TokenStream;
use syn::{Attribute, Ident, ItemFn, ItemStruct, Type};

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

/// `#[handle(free = "...", take = "...")]` on a handle struct.
#[derive(Clone, Debug)]
pub struct Handle {
    pub ty: Ident,
    pub free: Option<Ident>,
    pub take: Option<Ident>,
    pub item: ItemStruct,
}

/// One generated C function: its name, C parameters and return type (as
/// tokens for the chosen [`Target`]) and the doc attributes it carries.
#[derive(Clone, Debug)]
pub struct CSignature {
    pub name: Ident,
    pub params: Vec<TokenStream>,
    pub ret: TokenStream,
    pub docs: TokenStream,
}

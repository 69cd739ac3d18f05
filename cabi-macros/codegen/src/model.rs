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
    /// `async fn` with `#[export(status, blocking)]`: the status-returning
    /// shape under both `NAME` and `NAME_blocking`.
    StatusAndBlocking,
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

/// A reference C surface the library can be built for. The default build
/// is the 0.5.x surface; cargo feature `surface-v0_6` of `blazen-cabi`
/// selects the 0.6.x one. A stub says where its C shape differs (see
/// [`Param::only`] and [`Param::as_type`]); everything else is the same
/// in every surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// The 0.5.x surface (`seed-surface.h`), the default build.
    V0_5,
    /// The 0.6.x surface (`surface-v0.6.74.h`, releases 0.6.4 on).
    V0_6,
}

impl Surface {
    /// Every surface, default first.
    pub const ALL: [Surface; 2] = [Surface::V0_5, Surface::V0_6];

    /// The name used on command lines and in paths: `v0.5`, `v0.6`.
    pub fn name(self) -> &'static str {
        match self {
            Surface::V0_5 => "v0.5",
            Surface::V0_6 => "v0.6",
        }
    }

    /// The identifier stubs write in `#[surface(..)]`.
    pub fn ident(self) -> &'static str {
        match self {
            Surface::V0_5 => "v0_5",
            Surface::V0_6 => "v0_6",
        }
    }

    /// The number `blazen_surface()` returns: the minor version.
    pub fn number(self) -> u32 {
        match self {
            Surface::V0_5 => 5,
            Surface::V0_6 => 6,
        }
    }

    /// The cargo feature of `blazen-cabi` that selects it (none for the
    /// default).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Surface::V0_5 => None,
            Surface::V0_6 => Some("surface-v0_6"),
        }
    }

    /// `v0.5`/`v0_5`/`0.5` and the like.
    pub fn parse(s: &str) -> Option<Surface> {
        let s = s.trim_start_matches('v').replace('_', ".");
        Surface::ALL
            .into_iter()
            .find(|x| x.name().trim_start_matches('v') == s)
    }
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
    /// `#[surface(v0_6)]`: the C parameter exists only in that surface;
    /// elsewhere the stub receives `Default::default()`.
    pub only: Option<Surface>,
    /// `#[surface(v0_6 = OtherType)]`: in that surface the C parameter has
    /// this type (a callback table of another layout whose owner is the
    /// same type as the declared one's); the header names it as declared.
    pub as_type: Option<(Surface, Type)>,
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

/// The shape of one C function: how it is called, how its result comes
/// back, and whether it may wait. Decided once, where the signature is
/// made; the macro, the header, the Ruby generator and the bad-input
/// generator all read it from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Blocks on the library's runtime: `int32_t` status, the result in an
    /// out-parameter, `BlazenError **out_err`.
    Blocking,
    /// Returns a caller-owned `BlazenFuture *` at once; its result (a
    /// handle of type `yields`, or nothing) is collected with the take
    /// function the table resolves for that type.
    Future { yields: Option<String> },
    /// One plain call, no error slot: bad input yields the neutral value.
    /// `waits`: it may block the calling thread (`#[export(waits)]`).
    Sync { waits: bool },
    /// Takes the result of a future yielding `handle`.
    Take { handle: String },
    /// Releases a `handle`; never waits for a host callback.
    Free { handle: String },
    /// Written by hand (`#[hand_written]`); `waits` as the attribute says.
    HandWritten { waits: bool },
}

impl Shape {
    /// Whether the function may block the calling thread (for the network
    /// or the library's own work, never for a host callback): hosts with a
    /// global lock release it around these calls and no others.
    pub fn may_wait(&self) -> bool {
        match self {
            Shape::Blocking => true,
            Shape::Sync { waits } | Shape::HandWritten { waits } => *waits,
            Shape::Future { .. } | Shape::Take { .. } | Shape::Free { .. } => false,
        }
    }

    /// A short stable word for listings and snapshots.
    pub fn label(&self) -> String {
        match self {
            Shape::Blocking => "blocking".into(),
            Shape::Future { yields: None } => "future".into(),
            Shape::Future { yields: Some(t) } => format!("future({t})"),
            Shape::Sync { waits: false } => "sync".into(),
            Shape::Sync { waits: true } => "sync, waits".into(),
            Shape::Take { handle } => format!("take({handle})"),
            Shape::Free { handle } => format!("free({handle})"),
            Shape::HandWritten { waits: false } => "hand-written".into(),
            Shape::HandWritten { waits: true } => "hand-written, waits".into(),
        }
    }
}

/// One generated C function: its name, shape, C parameters and return type
/// (as tokens for the chosen [`Target`]) and the doc attributes it carries.
#[derive(Clone, Debug)]
pub struct CSignature {
    pub name: Ident,
    pub shape: Shape,
    pub params: Vec<TokenStream>,
    pub ret: TokenStream,
    pub docs: TokenStream,
}

//! Full-expansion snapshots of representative stubs: a change to the
//! generated code shows up as a diff of `tests/snapshots/*.txt` to review.
//! `UPDATE_SNAPSHOTS=1 cargo test -p blazen-cabi-codegen` rewrites them.

use blazen_cabi_codegen::{expand_export, expand_handle, expand_vocabulary, header_stubs, Surface};
use proc_macro2::TokenStream;

fn pretty(tokens: TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens).expect("the expansion parses as a file"))
}

fn check(name: &str, text: String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert!(
        want == text,
        "the expansion of {name} changed; review and rerun with UPDATE_SNAPSHOTS=1:\n{text}"
    );
}

fn export(attr: &str, item: &str) -> TokenStream {
    expand_export(attr.parse().unwrap(), item.parse().unwrap())
}

#[test]
fn async_stub_with_a_handle_result() {
    check(
        "async_handle",
        pretty(export(
            "",
            "/// Describes a run.\nasync fn blazen_x_describe(client: &Client, run_id: Uuid) -> Result<Snap> { Ok(client.get(run_id).await?) }",
        )),
    );
}

#[test]
fn blocking_stub_with_a_callback_table_and_text_result() {
    check(
        "blocking_vtable_text",
        pretty(export(
            "blocking",
            "/// Asks.\nasync fn blazen_x_ask(ctx: &Ctx, prompt: String, #[enum_like] mode: u32, sink: BlazenSinkVTable) -> Result<String> { todo!() }",
        )),
    );
}

#[test]
fn status_stub_and_sync_stubs() {
    check(
        "status_and_sync",
        pretty(
            [
                export(
                    "status",
                    "/// Opens.\nasync fn blazen_x_open(client: &Client, tags: TagList) -> Result<Sub> { todo!() }",
                ),
                export(
                    "",
                    "/// Reads.\nfn blazen_x_done_at(s: &Snap) -> Option<u64> { s.done }",
                ),
                export(
                    "waits",
                    "/// Stops.\nfn blazen_x_stop(s: &Server) { s.stop() }",
                ),
            ]
            .into_iter()
            .collect(),
        ),
    );
}

#[test]
fn handle_struct() {
    check(
        "handle",
        pretty(expand_handle(
            r#"free = "blazen_thing_free", take = "blazen_future_take_thing""#
                .parse()
                .unwrap(),
            "pub struct BlazenThing { inner: u8 }".parse().unwrap(),
        )),
    );
}

#[test]
fn header_stubs_of_a_file() {
    let file: syn::File = syn::parse_str(
        "/// Describes.\n#[export] async fn blazen_x_describe(client: &Client, run_id: Uuid) -> Result<Snap> { todo!() }\n\
         #[cfg(test)] #[export] fn blazen_hidden() {}",
    )
    .unwrap();
    check(
        "header_stubs",
        pretty(header_stubs(&file, Surface::V0_5).unwrap()),
    );
}

#[test]
fn a_stub_that_differs_by_surface() {
    check(
        "surface_variants",
        pretty(export(
            "blocking",
            "/// Makes a worker.\nasync fn blazen_x_worker(endpoint: String, #[surface(v0_6)] token: Option<String>, #[surface(v0_6 = BlazenCtxVTable)] vt: BlazenPlainVTable) -> Result<Worker> { make(endpoint, token, vt).await }",
        )),
    );
}

#[test]
fn a_status_stub_under_two_names() {
    check(
        "status_and_blocking",
        pretty(export(
            "status, blocking",
            "/// Asks.\nasync fn blazen_x_ask(ctx: &Ctx, prompt: String) -> Result<String> { todo!() }",
        )),
    );
}

#[test]
fn vocabularies_numbered_and_text() {
    let numbered = expand_vocabulary(
        r#"constants = "BLAZEN_X_KIND_", ruby = "X_KINDS""#.parse().unwrap(),
        "/// Kinds.\npub enum XKind { /// First.\n A = 1, #[constant = \"SECOND\"] BeeCee = 2 }"
            .parse()
            .unwrap(),
    );
    let text = expand_vocabulary(
        r#"constants = "BLAZEN_X_EVENT_""#.parse().unwrap(),
        "pub enum XEvent { #[text = \"x.started\"] Started, Plain }"
            .parse()
            .unwrap(),
    );
    check("vocabulary", pretty([numbered, text].into_iter().collect()));
}

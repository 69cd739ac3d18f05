//! Expected-output and rejected-input tests of the stub expansion.

use blazen_cabi_codegen::{header_stubs, Export, Handle, Surface};
use quote::quote;

/// Token text with whitespace removed, for stable comparisons.
fn flat(t: impl ToString) -> String {
    t.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn header_of(src: &str) -> String {
    flat(header_stubs(&syn::parse_file(src).unwrap(), Surface::V0_5).unwrap())
}

#[test]
fn async_stub_becomes_blocking_and_future_signatures() {
    let h = header_of(
        r#"
        /// Describe.
        #[export]
        async fn blazen_x_describe(client: &Client, run_id: Uuid, deep: bool) -> Result<Snapshot> { todo!() }
        "#,
    );
    assert!(
        h.contains(&flat(
            "pub unsafe extern \"C\" fn blazen_x_describe_blocking(client: *const Client, \
         run_id: *const c_char, deep: bool, out_snapshot: *mut *mut Snapshot, \
         out_err: *mut *mut BlazenError) -> i32"
        )),
        "{h}"
    );
    assert!(
        h.contains(&flat(
            "pub unsafe extern \"C\" fn blazen_x_describe(client: *const Client, \
         run_id: *const c_char, deep: bool) -> *mut BlazenFuture"
        )),
        "{h}"
    );
    assert!(
        h.contains(&flat("#[doc = \" Describe.\"]")),
        "docs carried: {h}"
    );
}

#[test]
fn unit_result_has_no_out_param_and_modes_pick_the_functions() {
    let h = header_of(
        r#"
        /// Drain.
        #[export(blocking)]
        async fn blazen_x_drain(node_id: String) -> Result<()> { todo!() }
        /// Subscribe.
        #[export(status)]
        async fn blazen_x_subscribe(sink: BlazenSinkVTable) -> Result<Sub> { todo!() }
        "#,
    );
    assert!(h.contains(&flat(
        "fn blazen_x_drain_blocking(node_id: *const c_char, out_err: *mut *mut BlazenError) -> i32"
    )), "{h}");
    assert!(
        !h.contains("fnblazen_x_drain("),
        "blocking-only has no future: {h}"
    );
    assert!(h.contains(&flat(
        "fn blazen_x_subscribe(sink: BlazenSinkVTable, out_sub: *mut *mut Sub, out_err: *mut *mut BlazenError) -> i32"
    )), "{h}");
}

#[test]
fn sync_stubs_map_return_types() {
    let h = header_of(
        r#"
        /// a
        #[export] fn blazen_a(s: &Snap) -> Option<String> { todo!() }
        /// b
        #[export] fn blazen_b(s: &Snap) -> Option<u64> { todo!() }
        /// c
        #[export] fn blazen_c(l: &List, index: usize) -> Option<Info> { todo!() }
        /// d
        #[export] fn blazen_d(s: &mut Sub) { }
        "#,
    );
    for want in [
        "fn blazen_a(s: *const Snap) -> *mut c_char",
        "fn blazen_b(s: *const Snap, out_value: *mut u64, has_value: *mut i32) -> i32",
        "fn blazen_c(l: *const List, index: usize) -> *mut Info",
        "fn blazen_d(s: *mut Sub) -> ()",
    ] {
        assert!(h.contains(&flat(want)), "missing {want}: {h}");
    }
}

#[test]
fn handle_attribute_generates_take_and_free() {
    let h = Handle::parse(
        quote!(
            free = "blazen_thing_free",
            take = "blazen_future_take_thing"
        ),
        quote!(
            pub struct BlazenThing(u8);
        ),
    )
    .unwrap();
    let stubs = flat(h.header_stubs());
    assert!(stubs.contains(&flat(
        "fn blazen_future_take_thing(fut: *mut BlazenFuture, out_thing: *mut *mut BlazenThing, out_err: *mut *mut BlazenError) -> i32"
    )), "{stubs}");
    assert!(
        stubs.contains(&flat(
            "fn blazen_thing_free(handle: *mut BlazenThing) -> ()"
        )),
        "{stubs}"
    );
    let code = flat(h.expand());
    assert!(
        code.contains("implcrate::rt::ret::OwnedHandleforBlazenThing"),
        "{code}"
    );
}

#[test]
fn expansion_decodes_callbacks_first_and_names_parameters() {
    let e = Export::parse(
        quote!(),
        quote! {
            /// Doc.
            async fn blazen_x_new(endpoint: String, vtable: BlazenHandlerVTable) -> Result<W> { todo!() }
        },
    )
    .unwrap();
    let code = flat(e.expand());
    let vt = code
        .find("crate::rt::arg::callbacks(vtable)")
        .expect("vtable owned");
    let ep = code
        .find("crate::rt::arg::text(endpoint,\"endpoint\")")
        .expect("endpoint decoded");
    assert!(
        vt < ep,
        "the callback table must be owned before other arguments can fail"
    );
    assert!(
        code.contains("crate::rt::call::blocking(\"blazen_x_new\""),
        "{code}"
    );
    assert!(
        code.contains("crate::rt::call::future(\"blazen_x_new\""),
        "{code}"
    );
    assert!(
        code.contains("<BlazenHandlerVTableascrate::rt::arg::Callbacks>::Owner"),
        "{code}"
    );
}

fn rejects(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream, why: &str) {
    let err = Export::parse(attr, item).expect_err("stub must be rejected");
    assert!(err.to_string().contains(why), "expected `{why}` in `{err}`");
}

#[test]
fn bad_stubs_are_rejected_with_a_reason() {
    rejects(
        quote!(),
        quote!(
            async fn f() -> Result<()> {}
        ),
        "doc comment",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(s: &str) -> Result<()> {}
        ),
        "handle type",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(p: *const u8) -> Result<()> {}
        ),
        "raw pointers",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f<T>(t: T) -> Result<()> {}
        ),
        "generic",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f() -> u32 {}
        ),
        "Result<T>",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f() -> Result<String> {}
        ),
        "handle type",
    );
    rejects(
        quote!(fast),
        quote!(
            /// d
            async fn f() -> Result<()> {}
        ),
        "unknown export option",
    );
    rejects(
        quote!(status),
        quote!(
            /// d
            fn f() {}
        ),
        "async fn",
    );
}

#[test]
fn cfg_gated_items_stay_out_of_the_header() {
    let h = header_of(
        r#"
        #[cfg(test)]
        mod tests {
            /// t
            #[export] fn blazen_only_in_tests() -> u32 { 1 }
        }
        /// p
        #[cfg(feature = "test-panic")]
        #[export] fn blazen_test_only() -> u32 { 1 }
        /// kept
        #[export] fn blazen_kept() -> u32 { 1 }
        "#,
    );
    assert!(
        h.contains("blazen_kept")
            && !h.contains("blazen_only_in_tests")
            && !h.contains("blazen_test_only"),
        "{h}"
    );
}

#[test]
fn enum_like_marks_integer_parameters_only() {
    let e = Export::parse(
        quote!(),
        quote! {
            /// d
            async fn f(#[enum_like] mode: u32, n: u64) -> Result<()> { todo!() }
        },
    )
    .unwrap();
    assert!(e.params[0].enum_like && !e.params[1].enum_like);
    assert!(
        !flat(e.expand()).contains("enum_like"),
        "the marker is not left in the code"
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(#[enum_like] s: String) -> Result<()> {}
        ),
        "integer parameter",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(#[other] s: String) -> Result<()> {}
        ),
        "parameter attributes are",
    );
}

#[test]
fn surface_attributes_are_checked() {
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(#[surface(v0_9)] s: Option<String>) -> Result<()> {}
        ),
        "unknown surface",
    );
    rejects(
        quote!(),
        quote!(
            /// d
            async fn f(#[surface(v0_6 = Other)] s: Option<String>) -> Result<()> {}
        ),
        "swaps one callback table for another",
    );
    rejects(
        quote!(blocking, status, blocking),
        quote!(
            /// d
            async fn f() -> Result<()> {}
        ),
        "only one export option",
    );
}

#[test]
fn a_surface_only_parameter_is_in_that_surface_alone() {
    let e = Export::parse(
        quote!(),
        quote!(
            /// Connects.
            async fn blazen_x_connect(
                endpoint: String,
                #[surface(v0_6)] token: Option<String>,
                #[surface(v0_6 = BlazenOtherVTable)] vt: BlazenHandlerVTable,
            ) -> Result<Client> {
                todo!()
            }
        ),
    )
    .unwrap();
    assert!(e.varies_by_surface());
    let names =
        |s: Surface| -> Vec<String> { e.params_in(s).iter().map(|p| p.name.to_string()).collect() };
    assert_eq!(names(Surface::V0_5), ["endpoint", "vt"]);
    assert_eq!(names(Surface::V0_6), ["endpoint", "token", "vt"]);
    let v06 = flat(e.header_stubs(Surface::V0_6));
    assert!(
        v06.contains("token:*constc_char,vt:BlazenOtherVTable"),
        "{v06}"
    );
    let v05 = flat(e.header_stubs(Surface::V0_5));
    assert!(
        !v05.contains("token") && v05.contains("vt:BlazenHandlerVTable"),
        "{v05}"
    );
    assert_eq!(
        e.renames(Surface::V0_6),
        [(
            "BlazenOtherVTable".to_string(),
            "BlazenHandlerVTable".to_string()
        )]
    );
    assert!(e.renames(Surface::V0_5).is_empty());
}

fn vocabulary_error(attr: &str, item: &str) -> String {
    blazen_cabi_codegen::Vocabulary::parse(attr.parse().unwrap(), item.parse().unwrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn vocabularies_refuse_what_would_make_two_words_alike() {
    let c = r#"constants = "BLAZEN_T_""#;
    assert!(vocabulary_error(c, "enum T { A = 1, B }").contains("every variant"));
    assert!(vocabulary_error(c, "enum T { A = 1, B = 1 }").contains("share"));
    assert!(
        vocabulary_error(c, r#"enum T { #[text = "b"] A, B2, #[text = "b"] C }"#).contains("share")
    );
    assert!(vocabulary_error(c, "enum T { A(u8) }").contains("no fields"));
    assert!(vocabulary_error("", "enum T { A }").contains("constants"));
    let v = blazen_cabi_codegen::Vocabulary::parse(
        c.parse().unwrap(),
        "/// Ts.\nenum T { /// The first.\n CamelCase = 3 }"
            .parse()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v.words[0].constant, "BLAZEN_T_CAMEL_CASE");
    assert_eq!(v.words[0].text, "CamelCase");
    assert_eq!(v.value(&v.words[0]), "3");
    assert!(v
        .c_defines()
        .contains("/** The first. */\n#define BLAZEN_T_CAMEL_CASE 3\n"));
}

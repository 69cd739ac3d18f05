//! The resolved table of the real crate (`cabi/src`) in each surface, held
//! still by a snapshot: a change to any export's name, shape, parameters,
//! wait flag, handle, callback table or constant shows up as a diff of
//! `tests/snapshots/table-*.txt` to review
//! (`UPDATE_SNAPSHOTS=1 cargo test -p blazen-cabi-codegen` rewrites them).

use std::path::Path;

use blazen_cabi_codegen::{Shape, Surface, Table};

fn real(surface: Surface) -> Table {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let srcs = [root.join("cabi/src"), root.join("embedded-cp/src")];
    Table::read(&srcs, surface).expect("the crate's table resolves")
}

#[test]
fn the_real_table_matches_its_snapshot() {
    for surface in Surface::ALL {
        let text = real(surface).listing();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(format!("table-{}.txt", surface.name()));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            want == text,
            "the {} table changed; review and rerun with UPDATE_SNAPSHOTS=1:\n{text}",
            surface.name()
        );
    }
}

#[test]
fn every_future_has_a_take_and_every_take_a_handle() {
    let t = real(Surface::V0_5);
    let names: Vec<&str> = t.functions.iter().map(|f| f.name.as_str()).collect();
    let mut futures = 0;
    for f in &t.functions {
        if let Shape::Future { .. } = f.shape {
            futures += 1;
            let take = f.take.as_deref().expect("a future's take is resolved");
            assert!(names.contains(&take), "{}: {take} is not exported", f.name);
        }
    }
    assert!(futures >= 10, "only {futures} future-returning functions");
}

#[test]
fn teardown_never_waits() {
    for surface in Surface::ALL {
        for f in &real(surface).functions {
            if matches!(f.shape, Shape::Free { .. }) || f.name.ends_with("_cancel") {
                assert!(!f.shape.may_wait(), "{} is teardown and may wait", f.name);
            }
        }
    }
}

fn table_of(src: &str) -> Result<Table, String> {
    let file = syn::parse_file(src).map_err(|e| e.to_string())?;
    Table::from_files(&[file], Surface::V0_5).map_err(|e| e.to_string())
}

#[test]
fn an_exported_function_outside_the_table_is_refused() {
    let err = table_of(
        r#"
        #[no_mangle]
        pub extern "C" fn blazen_sneaky() -> i32 { 0 }
        "#,
    )
    .unwrap_err();
    assert!(err.contains("outside the table"), "{err}");
    let ok = table_of(
        r#"
        /// Waits.
        #[hand_written(waits)]
        #[no_mangle]
        pub extern "C" fn blazen_marked() -> i32 { 0 }
        "#,
    )
    .unwrap();
    assert_eq!(ok.functions[0].shape, Shape::HandWritten { waits: true });
    assert_eq!(ok.functions[0].doc, "Waits.");
}

#[test]
fn shapes_come_from_the_stub_not_from_names() {
    // A stub whose name ends in `_blocking` is not thereby blocking, and
    // the future of an async stub is found by shape, not by position.
    let t = table_of(
        r#"
        #[handle(free = "blazen_thing_free", take = "blazen_future_take_thing")]
        pub struct Thing;
        /// Makes a thing.
        #[export]
        async fn blazen_make_blocking(name: String) -> Result<Thing> { todo!() }
        /// Reads.
        #[export]
        fn blazen_read_blocking(t: &Thing) -> u32 { 0 }
        "#,
    )
    .unwrap();
    let shape = |n: &str| {
        t.functions
            .iter()
            .find(|f| f.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    assert_eq!(
        shape("blazen_make_blocking_blocking").shape,
        Shape::Blocking
    );
    let fut = shape("blazen_make_blocking");
    assert_eq!(
        fut.shape,
        Shape::Future {
            yields: Some("Thing".into())
        }
    );
    assert_eq!(fut.take.as_deref(), Some("blazen_future_take_thing"));
    assert_eq!(
        shape("blazen_read_blocking").shape,
        Shape::Sync { waits: false }
    );
    assert!(!shape("blazen_read_blocking").shape.may_wait());
    assert!(!shape("blazen_thing_free").shape.may_wait());
}

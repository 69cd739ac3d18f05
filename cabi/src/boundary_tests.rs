//! The generated panic boundary and argument checks, exercised through the
//! real generated entry points of test-only stubs.

#![cfg(test)]

use std::ffi::{c_char, CStr};
use std::ptr;

use blazen_cabi_macros::export;

use crate::rt::future::{blazen_future_free, blazen_future_take_unit, blazen_future_wait};
use crate::rt::{BlazenError, ErrorKind, Result};

/// Panics when `explode`.
#[export]
async fn blazen_test_async(explode: bool, label: String) -> Result<()> {
    assert!(!explode, "deliberate panic for {label}");
    Ok(())
}

/// Panics when `explode`.
#[export]
fn blazen_test_sync(explode: bool) -> Option<String> {
    assert!(!explode, "deliberate panic");
    Some("fine".into())
}

fn take_err(e: *mut BlazenError) -> BlazenError {
    assert!(!e.is_null());
    // SAFETY: made by the library through an out_err slot.
    *unsafe { Box::from_raw(e) }
}

const LABEL: &CStr = c"boundary";

#[test]
fn a_panic_becomes_an_internal_error_and_the_library_goes_on() {
    for _ in 0..2 {
        let mut err = ptr::null_mut();
        // SAFETY: valid arguments per the generated contract.
        let rc = unsafe { blazen_test_async_blocking(true, LABEL.as_ptr(), &mut err) };
        assert_eq!(rc, -1);
        let e = take_err(err);
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.message.contains("deliberate panic for boundary"),
            "{}",
            e.message
        );

        // SAFETY: as above.
        let fut = unsafe { blazen_test_async(true, LABEL.as_ptr()) };
        let mut err = ptr::null_mut();
        // SAFETY: a live future from the call above.
        unsafe {
            assert_eq!(blazen_future_wait(fut), 0);
            assert_eq!(blazen_future_take_unit(fut, &mut err), -1);
            blazen_future_free(fut);
        }
        assert_eq!(take_err(err).kind, ErrorKind::Internal);

        // SAFETY: no arguments to check.
        let p = unsafe { blazen_test_sync(true) };
        assert!(
            p.is_null(),
            "a panicking accessor returns its neutral value"
        );
    }
    // and the same entry points still work afterwards
    // SAFETY: valid arguments.
    assert_eq!(
        unsafe { blazen_test_async_blocking(false, LABEL.as_ptr(), ptr::null_mut()) },
        0
    );
    // SAFETY: no arguments.
    let s = unsafe { blazen_test_sync(false) };
    // SAFETY: a library string.
    unsafe {
        assert_eq!(CStr::from_ptr(s).to_str().unwrap(), "fine");
        crate::rt::strings::blazen_string_free(s);
    }
}

#[test]
fn bad_arguments_name_the_parameter_in_both_variants() {
    let bad: *const c_char = c"\xff\xfe".as_ptr();
    let mut err = ptr::null_mut();
    // SAFETY: the string is NUL-terminated.
    assert_eq!(
        unsafe { blazen_test_async_blocking(false, bad, &mut err) },
        -1
    );
    let e = take_err(err);
    assert_eq!(e.kind, ErrorKind::Validation);
    assert!(
        e.message.contains("`label`") && e.message.contains("UTF-8"),
        "{}",
        e.message
    );

    // SAFETY: NULL is a checked input.
    let fut = unsafe { blazen_test_async(false, ptr::null()) };
    let mut err = ptr::null_mut();
    // SAFETY: a live future.
    unsafe {
        assert_eq!(blazen_future_take_unit(fut, &mut err), -1);
        blazen_future_free(fut);
    }
    let e = take_err(err);
    assert!(
        e.message.contains("`label`") && e.message.contains("NULL"),
        "{}",
        e.message
    );
}

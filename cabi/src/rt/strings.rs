//! The library's strings: every `char *` it returns is made here and freed
//! with `blazen_string_free`.

use std::ffi::{c_char, CStr, CString};

/// Copies the NUL-terminated `input` (borrowed) into a new string owned by
/// the library's allocator: the way a callback hands a string back (e.g. a
/// handler's `out_json`). Free with `blazen_string_free` unless handed to
/// the library. Returns NULL for NULL.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_string_alloc(input: *const c_char) -> *mut c_char {
    if input.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(input) }.to_owned().into_raw()
}

/// Frees a string returned by the library (or made by `blazen_string_alloc`).
/// NULL is ignored.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_string_free(ptr: *mut c_char) {
    if !ptr.is_null() {
        // SAFETY: the string was made by CString::into_raw in this library.
        drop(unsafe { CString::from_raw(ptr) });
    }
}

/// Frees an array of `count` library-made strings and the array itself, as
/// returned by the library. NULL is ignored; NULL entries are skipped.
#[blazen_cabi_macros::hand_written]
#[no_mangle]
pub unsafe extern "C" fn blazen_string_array_free(arr: *mut *mut c_char, count: usize) {
    if arr.is_null() {
        return;
    }
    // SAFETY: the library makes arrays as boxed slices of this length.
    let items = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(arr, count)) };
    for s in items.into_vec() {
        // SAFETY: each entry is a library string or NULL.
        unsafe { blazen_string_free(s) };
    }
}

/// Takes back a string made by `blazen_string_alloc` (e.g. a handler's
/// `out_json`), returning its contents.
///
/// # Safety
/// `ptr` is NULL or a string made by this library and not yet freed.
pub unsafe fn take_string(ptr: *mut c_char) -> Option<Vec<u8>> {
    (!ptr.is_null()).then(|| unsafe { CString::from_raw(ptr) }.into_bytes())
}

/// Copies `s` into a caller-owned C string (interior NULs are dropped).
pub fn c_string(s: String) -> *mut c_char {
    let bytes: Vec<u8> = s.into_bytes().into_iter().filter(|b| *b != 0).collect();
    CString::new(bytes).map_or(std::ptr::null_mut(), CString::into_raw)
}

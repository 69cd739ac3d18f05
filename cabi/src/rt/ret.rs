//! Storing results for C: out-parameters, plain entry points' return
//! values, and freeing handles.

use std::ffi::c_char;

use super::panic::{catch, guard};
use super::strings::c_string;
use super::{BlazenError, Result};

/// Marks a type whose values are handed to C as boxed `T *` handles.
/// Implemented by `#[handle]`.
pub trait OwnedHandle {}

/// A Rust value as returned to C, with the value used when the arguments
/// were invalid or the call panicked.
pub trait IntoC {
    type C;
    fn into_c(self) -> Self::C;
    fn neutral() -> Self::C;
}

impl IntoC for () {
    type C = ();
    fn into_c(self) {}
    fn neutral() {}
}

macro_rules! scalars {
    ($neutral:expr => $($t:ty),*) => {$(
        impl IntoC for $t {
            type C = $t;
            fn into_c(self) -> $t { self }
            fn neutral() -> $t { $neutral }
        }
    )*};
}
scalars!(0 => u8, u16, u32, u64, usize);
scalars!(-1 => i32, i64);
scalars!(false => bool);

impl IntoC for String {
    type C = *mut c_char;
    fn into_c(self) -> *mut c_char {
        c_string(self)
    }
    fn neutral() -> *mut c_char {
        std::ptr::null_mut()
    }
}

impl IntoC for Option<String> {
    type C = *mut c_char;
    fn into_c(self) -> *mut c_char {
        self.map_or(std::ptr::null_mut(), c_string)
    }
    fn neutral() -> *mut c_char {
        std::ptr::null_mut()
    }
}

impl<H: OwnedHandle> IntoC for Option<H> {
    type C = *mut H;
    fn into_c(self) -> *mut H {
        self.map_or(std::ptr::null_mut(), |h| Box::into_raw(Box::new(h)))
    }
    fn neutral() -> *mut H {
        std::ptr::null_mut()
    }
}

/// Body of every plain entry point.
pub fn sync<R: IntoC>(label: &str, f: impl FnOnce() -> Result<R>) -> R::C {
    guard(label, f).map_or_else(|_| R::neutral(), R::into_c)
}

/// Body of plain entry points with the `(out_value, has_value)` shape.
///
/// # Safety
/// Out-pointers are NULL or writable.
pub unsafe fn optional<T>(
    label: &str,
    out_value: *mut T,
    has_value: *mut i32,
    f: impl FnOnce() -> Result<Option<T>>,
) -> i32 {
    match guard(label, f) {
        Err(_) => -1,
        Ok(v) => {
            // SAFETY: NULL-checked; the caller promises they are writable.
            unsafe {
                if !has_value.is_null() {
                    *has_value = i32::from(v.is_some());
                }
                if let (Some(v), false) = (v, out_value.is_null()) {
                    *out_value = v;
                }
            }
            0
        }
    }
}

/// Calls `f` with the handle behind `ptr`: `neutral` when `ptr` is NULL or
/// `f` panicked (for the plain functions of the future and queue handles,
/// which answer with a status or a count rather than an error). A panic
/// goes through the panic boundary ([`catch`]), which logs it under the
/// handle type's name.
///
/// # Safety
/// `ptr` is NULL or a live handle of this type made by the library.
pub unsafe fn with_borrowed<T, R>(ptr: *const T, neutral: R, f: impl FnOnce(&T) -> R) -> R {
    // SAFETY: see above.
    match unsafe { ptr.as_ref() } {
        None => neutral,
        Some(h) => catch(short_type_name::<T>(), || f(h)).unwrap_or(neutral),
    }
}

/// `T`'s name without its path (`BlazenFuture`), to label a panic.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

/// Body of every generated `_free`.
///
/// # Safety
/// `handle` is NULL or a live handle of this type made by the library,
/// handed back exactly once.
pub unsafe fn free<T>(label: &str, handle: *mut T) {
    if !handle.is_null() {
        // SAFETY: see above.
        let boxed = unsafe { Box::from_raw(handle) };
        let _ = guard(label, move || {
            drop(boxed);
            Ok(())
        });
    }
}

/// Writes a result into the usual `(out, out_err)` pair; returns 0 or -1.
///
/// # Safety
/// `out` and `out_err` are NULL or valid for a write.
pub unsafe fn store<T>(r: Result<T>, out: *mut *mut T, out_err: *mut *mut BlazenError) -> i32 {
    match r {
        Ok(v) => {
            if !out.is_null() && std::mem::size_of::<T>() != 0 {
                // SAFETY: checked non-NULL; the caller promises it is writable.
                unsafe { *out = Box::into_raw(Box::new(v)) };
            }
            0
        }
        Err(e) => {
            if !out_err.is_null() {
                // SAFETY: as above.
                unsafe { *out_err = Box::into_raw(Box::new(e)) };
            }
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_in_a_borrowed_call_gives_the_neutral_value() {
        struct Probe;
        let probe = Probe;
        // SAFETY: a live value for the call.
        let r = unsafe {
            super::with_borrowed(&probe as *const Probe, -1, |_| -> i32 { panic!("boom") })
        };
        assert_eq!(r, -1);
        assert_eq!(super::short_type_name::<Probe>(), "Probe");
    }
}

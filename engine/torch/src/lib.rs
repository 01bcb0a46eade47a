#![allow(unsafe_code)] // a C ABI: each unsafe block says what the caller guarantees
//! The LibTorch model plugin (`libflowcast_torch.so`).
//!
//! LibTorch is large: loading it maps and relocates ~120 MiB and runs its static
//! initialisers (a third of a second), in every process that links it. The `flowcast`
//! binary therefore does not link it: it loads this library with `dlopen` only when a job's
//! model is `torchscript` (`engine/src/model.rs`), so jobs without the LSTM never pay for it.
//!
//! The interface is a C ABI over [`Forecaster`], versioned by [`flowcast_torch_abi`]:
//! errors are returned as NUL-terminated strings the caller frees with
//! [`flowcast_torch_free_error`]; no panic crosses the boundary.

use flowcast_inference::{Forecaster, LoadOptions};
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// The version of this interface; the loader refuses a plugin of another version.
pub const ABI_VERSION: u32 = 1;

/// The interface version ([`ABI_VERSION`]).
#[unsafe(no_mangle)]
pub extern "C" fn flowcast_torch_abi() -> u32 {
    ABI_VERSION
}

fn path(ptr: *const u8, len: usize) -> PathBuf {
    // SAFETY: the caller passes `len` readable bytes at `ptr` (the ABI's contract).
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

fn set_error(err: *mut *mut c_char, message: String) {
    if !err.is_null() {
        let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: `err` is non-null and points to a writable pointer (the ABI's contract).
        unsafe { *err = c.into_raw() };
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// Loads the model of metadata file `meta` (`meta_len` UTF-8 bytes) and artifact `model`,
/// with `threads` intra-op threads (≤ 0: leave LibTorch's setting). Returns the model, or
/// null with `*err` set.
///
/// # Safety
/// `meta` and `model` point to readable bytes of the given lengths; `err` is null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_open(
    meta: *const u8,
    meta_len: usize,
    model: *const u8,
    model_len: usize,
    threads: i32,
    err: *mut *mut c_char,
) -> *mut Forecaster {
    let options = LoadOptions {
        model_path: Some(path(model, model_len)),
        intra_op_threads: (threads > 0).then_some(threads),
    };
    let meta = path(meta, meta_len);
    match catch_unwind(|| Forecaster::open_with(&meta, &options)) {
        Ok(Ok(f)) => Box::into_raw(Box::new(f)),
        Ok(Err(e)) => {
            set_error(err, e.to_string());
            std::ptr::null_mut()
        }
        Err(p) => {
            set_error(
                err,
                format!("the model plugin panicked: {}", panic_message(&*p)),
            );
            std::ptr::null_mut()
        }
    }
}

/// The model's id (UTF-8, `*len` bytes), valid until [`flowcast_torch_close`].
///
/// # Safety
/// `model` came from [`flowcast_torch_open`] and is open; `len` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_model_id(
    model: *const Forecaster,
    len: *mut usize,
) -> *const u8 {
    // SAFETY: the caller's contract.
    let id = unsafe { (*model).model_id() };
    // SAFETY: the caller's contract.
    unsafe { *len = id.len() };
    id.as_ptr()
}

/// The number of windows an input sequence must have.
///
/// # Safety
/// `model` came from [`flowcast_torch_open`] and is open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_sequence_length(model: *const Forecaster) -> usize {
    // SAFETY: the caller's contract.
    unsafe { (*model).sequence_length() }
}

/// Forecasts the next window of `n` sequences: sequence `i` is `lens[i]` `[temperature,
/// humidity]` pairs at `seqs[i]`; forecast `i` goes to `out[i]`. Returns 0, or -1 with
/// `*err` set.
///
/// # Safety
/// `model` is open; `seqs`, `lens` and `out` hold `n` elements, each `seqs[i]` `lens[i]`
/// pairs; `err` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_forecast(
    model: *const Forecaster,
    seqs: *const *const [f32; 2],
    lens: *const usize,
    n: usize,
    out: *mut [f32; 2],
    err: *mut *mut c_char,
) -> i32 {
    if n == 0 {
        return 0;
    }
    // SAFETY: the caller's contract.
    let (model, seqs, lens) = unsafe {
        (
            &*model,
            std::slice::from_raw_parts(seqs, n),
            std::slice::from_raw_parts(lens, n),
        )
    };
    let inputs: Vec<&[[f32; 2]]> = seqs
        .iter()
        .zip(lens)
        // SAFETY: the caller's contract.
        .map(|(&p, &len)| unsafe { std::slice::from_raw_parts(p, len) })
        .collect();
    match catch_unwind(AssertUnwindSafe(|| model.forecast(&inputs))) {
        Ok(Ok(forecasts)) if forecasts.len() == n => {
            // SAFETY: the caller's contract: `out` holds `n` elements.
            let out = unsafe { std::slice::from_raw_parts_mut(out, n) };
            out.copy_from_slice(&forecasts);
            0
        }
        Ok(Ok(forecasts)) => {
            set_error(
                err,
                format!(
                    "the model returned {} forecasts for {n} sequences",
                    forecasts.len()
                ),
            );
            -1
        }
        Ok(Err(e)) => {
            set_error(err, e.to_string());
            -1
        }
        Err(p) => {
            set_error(
                err,
                format!("the model plugin panicked: {}", panic_message(&*p)),
            );
            -1
        }
    }
}

/// Frees an error string of this library.
///
/// # Safety
/// `err` is null or came from this library and was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_free_error(err: *mut c_char) {
    if !err.is_null() {
        // SAFETY: the caller's contract.
        drop(unsafe { CString::from_raw(err) });
    }
}

/// Closes a model.
///
/// # Safety
/// `model` came from [`flowcast_torch_open`] and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flowcast_torch_close(model: *mut Forecaster) {
    if !model.is_null() {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(model) });
    }
}

#![allow(unsafe_code)] // dlopen/dlsym and the plugin's C ABI: each unsafe block says what holds
//! The TorchScript LSTM as a [`Predictor`], through the LibTorch model plugin
//! (`libflowcast_torch.so`, crate `engine/torch`), which checks the artifact's sha256 and its
//! input/output contract on load.
//!
//! The `flowcast` binary does not link LibTorch: the plugin is loaded with `dlopen` the
//! first time a job asks for a torchscript model, so a job without the LSTM never maps or
//! initialises it (~120 MiB and a third of a second per process). The plugin is looked
//! for at `FLOWCAST_TORCH_PLUGIN`, else beside the running binary (or one folder up, where
//! cargo puts libraries for its test and example binaries).

use crate::dataflow::forecast::Predictor;
use flowcast_operators::sequence::Sequence;
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The plugin's file name.
pub const PLUGIN_FILE: &str = "libflowcast_torch.so";
/// The plugin interface this engine speaks (`flowcast_torch_abi`).
const ABI_VERSION: u32 = 1;

type OpenFn =
    unsafe extern "C" fn(*const u8, usize, *const u8, usize, i32, *mut *mut c_char) -> *mut c_void;
type ModelIdFn = unsafe extern "C" fn(*const c_void, *mut usize) -> *const u8;
type SeqLenFn = unsafe extern "C" fn(*const c_void) -> usize;
type ForecastFn = unsafe extern "C" fn(
    *const c_void,
    *const *const [f32; 2],
    *const usize,
    usize,
    *mut [f32; 2],
    *mut *mut c_char,
) -> i32;
type FreeErrorFn = unsafe extern "C" fn(*mut c_char);
type CloseFn = unsafe extern "C" fn(*mut c_void);

/// The plugin's entry points (the library stays loaded for the life of the process).
struct Plugin {
    open: OpenFn,
    model_id: ModelIdFn,
    sequence_length: SeqLenFn,
    forecast: ForecastFn,
    free_error: FreeErrorFn,
    close: CloseFn,
}

/// Where the plugin is looked for, in order.
fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("FLOWCAST_TORCH_PLUGIN") {
        return vec![PathBuf::from(p)];
    }
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    else {
        return Vec::new();
    };
    let mut v = vec![dir.join(PLUGIN_FILE)];
    if let Some(up) = dir.parent() {
        v.push(up.join(PLUGIN_FILE));
    }
    v
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

fn load_plugin() -> Result<Plugin, String> {
    let tried = candidates();
    let Some(path) = tried.iter().find(|p| p.exists()) else {
        return Err(format!(
            "the LibTorch model plugin {PLUGIN_FILE} is not at {} (build it with \
             `cargo build -p flowcast-torch`, with `--release` for a release flowcast, or \
             set FLOWCAST_TORCH_PLUGIN)",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    };
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("bad plugin path {}", path.display()))?;
    // SAFETY: a valid C string; the library is never closed, so its symbols stay valid.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {}: {}", path.display(), dl_error()));
    }
    let sym = |name: &str| -> Result<*mut c_void, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: `handle` is a loaded library, `c` a valid C string.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() {
            Err(format!(
                "{} has no `{name}`: {}",
                path.display(),
                dl_error()
            ))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is the plugin's function of the matching signature (ABI version
    // checked first).
    unsafe {
        let abi: unsafe extern "C" fn() -> u32 = std::mem::transmute(sym("flowcast_torch_abi")?);
        let version = abi();
        if version != ABI_VERSION {
            return Err(format!(
                "{} speaks plugin interface {version}, this flowcast speaks {ABI_VERSION}: \
                 rebuild both from one checkout",
                path.display()
            ));
        }
        Ok(Plugin {
            open: std::mem::transmute::<*mut c_void, OpenFn>(sym("flowcast_torch_open")?),
            model_id: std::mem::transmute::<*mut c_void, ModelIdFn>(sym(
                "flowcast_torch_model_id",
            )?),
            sequence_length: std::mem::transmute::<*mut c_void, SeqLenFn>(sym(
                "flowcast_torch_sequence_length",
            )?),
            forecast: std::mem::transmute::<*mut c_void, ForecastFn>(sym(
                "flowcast_torch_forecast",
            )?),
            free_error: std::mem::transmute::<*mut c_void, FreeErrorFn>(sym(
                "flowcast_torch_free_error",
            )?),
            close: std::mem::transmute::<*mut c_void, CloseFn>(sym("flowcast_torch_close")?),
        })
    }
}

fn plugin() -> Result<&'static Plugin, String> {
    static PLUGIN: OnceLock<Result<Plugin, String>> = OnceLock::new();
    PLUGIN
        .get_or_init(load_plugin)
        .as_ref()
        .map_err(Clone::clone)
}

fn take_error(p: &Plugin, err: *mut c_char) -> String {
    if err.is_null() {
        return "the model plugin failed without a message".to_owned();
    }
    // SAFETY: a NUL-terminated string of the plugin, freed by it right after.
    let s = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: `err` came from the plugin and is freed once.
    unsafe { (p.free_error)(err) };
    s
}

/// A loaded TorchScript forecaster.
#[derive(Debug)]
pub struct TorchPredictor {
    model: *mut c_void,
    id: String,
    sequence_length: usize,
}

// SAFETY: the plugin's model (a `Forecaster`) is `Send + Sync`; this handle owns it.
unsafe impl Send for TorchPredictor {}

/// Loads the model at `path` (`x.pt`) with its metadata (`x.json`) beside it. LibTorch runs
/// one intra-op thread: parallelism comes from the timely workers.
pub fn load(path: &Path) -> Result<TorchPredictor, String> {
    let p = plugin()?;
    let meta = path.with_extension("json");
    let meta = meta.as_os_str().as_encoded_bytes();
    let model_path = path.as_os_str().as_encoded_bytes();
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: both byte slices outlive the call; `err` is writable.
    let model = unsafe {
        (p.open)(
            meta.as_ptr(),
            meta.len(),
            model_path.as_ptr(),
            model_path.len(),
            1,
            &mut err,
        )
    };
    if model.is_null() {
        return Err(take_error(p, err));
    }
    let mut len = 0usize;
    // SAFETY: `model` is open; the id's bytes are the model's, copied at once.
    let id = unsafe {
        let ptr = (p.model_id)(model, &mut len);
        String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
    };
    // SAFETY: `model` is open.
    let sequence_length = unsafe { (p.sequence_length)(model) };
    Ok(TorchPredictor {
        model,
        id,
        sequence_length,
    })
}

impl TorchPredictor {
    /// The sequence length the model reads.
    pub fn sequence_length(&self) -> usize {
        self.sequence_length
    }
}

impl Drop for TorchPredictor {
    fn drop(&mut self) {
        if let Ok(p) = plugin() {
            // SAFETY: the model is open and dropped once.
            unsafe { (p.close)(self.model) };
        }
    }
}

impl Predictor for TorchPredictor {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn predict(&mut self, batch: &[Sequence]) -> Result<Vec<[f64; 2]>, String> {
        let p = plugin()?;
        let seqs: Vec<*const [f32; 2]> = batch.iter().map(|s| s.values.as_ptr()).collect();
        let lens: Vec<usize> = batch.iter().map(|s| s.values.len()).collect();
        let mut out = vec![[0f32; 2]; batch.len()];
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `seqs`, `lens` and `out` hold `batch.len()` elements and each `seqs[i]`
        // `lens[i]` pairs, all alive for the call; the model is open.
        let rc = unsafe {
            (p.forecast)(
                self.model,
                seqs.as_ptr(),
                lens.as_ptr(),
                batch.len(),
                out.as_mut_ptr(),
                &mut err,
            )
        };
        if rc != 0 {
            return Err(take_error(p, err));
        }
        Ok(out
            .into_iter()
            .map(|[t, h]| [f64::from(t), f64::from(h)])
            .collect())
    }
}

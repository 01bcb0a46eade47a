//! Bakes LibTorch's folder into the rpath of the tests, benches and binaries of the crates
//! that may link tch, so they run without `LD_LIBRARY_PATH`: inference (and the operators'
//! tests and benches of it), the plugin, and the engine's and tests' test binaries. An rpath
//! that names a folder a binary loads nothing from costs nothing (ingest and the flowcast
//! binary share this file and link no tch); without `LIBTORCH` (a Pi build) there is none.
//! The folder comes from `.cargo/config.toml`; its symlink is resolved so the rpath names
//! the cache, which outlives any one clone.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(dir) = std::env::var_os("LIBTORCH")
        && let Ok(dir) = std::fs::canonicalize(&dir)
    {
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            dir.join("lib").display()
        );
    }
}

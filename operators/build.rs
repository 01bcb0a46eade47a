//! Bakes LibTorch's folder into the rpath of the tests, benches and binaries of the crates
//! that may link tch, so they run without `LD_LIBRARY_PATH`. operators (with `inference`),
//! engine and tests link it; ingest shares this file too because in a workspace build
//! cargo unifies features, and its test binaries then link tch through operators (built
//! alone, as on a Pi, ingest links no tch and the rpath names nothing). The folder comes
//! from `.cargo/config.toml`; its symlink is resolved so the rpath names the cache, which
//! outlives any one clone.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let links_tch = std::env::var_os("CARGO_FEATURE_INFERENCE").is_some()
        || std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p != "flowcast-operators");
    if let (true, Some(dir)) = (links_tch, std::env::var_os("LIBTORCH"))
        && let Ok(dir) = std::fs::canonicalize(&dir)
    {
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            dir.join("lib").display()
        );
    }
}

//! Bakes LibTorch's folder into the rpath of the tests, benches and binaries of the crates
//! that link tch (operators with `inference`, engine and tests share this file), so they
//! run without `LD_LIBRARY_PATH`. The folder comes from `.cargo/config.toml`; its symlink is
//! resolved so the rpath names the cache, which outlives any one clone.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let links_tch = std::env::var_os("CARGO_FEATURE_INFERENCE").is_some()
        || std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p != "flowcast-operators");
    if let (true, Some(dir)) = (links_tch, std::env::var_os("LIBTORCH")) {
        let dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.into());
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            dir.join("lib").display()
        );
    }
}

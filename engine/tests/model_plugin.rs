//! The `flowcast` binary links no LibTorch: the LSTM comes from the model plugin
//! (`libflowcast_torch.so`, loaded only for a torchscript model), and a job that asks for
//! the model where the plugin is missing fails at once with an error that says what to do.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_flowcast");

#[test]
fn the_flowcast_binary_does_not_link_libtorch() {
    let out = Command::new("ldd").arg(BIN).output().expect("ldd");
    assert!(out.status.success(), "ldd {BIN}: {out:?}");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(
        libs.contains("libc.so"),
        "ldd lists the binary's libraries: {libs}"
    );
    for torch in ["libtorch", "libc10"] {
        assert!(
            !libs.contains(torch),
            "{BIN} links {torch}; it must load it only through the plugin:\n{libs}"
        );
    }
}

#[test]
fn a_torchscript_job_without_the_plugin_fails_at_once_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/dht11_lstm.pt");
    let spec = flowcast_tests::forecast::spec_with_model(
        // Nothing listens here: the model is checked before any broker is asked.
        "127.0.0.1:9",
        "plugin-in",
        "plugin-out",
        &format!("kind = \"torchscript\"\npath = \"{}\"", model.display()),
    );
    let job = dir.path().join("job.toml");
    std::fs::write(&job, spec).expect("write spec");
    let missing = dir.path().join("libflowcast_torch.so");
    let out = Command::new(BIN)
        .arg("run")
        .arg(&job)
        .env("FLOWCAST_TORCH_PLUGIN", &missing)
        .output()
        .expect("run flowcast");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the job ran without its model: {stderr}"
    );
    assert!(
        stderr.contains("cannot load the model")
            && stderr.contains("LibTorch model plugin")
            && stderr.contains(&missing.display().to_string())
            && stderr.contains("cargo build -p flowcast-torch"),
        "the error names the plugin, where it was looked for and how to build it: {stderr}"
    );
}

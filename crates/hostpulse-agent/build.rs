//! Links secur32 for Windows: librdkafka's SSPI (Kerberos) module names it only through MSVC's
//! `#pragma comment(lib, "secur32.lib")`, which MinGW ignores, and rdkafka-sys does not emit it,
//! so a windows-gnu link would fail on `AcquireCredentialsHandleW` and the like. Harmless on MSVC.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        println!("cargo:rustc-link-lib=secur32");
    }
}

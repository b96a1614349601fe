//! Intentionally empty: the build script exists so Cargo.toml can name a host-side dependency
//! feature that keeps DuckDB's expensive build shared between workspace and crate-only builds.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}

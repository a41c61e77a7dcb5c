#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs every check: formatting, clippy with warnings
# as errors, and all tests, including the end-to-end suites against a real broker (tansu, which
# the tests start on free loopback ports and stop), the real Quix SDK readers, and a real
# Secret Service (gnome-keyring in a private D-Bus session, started and stopped here).
# Those tests are `#[ignore]`d, so a plain `cargo test` (no broker, venvs, keyring or display)
# runs only the unit, golden and self-contained tests; here `--include-ignored` runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo build (binaries the end-to-end suites run: hostpulse, hostpulse-app)"
cargo build --workspace --bins
say "cargo test"
rm -rf test-output
bash scripts/with-secret-service.sh cargo test --workspace --no-fail-fast -- --include-ignored

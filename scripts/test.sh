#!/usr/bin/env bash
# The test command of the README: every unit, integration and property test of
# the workspace, built and run with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1
# The helm and prometheus tests run the other packages' binaries and build them
# with exactly this command (a no-op when fresh). Building them here, before any
# test starts, keeps that compile out of the timed end-to-end tests.
cargo build --bins -p hami-agent -p hami-device-plugin -p hami-estimator
cargo nextest run --workspace --no-fail-fast "$@"

#!/usr/bin/env bash
# The test command of the README: every unit, integration and property test of
# the workspace, built and run with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1
cargo nextest run --workspace --no-fail-fast "$@"

#!/usr/bin/env bash
# Builds the Debian package of the `fairio` command: target/debian/fairio_VERSION_ARCH.deb.
# Needs cargo-deb (`cargo install cargo-deb`). Install the result with
#   sudo apt install ./target/debian/fairio_*.deb
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -p fairio-cli
rm -rf target/release/man
target/release/fairio man target/release/man
gzip -9n target/release/man/*.1
cargo deb -p fairio-cli --no-build "$@"

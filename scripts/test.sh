#!/usr/bin/env bash
# The full test suite: the Rust workspace, then the Python package built as a wheel from this
# checkout and installed into a fresh virtual environment (with torch, which the Python tests
# need), then its pytest suite. Run from anywhere: `bash scripts/test.sh`.
#
# Environment: PYTHON (default python3) makes the venv; CONVLENS_TEST_VENV (default
# target/pytest-venv) is where it lives, recreated on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

echo "== cargo test --workspace"
cargo test --workspace

echo "== Python package: wheel, fresh virtual environment, pytest"
# the CLI binary the Python tests compare against (built by the Rust tests above)
cargo build -q -p convlens-cli
export CONVLENS_BIN="$root/target/debug/convlens"
venv="${CONVLENS_TEST_VENV:-$root/target/pytest-venv}"
"${PYTHON:-python3}" -m venv --clear "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -r python/tests/requirements.txt
if [ -f scale_out/requirements.txt ]; then
  "$py" -m pip install -q -r scale_out/requirements.txt
fi
wheels="$root/target/wheels"
rm -rf "$wheels"
"$py" -m pip wheel -q --no-deps -w "$wheels" ./python
"$py" -m pip install -q "$wheels"/convlens-*.whl
suites=(python/tests)
[ -d scale_out/tests ] && suites+=(scale_out/tests)
# run from outside the source tree so that the installed wheel is what gets imported
cd "$root/target"
"$py" -m pytest -p no:cacheprovider -q "${suites[@]/#/$root/}"

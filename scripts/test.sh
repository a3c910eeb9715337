#!/usr/bin/env bash
# Set up everything the tests need (see scripts/setup.sh), then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k tape -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# pytest exits 5 when it collected no test: that fails here, as any non-zero exit does.
exec "$VENV/bin/python" -m pytest -n 2 "$@"

#!/usr/bin/env bash
# Shared set-up for minigrad's commands: system packages, then a virtual environment
# in .venv with minigrad and everything the tests, tutorials and training need.
# Sourced by scripts/test.sh and scripts/main.sh; safe to run again (it skips what is done).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${MINIGRAD_VENV:-$ROOT/.venv}"

need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
# a headless browser, for the test that steps through the saved backward player
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
"$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "minigrad setup: installing Debian packages: ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        echo "minigrad setup: missing system packages: ${need_apt[*]}." >&2
        echo "  Install them with: sudo apt-get install ${need_apt[*]}" >&2
        echo "  (macOS: brew install graphviz; conda: conda install graphviz)." >&2
        echo "  Tests that need them are skipped until then." >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "minigrad setup: creating a virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the dependency list changed.
stamp="$VENV/.minigrad-deps"
want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "minigrad setup: installing minigrad[dev] into $VENV (a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

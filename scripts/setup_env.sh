#!/usr/bin/env bash
# Create .venv at the repository root and install ssnas into it (idempotent).
# torch: TORCH_SPEC overrides the pin (e.g. TORCH_SPEC="torch>=2.4" on a CUDA machine that already
# has the right index configured). The default pin, torch==2.13.0, is the local CPU wheel of the
# development machine; any torch >= 2.4 works.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-dev}"
stamp="$venv/.ssnas-installed-$extras"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv" >&2
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip >&2 || true
if ! "$py" -c "import torch" 2>/dev/null; then
    spec="${TORCH_SPEC:-torch==2.13.0}"
    echo "[setup] installing $spec" >&2
    "$py" -m pip install -q "$spec" >&2
fi
echo "[setup] installing ssnas[$extras] (editable)" >&2
"$py" -m pip install -q -e "$root[$extras]" >&2
echo "$want" > "$stamp"

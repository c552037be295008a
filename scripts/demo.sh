#!/usr/bin/env bash
# The README's main job: install into .venv if needed, then a short real search on the embedded dataset.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" dev
cd "$root"
exec "$root/.venv/bin/ssnas" search --config demo --out runs/demo --overwrite "$@"

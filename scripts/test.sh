#!/usr/bin/env bash
# The README's test command: install into .venv if needed, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh" dev
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"

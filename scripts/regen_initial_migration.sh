#!/usr/bin/env bash
# Development helper while the schema is young (nothing deployed yet): rewrites the single
# initial revision from the models. Once a release ships, add new revisions instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/0001_initial.py
PREFLOOP_DATA_DIR="$tmp" .venv/bin/alembic revision --autogenerate --rev-id 0001 -m "initial" >/dev/null
.venv/bin/ruff format -q migrations/versions/0001_initial.py || true
rm -rf "$tmp"
echo "regenerated migrations/versions/0001_initial.py"

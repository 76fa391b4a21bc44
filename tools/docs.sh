#!/usr/bin/env bash
# Build the documentation site offline into _docs/ (open _docs/index.html), without quarto.
# The published site is still built by nbdev_docs + quarto (.github/workflows/deploy.yaml); this builds the same
# pages from the same notebooks with nbdev's own processors, executing every notebook (cells flagged `slow` in
# settings.ini's tst_flags are shown but not run). See tools/docs_build.py.
#
#   tools/docs.sh                          # every notebook (a few minutes on CPU)
#   tools/docs.sh nbs/02_learner.ipynb     # run only these again; other pages come from their last run
#   NNTRAIN_DOCS_WORKERS=1 tools/docs.sh   # notebooks run at once (default 2)
#
# Needs the dev requirements (pip install -e ".[dev]"). Exits 1 if a notebook cell raised (its page still shows it).
set -euo pipefail
args=()
for a in "$@"; do args+=("$(realpath "$a")"); done   # paths are relative to where it was called
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONHASHSEED=0 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1   # the notebooks use the bundled sample, never the Hub
exec "${PYTHON:-python}" tools/docs_build.py ${args[@]+"${args[@]}"}

#!/usr/bin/env bash
# Create ./.venv with everything the workflow and the tests need (idempotent).
# torch is pinned and installed first: an unpinned torch pulls a multi-GB CUDA build.
# Every install is constrained by envs/constraints.txt, the lock of tested versions (all packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${TORCH_VERSION:-2.13.0}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
LOCK=envs/constraints.txt
if ! grep -qx "torch==$TORCH" "$LOCK"; then
  # another torch (TORCH_VERSION): the lock without its torch pin (the rest may then need to differ too)
  LOCK=$(mktemp) && trap 'rm -f "$LOCK"' EXIT
  grep -v '^torch==' envs/constraints.txt >"$LOCK"
fi

# uv installs what pip would (same resolution, same versions) in 20 s instead of 125 s from scratch here.
# It does not read pip's configuration, so the indexes, find-links and constraints pip is configured with
# are passed on; pip does the install wherever uv cannot.
uv_install() {
  .venv/bin/pip install -q -c "$LOCK" uv >/dev/null 2>&1 || return 1
  local args=(--python .venv/bin/python --index-strategy unsafe-best-match --constraint "$LOCK") key val u
  while IFS= read -r line; do
    key=${line%%=*} val=${line#*=}
    val=${val//\'/}
    case ${key##*.} in
      index-url) args+=(--index-url "$val") ;;
      extra-index-url) for u in $val; do args+=(--extra-index-url "$u"); done ;;
      find-links) for u in $val; do args+=(--find-links "$u"); done ;;
      constraint) for u in $val; do args+=(--constraint "$u"); done ;;
    esac
  done < <(.venv/bin/pip config list 2>/dev/null)
  .venv/bin/uv pip install -q "${args[@]}" "$@"
}
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null; then
  uv_install "torch==$TORCH" || .venv/bin/pip install -q -c "$LOCK" "torch==$TORCH"
fi
uv_install -e ".[test]" || .venv/bin/pip install -q -c "$LOCK" -e ".[test]"
# The embedded data comes from Debian packages (apt-get download needs package lists).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  apt-get update -qq
fi
echo "environment ready: .venv ($(.venv/bin/python -c 'import torch, transformers, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "snakemake", snakemake.__version__)'))"

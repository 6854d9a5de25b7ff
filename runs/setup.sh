# Sets up what the project needs, then puts its python first on PATH (sourced by the recipes in runs/ and
# runs/test.sh, not run). Costs one import check when everything is present.
# Which environment: the active one (a virtualenv or conda env) if there is one; else .venv in the
# checkout if it exists; else the python on PATH if it already has every requirement; else a new .venv.
# torch: where none is installed and no GPU is present (no working nvidia-smi), the CPU build
# (torch==$AR2DIFF_CPU_TORCH+cpu, from download.pytorch.org/whl/cpu when it can be reached, else from
# pip's own configuration), so that a machine without a GPU never downloads CUDA packages.
# AR2DIFF_SETUP=check: only say what is missing (status 1), install nothing.
# Managing your own environment instead: pip install -r requirements.txt (and torch to suit).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CPU_TORCH=${AR2DIFF_CPU_TORCH:-2.13.0}
CPU_INDEX=https://download.pytorch.org/whl/cpu

# prints what requirements.txt asks for and $1 lacks (a missing package or a lower version); none: empty
missing() {
  "$1" - "$ROOT/requirements.txt" <<'EOF' 2>/dev/null || echo "(no usable python)"
import re, sys
from importlib.metadata import PackageNotFoundError, version
def nums(v):
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(>=\s*([\d.]+))?", line.split("#")[0])
    if not m:
        continue
    try:
        have = version(m.group(1))
    except PackageNotFoundError:
        have = None
    if have is None or (m.group(3) and nums(have) < nums(m.group(3))):
        print(m.group(0).strip())
EOF
}

if [ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then
  PY=$(command -v python); WHERE="the active environment ($(dirname "$(dirname "$PY")"))"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY=$ROOT/.venv/bin/python; WHERE="$ROOT/.venv"
elif command -v python >/dev/null && [ -z "$(missing python)" ]; then  # the recipes call `python`
  PY=$(command -v python); WHERE="$PY"
else
  echo "setup: creating $ROOT/.venv (python3 -m venv)"
  python3 -m venv "$ROOT/.venv" || { echo "setup: python3 -m venv failed; install python3-venv" >&2; exit 1; }
  PY=$ROOT/.venv/bin/python; WHERE="$ROOT/.venv"
fi

LACKING=$(missing "$PY")
if [ -n "$LACKING" ] && [ "${AR2DIFF_SETUP:-}" = check ]; then  # report only, install nothing
  echo "setup: $WHERE lacks: $(echo "$LACKING" | tr '\n' ' ')" >&2; exit 1
fi
if [ -n "$LACKING" ]; then
  echo "setup: installing into $WHERE: $(echo "$LACKING" | tr '\n' ' ')"
  if ! "$PY" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
      echo "setup: a GPU is present: torch from PyPI (with its CUDA packages)"
      "$PY" -m pip install -q "torch>=2.4"
    elif "$PY" -c "import urllib.request as u; u.urlopen('$CPU_INDEX/', timeout=5)" 2>/dev/null; then
      echo "setup: no GPU: torch==$CPU_TORCH+cpu, the CPU build ($CPU_INDEX)"
      "$PY" -m pip install -q "torch==$CPU_TORCH+cpu" --index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple
    else
      echo "setup: no GPU, $CPU_INDEX unreachable: torch==$CPU_TORCH+cpu from pip's own indexes and find-links"
      "$PY" -m pip install -q "torch==$CPU_TORCH+cpu"
    fi || { echo "setup: could not install torch into $WHERE (see pip's message above)" >&2; exit 1; }
  fi
  "$PY" -m pip install -q -r "$ROOT/requirements.txt" ||
    { echo "setup: pip install -r requirements.txt failed in $WHERE" >&2; exit 1; }
  LACKING=$(missing "$PY")
  [ -z "$LACKING" ] || { echo "setup: still missing after the install: $LACKING" >&2; exit 1; }
fi
export PATH="$(dirname "$PY"):$PATH"

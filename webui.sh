#!/usr/bin/env bash
# Set up ./venv (first run only) and start the web UI. All arguments go to webui.py.
# Honours A1111's variables: python_cmd, venv_dir, TORCH_COMMAND, COMMANDLINE_ARGS.
set -euo pipefail
cd "$(dirname "$0")"

python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build. The PyPI wheels of this pair
# run on CUDA (Linux x86_64), on MPS (macOS) and on the CPU; torchvision is needed by spandrel.
TORCH_COMMAND="${TORCH_COMMAND:-pip install torch==2.14.1 torchvision==0.29.1}"

# shellcheck disable=SC2206
extra_args=(${COMMANDLINE_ARGS:-})
all_args=("${extra_args[@]}" "$@")
has_flag() { local f; for f in "${all_args[@]}"; do [[ "$f" == "$1" ]] && return 0; done; return 1; }

if [[ "$venv_dir" != "-" && ! -x "$venv_dir/bin/python" ]]; then
    echo "Creating venv in $venv_dir"
    "$python_cmd" -m venv "$venv_dir"
fi
if [[ "$venv_dir" == "-" ]]; then py="$python_cmd"; else py="$venv_dir/bin/python"; fi

stamp="$venv_dir/.installed-$(cat requirements.txt | sha256sum | cut -c1-16)"
if ! has_flag --skip-install && [[ ! -f "$stamp" ]]; then
    echo "Installing requirements (first run only)"
    "$py" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$py" -m $TORCH_COMMAND
    "$py" -m pip install -q -r requirements.txt
    # CLIP's BPE vocabulary for the offline tokenizer; --no-deps keeps it from replacing torch.
    "$py" -m pip install -q --no-deps clip-anytorch==2.6.0
    touch "$stamp"
fi

if has_flag --exit; then
    echo "Install done (--exit given), not starting the server."
    exit 0
fi
exec "$py" webui.py "${all_args[@]}"

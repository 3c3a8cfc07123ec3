#!/usr/bin/env bash
# Wheels for an offline CUDA machine whose image has Python 3.12, PyTorch and most of the scientific stack but not
# llm_gym's other dependencies or the TRL peers: .whl/site (installed for every step of gpu_checks.sh), .whl/trl12
# (trl 1.12, PPO's peer) and .whl/trl16 (trl 1.16, GRPO's and RLOO's). Run from the repository root on a machine
# with access to the package index; keep .whl out of git (for example in .git/info/exclude).
set -euo pipefail
py=${PYTHON:-python3}
binary=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
"$py" -m pip download -q "${binary[@]}" -d .whl/site gymnasium==1.4.0 farama-notifications array-api-compat \
    stable-baselines3==2.9.2 transformers==5.23.0 regex==2026.1.15 nltk datasets==5.2.0 dill==0.4.1 \
    multiprocess==0.70.19
"$py" -m pip wheel -q --no-deps -w .whl/site rouge-score==0.1.2  # published as a source archive only
"$py" -m pip download -q "${binary[@]}" -d .whl/trl12 trl==1.12.0
"$py" -m pip download -q "${binary[@]}" -d .whl/trl16 trl==1.16.0

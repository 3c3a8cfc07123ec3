#!/usr/bin/env bash
# The checks to run when a CUDA machine is available: the tests marked gpu, then benchmarks.perf with a
# Qwen2-0.5B-class policy (random init, bf16 autocast) against TRL on the same GPU.
#
# Usage, from the repository root:  bash benchmarks/gpu_checks.sh OUT_DIR [GIT_COMMIT]
# Writes OUT_DIR/{gpu.txt, pytest_gpu.log, perf.log, perf_cuda.json}; copy perf_cuda.json to
# benchmarks/results/ to commit it. GIT_COMMIT names the code when the tree is a copy without .git.
# For an offline machine, benchmarks/gpu_wheels.sh fills .whl/site (what the machine lacks), .whl/trl12 (trl 1.12,
# for PPO) and .whl/trl16 (trl 1.16, for GRPO/RLOO): each folder is installed into /tmp/<folder> and TRL runs
# through a small wrapper that puts its folder on the path.
# Without those folders the machine's own packages and the TRL virtualenvs named by benchmarks.perf are used.
# PERF_ARGS adds options to benchmarks.perf (e.g. "--only pg", which keeps OUT_DIR/perf_cuda.json's other parts);
# PYTEST_FILES replaces the test files; PYTEST_TIMEOUT and PERF_TIMEOUT bound each step, in seconds.
# PROFILE_PARTS (e.g. "memory pg") then re-runs those parts under torch.profiler into OUT_DIR/perf_profile_cuda.json:
# where our workers' time goes (a diagnosis; its timings are slowed by the profiler and are not the figures).
set -u
out=${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR [GIT_COMMIT]}
commit=${2:-}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
trl=()
for folder in site trl12 trl16; do
    [ -d ".whl/$folder" ] || continue
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "/tmp/$folder" \
        .whl/$folder/*.whl || exit 1
    if [ "$folder" != site ]; then
        printf '#!/bin/sh\nPYTHONPATH=/tmp/%s:/tmp/site exec %s "$@"\n' "$folder" "$(command -v "$py")" >"/tmp/$folder.py"
        chmod +x "/tmp/$folder.py"
    fi
done
[ -x /tmp/trl12.py ] && trl+=(--trl-python /tmp/trl12.py)
[ -x /tmp/trl16.py ] && trl+=(--trl-pg-python /tmp/trl16.py)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import sys, torch, transformers, gymnasium; print(sys.version.split()[0], torch.__version__,
transformers.__version__, gymnasium.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$out/gpu.txt"

# Only the files that hold gpu tests: collecting the whole suite would import extras this machine may lack.
files=${PYTEST_FILES:-tests/test_gpu.py tests/test_logprobs.py tests/test_ppo.py tests/test_sampling.py}
timeout "${PYTEST_TIMEOUT:-150}" "$py" -m pytest -m gpu -p no:cacheprovider -q -rs $files 2>&1 | tee "$out/pytest_gpu.log"

timeout "${PERF_TIMEOUT:-360}" "$py" -m benchmarks.perf --policy-shape 0.5b --rounds 1 --out "$out/perf_cuda.json" "${trl[@]}" \
    ${commit:+--git-commit "$commit"} ${PERF_ARGS:-} 2>&1 | tail -n 80 | tee "$out/perf.log"

if [ -n "${PROFILE_PARTS:-}" ]; then
    only=(); for part in $PROFILE_PARTS; do only+=(--only "$part"); done
    timeout "${PROFILE_TIMEOUT:-240}" "$py" -m benchmarks.perf --policy-shape 0.5b --rounds 1 --profile "${only[@]}" "${trl[@]}" \
        --out "$out/perf_profile_cuda.json" ${commit:+--git-commit "$commit"} 2>&1 | tail -n 20 | tee "$out/profile.log"
fi

#!/usr/bin/env bash
# Every GPU number in one short run (issue 13, item 5), written to bench/RESULTS_gpu.md, plus a
# CUDA smoke run of the whole pipeline and the control/visual commands on a tiny session.
#   bash bench/gpu.sh                 # on a machine with a CUDA GPU and torch installed
#   OUT=/some/dir DEVICE=cuda bash bench/gpu.sh
#   QUICK=1 DEVICE=cpu OUT=/tmp/g bash bench/gpu.sh   # smoke test of this script on a CPU
# Uses .venv/bin/python when present, else python3. Wheels in .whl/ (e.g. grad-cam and its
# needs, for the pytorch-grad-cam comparison) are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

"$PY" bench/bench_gpu.py --device "$DEVICE" --out "$OUT/RESULTS_gpu.md" ${QUICK:+--quick}

# Smoke: the CLI end to end on the device (small Shapes session), so CUDA-only failures show.
work=$(mktemp -d)
salve() { "$PY" -m salve_tui.cli.main "$@" --sessions-dir "$work"; }
{
    set -x
    salve new gpu --n-train 400 --n-test 200 --epochs 2 --sae-epochs 20 --device "$DEVICE"
    salve run gpu
    salve info gpu --json
    salve sweep gpu --class 0 --json > /dev/null
    salve alpha-crit gpu --class 0 --json > /dev/null
    salve saliency gpu --sample 0 --class 0 --out "$work/cam.png"
    salve sae export gpu "$work/sae"
    set +x
} > "$OUT/gpu_smoke.log" 2>&1 && echo "smoke: ok (log in $OUT/gpu_smoke.log)" \
    || { echo "smoke: FAILED, see $OUT/gpu_smoke.log"; tail -30 "$OUT/gpu_smoke.log"; exit 1; }

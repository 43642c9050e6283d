#!/usr/bin/env bash
# One GPU, under 8 minutes: the CUDA-only tests; training img/s at S = 161 (bf16 autocast, channels-last) of
# resnet18, g_resnet18, g_resnet18_c and gc_resnet18 at each width rule; survey-inference img/s of their exported
# modules and torch.compile of gc_resnet18's; the training loader feeding the GPU. Prints one table and writes it
# to OUT/gpu_check.md (every figure also as JSON in OUT).
#
#   bash bench/gpu_check.sh [--out gpu_check_out] [--device cuda] [--quick]
#   bash bench/gpu_check.sh --device cpu --quick      # dry run on a CPU: the same steps at tiny sizes
#
# Width rules (bench/bench_models.py --width): "channels" (ours) always, then each name in $WIDTH_RULES (default:
# fixparams, the study's); a rule bench_models.py does not know is reported as skipped. --quick compiles the
# small lenet instead of gc_resnet18 (inductor takes minutes on a CPU for a G-ResNet).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=gpu_check_out
DEVICE=cuda
QUICK=0
WIDTH_RULES=${WIDTH_RULES:-fixparams}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
MODELS=(resnet18 g_resnet18 g_resnet18_c gc_resnet18)
if [ "$QUICK" = 1 ]; then
  S=33; TRAIN_BATCH=4; ROUNDS=1; INFER_IMAGES=64; INFER_BATCH=32; LOADER_IMAGES=64; LOADER_BATCH=32
  COMPILE_MODEL=lenet
else
  S=161; TRAIN_BATCH=128; ROUNDS=10; INFER_IMAGES=16384; INFER_BATCH=1024; LOADER_IMAGES=4096; LOADER_BATCH=256
  COMPILE_MODEL=gc_resnet18
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/skipped_*.txt "$OUT"/tests.txt "$OUT"/gpu_check.md
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS

echo "== 1/4 CUDA-only tests (pytest -m gpu)"
if [ "$DEVICE" = cpu ]; then  # dry run: list what would run
  $PY -m pytest -m gpu --collect-only -q -p no:cacheprovider tests | tail -n 1 | tee "$OUT/tests.txt"
else
  status=0
  $PY -m pytest -m gpu -q -p no:cacheprovider tests > "$OUT/tests.log" 2>&1 || status=$?
  echo "$(tail -n 1 "$OUT/tests.log") (exit $status, log tests.log)" | tee "$OUT/tests.txt"
fi

echo "== 2/4 training img/s, S=$S, bf16, channels-last"
train() {  # train figures of one width rule into $OUT/train_$1.json; extra arguments go to bench_models.py
  local rule=$1
  shift
  $PY bench/bench_models.py --models "${MODELS[@]}" --device "$DEVICE" --image-size "$S" \
      --batch-size "$TRAIN_BATCH" --bf16 --channels-last --rounds "$ROUNDS" --json "$OUT/train_$rule.json" "$@"
}
train channels --width channels
for rule in $WIDTH_RULES; do  # a rule bench_models.py does not know is skipped, with its error
  if ! train "$rule" --width "$rule" 2> "$OUT/train_$rule.err"; then
    echo "bench_models.py --width $rule failed: $(tail -n 1 "$OUT/train_$rule.err")" | tee "$OUT/skipped_$rule.txt"
  fi
done

echo "== 3/4 survey inference img/s of the exported models, torch.compile of $COMPILE_MODEL's"
$PY bench/bench_infer.py --device "$DEVICE" --image-size "$S" --model "${MODELS[@]}" --n-images "$INFER_IMAGES" \
    --batch-size "$INFER_BATCH" --json "$OUT/infer_models.json"
$PY bench/bench_infer.py --device "$DEVICE" --image-size "$S" --model "$COMPILE_MODEL" --batch-size "$INFER_BATCH" \
    --compile-only --rounds "$ROUNDS" --json "$OUT/infer_compile.json"

echo "== 4/4 the training loader feeding $DEVICE"
$PY bench/gpu_check.py loader --device "$DEVICE" --image-size "$S" --n-images "$LOADER_IMAGES" \
    --batch-size "$LOADER_BATCH" --json "$OUT/loader.json"

device_name=$($PY -c "import torch; print(torch.cuda.get_device_name() if '$DEVICE'.startswith('cuda') else 'CPU')")
{
  torch_version=$($PY -c 'import torch; print(torch.__version__)')
  echo "GPU check on $device_name, $(date -u +%F), torch $torch_version, $((SECONDS - started)) s"
  echo
  $PY bench/gpu_check.py table "$OUT"
} | tee "$OUT/gpu_check.md"

#!/usr/bin/env bash
# GPU check of the trainer (issue 4), one script, a few minutes on one GPU:
#   bash bench/gpu_check.sh            (from anywhere; runs in the repository root)
#
# 1. the card: nvidia-smi name / memory / driver, torch and its CUDA
# 2. a graph at the seed system's scale (python -m bench.graphgen: ~315K playlists, ~177K tracks,
#    ~15.5M train edges; generated if missing, ~30 s)
# 3. our trainer, one process on cuda:0 (train.device=cuda), EPOCHS epochs (default 3), fp32;
#    then the same with train.bf16=true; then fp32 with train.deterministic=false.
#    Seconds per epoch come from model/<version>/history.json; GPU peak memory from
#    torch.cuda.max_memory_allocated in the rank.
# 4. the reference (PyG examples/lightgcn.py method: edge_index, batch 8192, full propagation at
#    every step, Adam 1e-3) on the same GPU for at least REF_STEPS steps (default 150) and at least
#    as many training seconds as our fp32 run, extrapolated to an epoch, and validated at the same
#    training seconds as our fp32 epochs (equal wall time).
# 5. top-500 scoring at the full MPD's width (bench_recommend.py --device cuda --full-mpd).
# 6. the multi-GPU path (issue 23): torchrun with every visible GPU (NGPU), two epochs on the same
#    graph, every rank's parameter digest equal (the group is cpu:gloo,cuda:nccl: CPU sums over
#    gloo, DDP's gradients over NCCL), then `musicmap recommend --nproc NGPU` sharded over them.
#    NCCL takes one rank per GPU: with fewer than 2 GPUs the step says so and is skipped
#    (DEVICE=cpu runs it with 2 gloo ranks: the dry run).
# Target: at most 2 s per epoch for ours at this scale on one H100; top-500 for the full MPD in at
# most 2 minutes.
# Results: $OUT/gpu_check.txt (or bench/out/gpu_check.txt) and the JSON files next to it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then PY=.venv/bin/python
else PY=python3; fi
DEVICE=${DEVICE:-cuda}      # PYTHON=.venv/bin/python DEVICE=cpu SCALE=tiny: a dry run without a GPU
SCALE=${SCALE:-seed}
EPOCHS=${EPOCHS:-3}
REF_STEPS=${REF_STEPS:-150}
ROOT=${ROOT:-bench/out/$SCALE}
RES=${OUT:-bench/out}
mkdir -p "$RES"
export PYTHONUNBUFFERED=1
LOG="$RES/gpu_check.txt"
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }

say "== card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG" || true
"$PY" -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'pyg', g.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" | tee -a "$LOG"

say "== graph ($ROOT)"
if [[ ! -f "$ROOT/graph/_SUCCESS" ]]; then
  "$PY" -m bench.graphgen --root "$ROOT" --scale "$SCALE" 2>&1 | tee -a "$LOG"
fi

run() {  # tag, then bench_train.py arguments
  local tag=$1; shift
  say "== $tag"
  "$PY" -m bench.bench_train --scale "$SCALE" --root "$ROOT" --nproc 1 --device "$DEVICE" --epochs "$EPOCHS" \
      --out "$RES/bench_train_$tag.json" "$@" 2>&1 | tee -a "$LOG" | tail -n 30 || say "FAILED: $tag"
}

# fp32 with the reference on the same GPU (timing over REF_STEPS steps + equal-wall-time NDCG)
run fp32 --ref-device "$DEVICE" --ref-min-steps "$REF_STEPS" --ref-threads 1
run bf16 --skip-reference --set train.bf16=true
run fp32-nondet --skip-reference --set train.deterministic=false

# top-500 scoring at the full MPD's width (issue 5: 1M playlists x 2.26M tracks, a slice measured
# and extrapolated; target at most 2 minutes on one H100)
if [[ "$DEVICE" == cuda ]]; then
  say "== top-500 at full MPD width"
  "$PY" -m bench.bench_recommend --device cuda --full-mpd 2>&1 | tee -a "$LOG" | tail -n 25 || say "FAILED: recommend"
fi

NGPU=${NGPU:-$([[ "$DEVICE" == cuda ]] && (nvidia-smi -L 2>/dev/null | wc -l) || echo 2)}
if (( NGPU >= 2 )); then
  say "== multi-GPU: $NGPU ranks, 2 epochs, then recommend --nproc $NGPU"
  MULTI="--set paths.model=$RES/multi/model --set paths.recs=$RES/multi/recs"
  # shellcheck disable=SC2086
  if "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" train/main.py --root "$ROOT" $MULTI \
        --set train.epochs=2 --set train.device="$DEVICE" --set train.resume=false --set train.progress=false \
        >>"$LOG" 2>&1 \
     && "$PY" -m musicmap.cli recommend --root "$ROOT" $MULTI --playlists test --nproc "$NGPU" \
        --set recommend.device="$DEVICE" 2>&1 | tee -a "$LOG" | tail -n 3; then
    "$PY" - "$RES/multi/model" <<'EOF' | tee -a "$LOG"
import sys
from musicmap.train.export import load_model
m = load_model(sys.argv[1]).manifest
d = m["rank_param_digests"]
print(f"multi-GPU: world {m['world_size']} on {m['device']}, epochs {m['epochs_run']}, digests {d}: "
      + ("the same on every rank" if len(set(d)) == 1 else "RANKS DIFFER"))
EOF
  else
    say "FAILED: multi-GPU (the log above)"; tail -n 20 "$LOG"
  fi
else
  say "== multi-GPU: skipped ($NGPU GPU visible; NCCL takes one rank per GPU)"
fi

say "== summary"
"$PY" - "$RES" <<'EOF' | tee -a "$LOG"
import json, sys, pathlib
res = pathlib.Path(sys.argv[1])
for tag in ("fp32", "bf16", "fp32-nondet"):
    p = res / f"bench_train_{tag}.json"
    if not p.exists():
        print(f"{tag}: missing"); continue
    r = json.loads(p.read_text()); o = r["ours"]
    gpu = next((x.get("gpu") for x in o["ranks"] if x.get("gpu")), "?")
    spe = o["seconds_per_epoch"]
    print(f"{tag}: {gpu}: s/epoch {[round(x, 2) for x in spe]} (after the first: "
          f"{sum(spe[1:]) / max(len(spe) - 1, 1):.2f}; target <= 2 s), val NDCG {[round(x or 0, 4) for x in o['val_ndcg']]}, "
          f"GPU peak {[x.get('cuda_max_allocated_mib') for x in o['ranks']]} MiB, "
          f"{o['edges']:,} edges, batch {o['batch_size']:,}")
    for t, ref in r.get("references", {}).items():
        print(f"  reference [{t}] on {ref.get('gpu')}: {ref['mean_step_s'] * 1000:.1f} ms/step x "
              f"{ref['steps_per_epoch']} steps = {ref['seconds_per_epoch']:.1f} s/epoch "
              f"(extrapolated from {ref['steps']} steps); speed-up per epoch "
              f"{ref['seconds_per_epoch'] / (sum(spe) / len(spe)):.1f}x; "
              f"GPU peak {ref.get('cuda_max_allocated_mib')} MiB")
        for e in ref["evals"]:
            print(f"    reference NDCG {e['ndcg']:.4f} after {e['train_s']:.1f} train s ({e['step']} steps)")
EOF

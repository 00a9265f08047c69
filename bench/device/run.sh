#!/usr/bin/env bash
# Run on a lent NVIDIA machine (the library's device tool), from the repository root, after
# bench/device/prepare.sh here:  bash bench/device/run.sh   with carry [".devrun", ".gl"].
# Unpacks Deno and the Vulkan loader, checks the adapter, runs the test suite on the GPU (a process
# per file, 8 at once, TEST_S seconds each), the benchmark with PyTorch CUDA as the peer (BENCH_S),
# and a profile of the paper-size autoencoder step, untuned then tuned (PROFILE_S). Logs and the
# autotuner's choices go to $LOG, packed after each part into $OUT/logs.tgz (the device tool brings
# back at most 8 files, and only what is under $OUT when a call runs out of time); the summary is
# printed last.
# PARTS picks what runs, in this order (default "tests bench profile"):
# - sweep: bench/gemm_sweep.ts (SWEEP_S), then the fastest tiling in total becomes "gemm-wide" for
#   the parts after it (VA_GEMM_WIDE_TILE);
# - tests (TEST_GLOB picks the files, default all), bench, profile: as above;
# - steps: the face autoencoder's training step at the demo and paper sizes alone (STEPS_S);
# - resnet: a profile of the paper's regressor, ResNet34 at full width on 224x224 faces, batch 32,
#   untuned then tuned (RESNET_S; its PyTorch CUDA peer is a row of the bench part).
set -u
PARTS="${PARTS:-tests bench profile}"
has() { [[ " $PARTS " == *" $1 "* ]]; }
OUT="${OUT:-runs/device}"
LOG="${LOG:-/tmp/device-logs}"
mkdir -p "$OUT" "$LOG"
pack() {
  cp .cache/autotune-*.json "$LOG/" 2>/dev/null
  tar -C "$LOG" -czf "$OUT/logs.tgz.tmp" . && mv "$OUT/logs.tgz.tmp" "$OUT/logs.tgz"
}
T0=$(date +%s)
elapsed() { echo "[+$(($(date +%s) - T0))s] $*"; }
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
xz -dc .devrun/deno.xz >/tmp/deno && chmod +x /tmp/deno
mkdir -p /tmp/denodir && tar -xJf .devrun/denodir.tar.xz -C /tmp/denodir
# This copy of the tree only: the device cannot fetch TF.js, which the lockfile names.
cp .devrun/deno.device.json deno.json && rm -f deno.lock
export DENO_DIR=/tmp/denodir XDG_RUNTIME_DIR=/tmp RUST_BACKTRACE=0 NO_COLOR=1
# Vulkan explicitly: without a working Vulkan driver Deno would silently fall back to OpenGL.
export DENO_WEBGPU_BACKEND=vulkan
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
  /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [[ -f $icd ]]; then
    export VK_DRIVER_FILES=$icd
    break
  fi
done
elapsed "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 60 /tmp/deno eval 'const a = await navigator.gpu.requestAdapter({
  powerPreference: "high-performance" });
if (!a) { console.log("no WebGPU adapter"); Deno.exit(3); }
console.log("adapter:", a.info.vendor, a.info.device, a.info.description);' ||
  { elapsed "no adapter: stopping"; exit 3; }
permissions=(--allow-read --allow-write --allow-env --allow-run --allow-ffi)
if has sweep; then
  elapsed "gemm tiling sweep"
  timeout "${SWEEP_S:-150}" /tmp/deno run --no-check "${permissions[@]}" bench/gemm_sweep.ts \
    --batch 64 --json "$LOG/sweep.json" >"$LOG/sweep.txt" 2>"$LOG/sweep.err"
  echo "sweep exit $?"
  pack
  best="$(sed -n 's/^fastest in total: \([^ ]*\).*/\1/p' "$LOG/sweep.txt")"
  if [[ -n $best ]]; then
    export VA_GEMM_WIDE_TILE="$best"
    elapsed "gemm-wide is $best from here on"
  fi
  cat "$LOG/sweep.txt"
fi
if has tests; then
  elapsed "tests"
  # One process per test file, 8 at a time, each with its own time limit, so that a slow or broken
  # file cannot hide the others' results, and every failure's message survives (deno test prints
  # them only at the end of its run).
  mkdir -p /tmp/test-logs
  find tests -name "${TEST_GLOB:-*_test.ts}" | sort | VA_AUTOTUNE=0 xargs -P 8 -I{} sh -c \
    'log=/tmp/test-logs/$(echo {} | tr / _).txt; timeout '"${TEST_S:-150}"' /tmp/deno test \
    --no-check --allow-read --allow-write --allow-env --allow-run --allow-ffi {} >$log 2>&1;
    echo "exit $?" >>$log'
  for log in /tmp/test-logs/*.txt; do
    echo "== $log: $(grep -E '(ok|FAILED) \|' "$log" | tail -1) $(tail -1 "$log")"
  done >"$LOG/tests.txt"
  cat /tmp/test-logs/*.txt >>"$LOG/tests.txt"
  pack
fi
if has bench; then
  elapsed "bench"
  VA_TORCH_DEVICE=cuda VA_TORCH_PYTHON=python3 VA_TFJS=0 timeout "${BENCH_S:-260}" /tmp/deno run \
    --no-check "${permissions[@]}" bench/kernels.ts --batch 64 --json "$LOG/bench.json" \
    >"$LOG/bench.txt" 2>"$LOG/bench.err"
  echo "bench exit $?"
  pack
fi
if has profile; then
  elapsed "profile"
  timeout "${PROFILE_S:-70}" /tmp/deno run --no-check -A bench/profile_step.ts --only ae \
    --ae-size paper --paper-loss --batch 64 --steps 3 --tune --top 30 >"$LOG/profile.txt" 2>&1
  echo "profile exit $?"
  pack
fi
if has steps; then
  elapsed "steps"
  timeout "${STEPS_S:-90}" /tmp/deno eval --no-check 'import { faceAutoencoderStepBench } from
"./bench/step.ts";
for (const size of ["demo", "paper"]) {
  const r = await faceAutoencoderStepBench(size, false);
  console.log(`face autoencoder ${size} step (batch ${r.batch}): ${r.msPerStep.toFixed(2)} ms`);
}' >"$LOG/steps.txt" 2>&1
  echo "steps exit $?"
  pack
fi
if has resnet; then
  elapsed "resnet"
  timeout "${RESNET_S:-150}" /tmp/deno run --no-check -A bench/profile_step.ts --only resnet \
    --resnet-width 1 --resnet-size 224 --batch 32 --steps 3 --tune --top 25 >"$LOG/resnet.txt" 2>&1
  echo "resnet exit $?"
  pack
fi
pack
if has tests; then
  grep "^== " "$LOG/tests.txt"
  grep -A12 "^ERRORS" "$LOG/tests.txt" | head -60
fi
if has bench; then
  grep -E "conv (fwd|bwd)|upconv|training step|vs PyTorch|resnet34" "$LOG/bench.txt" | cut -c1-150
fi
if has profile; then tail -40 "$LOG/profile.txt" | cut -c1-150; fi
if has steps; then cat "$LOG/steps.txt"; fi
if has resnet; then tail -30 "$LOG/resnet.txt" | cut -c1-150; fi
elapsed "done"

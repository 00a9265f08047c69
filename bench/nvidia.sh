#!/usr/bin/env bash
# Run the kernel benchmark on an NVIDIA machine through Vulkan (the same code as on llvmpipe; the
# autotuner times the variants there and caches its choices in .cache/autotune-<adapter>.json).
#
# Needs: Deno 2.9.6 (`npx --yes deno@2.9.6` works too), libvulkan1, NVIDIA's Vulkan ICD json
# (usually /usr/share/vulkan/icd.d/nvidia_icd.json; point VK_DRIVER_FILES at it if the loader does
# not find it), libegl1 and libxext6. In a container the driver capabilities must include
# graphics: NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility.
#
# PyTorch CUDA as the peer: VA_TORCH_DEVICE=cuda (and VA_TORCH_PYTHON=python3 when /usr/bin/python3
# has no torch). On a machine that reaches no registry (the library's device tool), use
# bench/device/prepare.sh here and bench/device/run.sh there instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${VK_DRIVER_FILES:-}" && -f /usr/share/vulkan/icd.d/nvidia_icd.json ]]; then
  export VK_DRIVER_FILES=/usr/share/vulkan/icd.d/nvidia_icd.json
fi
if command -v vulkaninfo >/dev/null; then
  vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || true
else
  echo "vulkaninfo not found (apt-get install -y vulkan-tools to check the driver)" >&2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

# Vulkan explicitly: without a working Vulkan driver Deno would silently fall back to OpenGL.
export DENO_WEBGPU_BACKEND=vulkan
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
DENO="${DENO:-deno}"
command -v "$DENO" >/dev/null || DENO="npx --yes deno@2.9.6"
mkdir -p runs
# The adapter line printed first must name the NVIDIA GPU, not llvmpipe.
$DENO task bench --json "runs/bench-$(hostname)-$(date +%Y%m%d-%H%M).json" "$@"

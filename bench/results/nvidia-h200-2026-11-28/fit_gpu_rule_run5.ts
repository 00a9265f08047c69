/**
 * Checks the untuned GPU conv defaults of kernels/ops.ts (gemmPreferredOnGpu for the ubo family,
 * gemmPreferredOnGpuOutsideUbo for the other layers, gemmWidePreferredOnGpu) against the
 * autotuner's timings of run 5 (round 18: the paper-size face autoencoder at batch 64 and ResNet34
 * at full width on 224x224 faces at batch 32, tuned by bench/profile_step.ts --tune): the total
 * time of the rules' choices against the per-shape best and against the rules before round 18 (no
 * gemm outside the ubo family), and each entry where the rules' choice is more than 15% (and 0.03
 * ms) slower than the best. The choice is replayed from the rule functions themselves; the ubo
 * family is decided by geometry (3x3, stride 1, pad 1, width a multiple of 4: the H200's limits
 * admit ubo everywhere). In run 5 "gemm-wide" was the sweep's fastest tiling, 64x128x16/8x8s
 * (VA_GEMM_WIDE_TILE), not the default 128x128x8/8x8s: the gemm-or-not decision is what this
 * run measures; the wide-or-not one was fitted in round 14 (fit_gpu_rule_run4.py).
 *
 * Usage: deno run --allow-read bench/results/nvidia-h200-2026-11-28/fit_gpu_rule_run5.ts
 */
import {
  type ConvPass,
  type ConvVariant,
  gemmPreferredOnGpu,
  gemmPreferredOnGpuOutsideUbo,
  gemmWidePreferredOnGpu,
} from "../../../kernels/ops.ts";
import type { Conv2dGeometry } from "../../../kernels/conv_geometry.ts";

const file = new URL("./autotune-run5.json", import.meta.url);
const { choices } = JSON.parse(await Deno.readTextFile(file)) as {
  choices: Record<string, { variant: ConvVariant; ms: Partial<Record<ConvVariant, number>> }>;
};

function parse(key: string): { pass: ConvPass; g: Conv2dGeometry } {
  const m = key.match(/^(\w+):(\d+)x(\d+)x(\d+)x(\d+)->(\d+)x(\d+)x(\d+):k(\d+)x(\d+):s(\d+):p(\d+)$/);
  if (!m) throw new Error(`unexpected autotune key ${key}`);
  const [batch, inC, inH, inW, outC, outH, outW, kH, kW, stride, pad] = m.slice(2).map(Number);
  return {
    pass: m[1] as ConvPass,
    g: { batch, inC, inH, inW, outC, outH, outW, kH, kW, stride, pad },
  };
}

/** The non-gemm default of chooseConvVariant outside gemm: ubo, else the first of the CPU rule's. */
function nonGemm(ms: Partial<Record<ConvVariant, number>>, ubo: boolean): ConvVariant {
  if (ubo) return "ubo";
  const others = (["ubo-cols", "ubo-any", "direct"] as const).filter((v) => ms[v] !== undefined);
  // The CPU rule picks ubo-cols where it applies, then ubo-any, then direct.
  return others[0];
}

let rules = 0, before = 0, best = 0;
for (const [key, entry] of Object.entries(choices)) {
  if (key.startsWith("matmul")) continue;
  const { pass, g } = parse(key);
  const ubo = g.kH === 3 && g.kW === 3 && g.stride === 1 && g.pad === 1 && g.inW % 4 === 0;
  const gemm = ubo ? gemmPreferredOnGpu(pass, g) : gemmPreferredOnGpuOutsideUbo(pass, g);
  const wide = gemmWidePreferredOnGpu(pass, g) ? "gemm-wide" : "gemm";
  const choice: ConvVariant = gemm ? wide : nonGemm(entry.ms, ubo);
  const previous: ConvVariant = ubo && gemmPreferredOnGpu(pass, g) ? wide : nonGemm(entry.ms, ubo);
  const times = Object.values(entry.ms) as number[];
  const fastest = Math.min(...times);
  rules += entry.ms[choice] ?? NaN;
  before += entry.ms[previous] ?? NaN;
  best += fastest;
  const chosen = entry.ms[choice] ?? NaN;
  if (chosen > 1.15 * fastest && chosen - fastest > 0.03) {
    console.log(`miss ${key}: ${choice} ${chosen.toFixed(2)} ms, best ${entry.variant} ${fastest.toFixed(2)}`);
  }
}
console.log(
  `total over ${Object.keys(choices).length} entries: rules ${rules.toFixed(1)} ms, ` +
    `per-shape best ${best.toFixed(1)} ms, rules before round 18 ${before.toFixed(1)} ms`,
);

/**
 * Kernel benchmark (`deno task bench`): conv2d forward / backward-input / backward-weight on the
 * layer shapes of a 64x64 conv autoencoder, batch norm, max-pool, nearest x2 upsampling, Adam and
 * a copy kernel (the machine's memory-bandwidth reference), then the autoencoder's training step
 * and the paper's face autoencoder's at the demo's and the paper's sizes, with the peers (TF.js
 * webgpu on the same adapter, PyTorch CPU when installed) in the same run. After the peers, the
 * reference conv forward and the demo-size step are timed once more, and their ratios to the
 * peers reported again (the machine drifts within a run); then (not with --quick) the demo-size
 * step, ours and PyTorch's alone, alternate for 5 rounds, for a ratio measured under the same load.
 *
 * Flags: --quick (batch 8, fewer layers; under a minute), --batch N, --json PATH, --no-peers,
 * --memory-steps N (training steps of the GPU-memory check; default 1000, 20 with --quick),
 * --no-step, --only REGEX (rows whose name matches), --variant NAME (force a conv variant),
 * --baseline (also time the previous implementation of each kernel that has a newer variant, in
 * the row right after it: direct conv backward-to-weight, per-channel batch norm, generic
 * pooling / upsampling), --resnet (also the conv shapes of ResNet34 on 32x32 inputs).
 */

import { parseArgs } from "node:util";
import { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { FMA_PROBE_CHAINS } from "../kernels/wgsl/probe.ts";
import { autotuneConv, autotuneEnabled, tunedConvTimings } from "../kernels/autotune.ts";
import { fenceFloorMs, fmt, markdownTable, median, timeRecorded } from "./harness.ts";
import { activationShapes, convFlops, convLayers, resnetLayers, upsampleShapes } from "./shapes.ts";
import { type PeerResult, runPeers, torchDemoStepMs } from "./peers.ts";
import {
  faceAutoencoderStepBench,
  type FaceStepResult,
  faceStepSession,
  memoryOverSteps,
  type MemoryResult,
  regressorStepBench,
  type RegressorStepResult,
  type StepResult,
  trainStepBench,
} from "./step.ts";

const F32 = 4;

/** One row of the result table. */
export interface BenchRow {
  kernel: string;
  shape: string;
  ms: number;
  gflops: number | null;
  gbps: number | null;
  variant: string;
  reps: number;
}

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    batch: { type: "string" },
    json: { type: "string" },
    "no-peers": { type: "boolean", default: false },
    "no-step": { type: "boolean", default: false },
    only: { type: "string" },
    variant: { type: "string" },
    baseline: { type: "boolean", default: false },
    resnet: { type: "boolean", default: false },
    "memory-steps": { type: "string" },
  },
});

const quick = args.quick ?? false;
const batch = Number(args.batch ?? (quick ? 8 : 64));
const only = args.only ? new RegExp(args.only) : null;
const targetMs = quick ? 120 : 400;
const rounds = quick ? 2 : 3;

const b = await Backend.create();
const floor = await fenceFloorMs(b);
const rows: BenchRow[] = [];

function randomBuffer(n: number, seed = 1, low = -1, high = 1): GPUBuffer {
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = low + (high - low) * (s / 4294967296);
  }
  const buffer = b.pool.acquire(n * F32);
  b.write(buffer, data);
  return buffer;
}

async function time(
  kernel: string,
  shape: string,
  record: () => void,
  work: { flops?: number; bytes?: number },
  variant: string,
): Promise<void> {
  if (only && !only.test(`${kernel} ${shape}`)) return;
  const t = await timeRecorded(b, record, floor, { targetMs, rounds });
  const row: BenchRow = {
    kernel,
    shape,
    ms: t.ms,
    gflops: work.flops ? work.flops / t.ms / 1e6 : null,
    gbps: work.bytes ? work.bytes / t.ms / 1e6 : null,
    variant,
    reps: t.reps,
  };
  rows.push(row);
  console.error(
    `  ${kernel.padEnd(14)} ${shape.padEnd(22)} ${fmt(row.ms).padStart(8)} ms  ` +
      `${row.gflops !== null ? fmt(row.gflops) + " GFLOP/s" : fmt(row.gbps) + " GB/s"}  ${variant}`,
  );
}

const convOptions = args.variant ? { variant: args.variant as ops.ConvVariant } : {};
const baseline = args.baseline ?? false;

console.error(`adapter: ${b.adapterName}; fence floor ${fmt(floor)} ms; batch ${batch}`);

// ---- memory bandwidth reference -----------------------------------------------------------------
/**
 * The copy kernel (the memory-bandwidth reference; `again` also after the memory-bound rows, whose
 * ratios use the mean of the two: the machine drifts between the start and those rows).
 */
async function timeCopyKernel(again: boolean): Promise<void> {
  const n = 16 * 1024 * 1024;
  const src = randomBuffer(n);
  const dst = b.pool.acquire(n * F32);
  await time(
    "copy",
    `${n / 1024 / 1024}M f32${again ? " (again)" : ""}`,
    () => ops.affine(b, src, dst, n, 1, 0),
    { bytes: 2 * n * F32 },
    "vec4 y=x*1+0",
  );
  if (!again) {
    await time(
      "copyBuffer",
      `${n / 1024 / 1024}M f32`,
      () => b.copy(src, 0, dst, 0, n * F32),
      { bytes: 2 * n * F32 },
      "copyBufferToBuffer",
    );
  }
  b.pool.release(src);
  b.pool.release(dst);
}
await timeCopyKernel(false);

// ---- arithmetic reference: register-only multiply-adds (the ceiling no kernel can pass) -------
{
  // 32K threads fill a CPU rasterizer's lanes; a large GPU holds ~270K resident (an H200 measured
  // 24-31 TFLOP/s with 32K, under its fp32 rate), so real GPUs get 1M.
  const threads = (b.isCpuRasterizer ? 32 : 1024) * 1024;
  const iterations = 256;
  const out = b.pool.acquire(threads * F32);
  await time(
    "fma peak",
    `${threads / 1024}K threads`,
    () => ops.fmaProbe(b, out, threads, iterations, 0.999, 0.001),
    { flops: threads * iterations * FMA_PROBE_CHAINS * 8 },
    `${FMA_PROBE_CHAINS} vec4 chains`,
  );
  b.pool.release(out);
}

// ---- convolutions -------------------------------------------------------------------------------
const layers = convLayers(batch).filter((l) =>
  !quick || ["ref 32->32 @64", "enc 64->128 @16", "dec 32->3 @64"].includes(l.name)
);
if (args.resnet) layers.push(...resnetLayers(batch));
if (!args.variant && !(only && !only.test("conv"))) {
  const t0 = performance.now();
  const tuned = await autotuneConv(b, layers.map((l) => l.geometry));
  console.error(
    autotuneEnabled(b)
      ? `autotune: ${tuned} (pass, shape) entries tuned in ${fmt(performance.now() - t0)} ms ` +
        `(the rest cached in .cache/)`
      : "autotune: disabled (VA_AUTOTUNE=0), fixed defaults",
  );
}
/** The variant used, with the autotuner's timings when it chose. */
function variantNote(pass: ops.ConvPass, g: ops.Conv2dGeometry): string {
  const v = ops.conv2dVariant(b, pass, g, convOptions);
  const ms = args.variant ? null : tunedConvTimings(b, pass, g);
  if (!ms) return v;
  return `${v} (tuned: ${Object.entries(ms).map(([k, t]) => `${k} ${fmt(t)}`).join(", ")} ms)`;
}
for (const { name, geometry: g } of layers) {
  const x = randomBuffer(g.batch * g.inC * g.inH * g.inW, 2);
  const w = randomBuffer(g.outC * g.inC * g.kH * g.kW, 3, -0.2, 0.2);
  const bias = randomBuffer(g.outC, 4);
  const y = b.pool.acquire(g.batch * g.outC * g.outH * g.outW * F32);
  const dx = b.pool.acquire(g.batch * g.inC * g.inH * g.inW * F32);
  const dw = b.pool.acquire(g.outC * g.inC * g.kH * g.kW * F32);
  const flops = convFlops(g);
  const passes: [string, ops.ConvPass, (options: ops.ConvOptions) => void][] = [
    ["conv fwd", "forward", (o) => ops.conv2dForward(b, x, w, bias, y, g, o)],
    ["conv bwd-in", "backwardInput", (o) => ops.conv2dBackwardInput(b, y, w, dx, g, o)],
    ["conv bwd-w", "backwardWeight", (o) => ops.conv2dBackwardWeight(b, y, x, dw, g, o)],
  ];
  for (const [kernel, pass, record] of passes) {
    await time(kernel, name, () => record(convOptions), { flops }, variantNote(pass, g));
    // The implementation before this round: ubo for forward / backward-to-input where it
    // applies, otherwise (and for every backward-to-weight) direct.
    const old = pass !== "backwardWeight" &&
        ops.conv2dVariant(b, pass, g, { variant: "ubo" }) === "ubo"
      ? "ubo"
      : "direct";
    if (baseline && ops.conv2dVariant(b, pass, g, convOptions) !== old) {
      await time(kernel, name, () => record({ variant: old }), { flops }, `${old} (baseline)`);
    }
  }
  for (const buffer of [x, w, bias, y, dx, dw]) b.pool.release(buffer);
  b.flush();
}

// ---- decoder blocks: nearest x2 upsampling + 3x3 conv as one op (sub-pixel kernels) -------------
// FLOPs counted as the conv on the upsampled map (what PyTorch runs); the sub-pixel kernels do 4
// of those 9 multiply-adds per output (kernels/conv_subpixel.ts).
for (const { name, geometry: g } of layers.filter((l) => l.name.startsWith("dec "))) {
  const sourceSize = g.batch * g.inC * (g.inH / 2) * (g.inW / 2);
  const x = randomBuffer(sourceSize, 2);
  const w = randomBuffer(g.outC * g.inC * 9, 3, -0.2, 0.2);
  const bias = randomBuffer(g.outC, 4);
  const y = b.pool.acquire(g.batch * g.outC * g.outH * g.outW * F32);
  const dx = b.pool.acquire(sourceSize * F32);
  const dw = b.pool.acquire(g.outC * g.inC * 9 * F32);
  const flops = convFlops(g);
  const passes: [string, ops.ConvPass, () => void][] = [
    ["upconv fwd", "forward", () => ops.upsampleConv2dForward(b, x, w, bias, y, g, convOptions)],
    [
      "upconv bwd-in",
      "backwardInput",
      () => ops.upsampleConv2dBackwardInput(b, y, w, dx, g, convOptions),
    ],
    [
      "upconv bwd-w",
      "backwardWeight",
      () => ops.upsampleConv2dBackwardWeight(b, y, x, dw, g, convOptions),
    ],
  ];
  for (const [kernel, pass, record] of passes) {
    const fused = ops.upsampleConvFused(b, pass, g, convOptions);
    // The forward in sub-pixel form; both backward passes in box form (since round 11).
    const variant = fused
      ? (pass === "forward" ? "sub-pixel" : "box")
      : `upsample + ${ops.conv2dVariant(b, pass, g, convOptions)}`;
    await time(kernel, name.replace("dec ", "up "), record, { flops }, variant);
  }
  for (const buffer of [x, w, bias, y, dx, dw]) b.pool.release(buffer);
  b.flush();
}

// ---- batch norm, max-pool ------------------------------------------------------------------------
const spatialVariants: (ops.SpatialVariant | undefined)[] = baseline
  ? [undefined, "generic"]
  : [undefined];
for (const [n, c, h, w] of activationShapes(batch)) {
  const count = n * c * h * w;
  const shape = `${n}x${c}x${h}x${w}`;
  const x = randomBuffer(count, 5);
  const y = b.pool.acquire(count * F32);
  const dx = b.pool.acquire(count * F32);
  const mean = b.pool.acquire(c * F32);
  const invStd = b.pool.acquire(c * F32);
  const sums = b.pool.acquire(2 * c * F32);
  const weight = randomBuffer(c, 6);
  const biasBuf = randomBuffer(c, 7);
  const bnVariants: (ops.BatchNormVariant | undefined)[] = baseline
    ? [undefined, "per-channel"]
    : [undefined];
  for (const variant of bnVariants) {
    const options = { variant };
    const label = ops.batchNormVariant(b, count, c, h * w, options) +
      (variant ? " (baseline)" : "");
    // The training-mode passes, as the training steps run them (since round 12; the statistics
    // and normalize passes apart until then).
    await time(
      "bn fwd",
      shape,
      () =>
        ops.batchNormForwardTraining(
          b,
          x,
          mean,
          invStd,
          null,
          { weight, bias: biasBuf },
          y,
          n,
          c,
          h * w,
          1e-5,
          0.1,
          options,
        ),
      { bytes: 3 * count * F32 },
      label,
    );
    await time(
      "bn bwd",
      shape,
      () =>
        ops.batchNormBackwardTraining(
          b,
          y,
          x,
          mean,
          invStd,
          weight,
          sums,
          dx,
          n,
          c,
          h * w,
          1e-5,
          options,
        ),
      { bytes: 5 * count * F32 },
      label,
    );
  }
  const pool = {
    planes: n * c,
    inH: h,
    inW: w,
    outH: h / 2,
    outW: w / 2,
    kH: 2,
    kW: 2,
    strideH: 2,
    strideW: 2,
    padH: 0,
    padW: 0,
  };
  const argmax = b.pool.acquire((count / 4) * F32);
  if (ops.batchNormReluMaxPoolApplicable(b, c, h, w)) {
    // The encoder block's tail as one op (since round 12): statistics, then the pooled map only;
    // the backward reads the pooled gradient and x.
    const affine = { weight, bias: biasBuf };
    await time(
      "bn+relu+pool fwd",
      shape,
      () =>
        ops.batchNormReluMaxPoolForwardTraining(
          b,
          x,
          mean,
          invStd,
          null,
          affine,
          y,
          n,
          c,
          h,
          w,
          1e-5,
          0.1,
        ),
      { bytes: 2.25 * count * F32 },
      ops.fusedPassForm(b),
    );
    await time(
      "bn+relu+pool bwd",
      shape,
      () =>
        ops.batchNormReluMaxPoolBackwardTraining(
          b,
          y,
          x,
          mean,
          invStd,
          affine,
          sums,
          dx,
          n,
          c,
          h,
          w,
          1e-5,
        ),
      { bytes: 3.5 * count * F32 },
      ops.fusedPassForm(b),
    );
  }
  for (const variant of spatialVariants) {
    const options = { variant };
    const label = ops.maxPool2dVariant(pool, options) + (variant ? " (baseline)" : "");
    await time(
      "maxpool fwd",
      shape,
      () => ops.maxPool2dForward(b, x, y, argmax, pool, options),
      { bytes: count * F32 + 2 * (count / 4) * F32 },
      label,
    );
    await time(
      "maxpool bwd",
      shape,
      () => ops.maxPool2dBackward(b, y, argmax, dx, pool, options),
      { bytes: count * F32 + 2 * (count / 4) * F32 },
      label,
    );
  }
  for (const buffer of [x, y, dx, mean, invStd, sums, weight, biasBuf, argmax]) {
    b.pool.release(buffer);
  }
  b.flush();
}

// ---- nearest x2 upsampling ----------------------------------------------------------------------
for (const [n, c, h, w] of upsampleShapes(batch)) {
  const count = n * c * h * w;
  const x = randomBuffer(count, 8);
  const y = b.pool.acquire(4 * count * F32);
  const dx = b.pool.acquire(count * F32);
  const g = { planes: n * c, inH: h, inW: w, outH: 2 * h, outW: 2 * w, scaleH: 0.5, scaleW: 0.5 };
  const shape = `${n}x${c}x${h}x${w}`;
  for (const variant of spatialVariants) {
    const options = { variant };
    const label = ops.resizeVariant("nearest", g, options) + (variant ? " (baseline)" : "");
    await time(
      "upsample fwd",
      shape,
      () => ops.resizeForward(b, "nearest", x, y, g, options),
      { bytes: 5 * count * F32 },
      label,
    );
    await time(
      "upsample bwd",
      shape,
      () => ops.resizeBackward(b, "nearest", y, dx, g, options),
      { bytes: 5 * count * F32 },
      label,
    );
  }
  for (const buffer of [x, y, dx]) b.pool.release(buffer);
  b.flush();
}

// ---- Adam -----------------------------------------------------------------------------------------
{
  // The autoencoder's conv weights (about 776k parameters), as one tensor and as 8 layers.
  const sizes = convLayers(1).slice(1).map((l) => l.geometry.outC * l.geometry.inC * 9);
  const total = sizes.reduce((a, s) => a + s, 0);
  const p = randomBuffer(total, 9);
  const gr = randomBuffer(total, 10);
  const m = randomBuffer(total, 11, 0, 0.1);
  const v = randomBuffer(total, 12, 0, 0.1);
  const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 10 };
  await time(
    "adam",
    `${total} params`,
    () => ops.adam(b, p, gr, m, v, total, h),
    { bytes: 7 * total * F32 },
    "fused vec4",
  );
  for (const buffer of [p, gr, m, v]) b.pool.release(buffer);
  b.flush();
}
await timeCopyKernel(true);

// ---- training step and peers ----------------------------------------------------------------------
let step: StepResult | null = null;
const faceSteps: FaceStepResult[] = [];
let regressor: RegressorStepResult | null = null;
if (!args["no-step"] && !only) {
  step = await trainStepBench(batch, quick);
  // The paper's face autoencoder at the demo preset's size and (not with --quick) the paper's.
  for (const size of quick ? ["demo"] as const : ["demo", "paper"] as const) {
    console.error(`training step: face autoencoder, ${size} size ...`);
    faceSteps.push(await faceAutoencoderStepBench(size, quick));
  }
  console.error("training step: the V/A regressor (ResNet34 w1/8 @64) ...");
  regressor = await regressorStepBench(quick);
}
let memory: MemoryResult | null = null;
const memorySteps = Number(args["memory-steps"] ?? (quick ? 20 : 1000));
if (!args["no-step"] && !only && memorySteps > 0) {
  console.error(`GPU memory over ${memorySteps} training steps ...`);
  memory = await memoryOverSteps(memorySteps);
}
b.destroy();
let peers: PeerResult[] = [];
if (!args["no-peers"] && !only) peers = await runPeers(batch, quick, step !== null);
const afterPeers = peers.some((p) => p.ms !== null) ? await retimeAfterPeers() : null;
// Not with --quick: its demo step runs at batch 8, PyTorch's alone at 32.
const interleaved = !quick &&
    peers.some((p) => p.what.startsWith("train step face AE demo") && p.ms)
  ? await interleavedDemoSteps(5)
  : null;

/**
 * The demo-size face step, ours and PyTorch's, timed in alternation for `rounds` rounds, each side
 * the fastest of 3 blocks of 10 steps: this machine's speed drifts by a third within minutes, and
 * PyTorch's step alone ranged 35-103 ms across runs (its 2 OpenMP threads wait on each other at
 * every op, so a stolen core stalls both), so the ratio of the two measured side by side, round
 * after round (the median of the rounds' ratios), says more than one timing of each.
 */
async function interleavedDemoSteps(
  rounds: number,
): Promise<{ oursMs: number[]; torchMs: number[]; ratio: number; bestRatio: number } | null> {
  console.error(`our demo-size step and PyTorch's, alternating, ${rounds} rounds ...`);
  const oursMs: number[] = [], torchMs: number[] = [];
  const session = await faceStepSession("demo", quick);
  for (let round = 0; round < rounds; round++) {
    const ours = await session.time(3);
    const torch = await torchDemoStepMs();
    if (torch === null) break;
    oursMs.push(ours);
    torchMs.push(torch);
  }
  session.dispose();
  if (oursMs.length < rounds) return null;
  const ratio = median(torchMs.map((t, i) => t / oursMs[i]));
  return { oursMs, torchMs, ratio, bestRatio: Math.min(...torchMs) / Math.min(...oursMs) };
}

/**
 * The reference conv forward and the demo-size face step timed again right after the peers: the
 * machine's speed drifts by up to a third within minutes, and the rows above were timed minutes
 * before the peers ran, so ratios against these neighbours say more (both are reported).
 */
async function retimeAfterPeers(): Promise<
  { convForwardMs: number; demoStepMs: number | null } | null
> {
  const ref = layers.find((l) => l.name === "ref 32->32 @64");
  if (!ref || args.variant) return null;
  console.error("our reference conv and demo-size step again, after the peers ...");
  const b2 = await Backend.create();
  const g = ref.geometry;
  const [x, w, bias, y] = [
    g.batch * g.inC * g.inH * g.inW,
    g.outC * g.inC * g.kH * g.kW,
    g.outC,
    g.batch * g.outC * g.outH * g.outW,
  ].map((n) => b2.pool.acquire(n * F32));
  const floor2 = await fenceFloorMs(b2);
  const t = await timeRecorded(
    b2,
    () => ops.conv2dForward(b2, x, w, bias, y, g),
    floor2,
    { targetMs, rounds },
  );
  b2.destroy();
  const demoStepMs = faceSteps.some((f) => f.size === "demo")
    ? (await faceAutoencoderStepBench("demo", quick)).msPerStep
    : null;
  return { convForwardMs: t.ms, demoStepMs };
}

// ---- report ---------------------------------------------------------------------------------------
const header = ["kernel", "shape", "ms", "GFLOP/s", "GB/s", "variant"];
const table = markdownTable(
  header,
  rows.map((r) => [r.kernel, r.shape, fmt(r.ms), fmt(r.gflops), fmt(r.gbps), r.variant]),
);
console.log(`\nadapter: ${b.adapterName}; batch ${batch}; fence floor ${fmt(floor)} ms\n`);
console.log(table);
if (step) {
  console.log(
    `\ntraining step (autoencoder 64x64, batch ${step.batch}): ${fmt(step.msPerStep)} ms/step, ` +
      `${fmt(step.imagesPerSecond)} images/s; GPU bytes in use ${step.bytesInUseFirst} -> ` +
      `${step.bytesInUseLast} over ${step.steps} steps`,
  );
}
for (const f of faceSteps) {
  console.log(
    `training step (face autoencoder ${f.size} ${f.widths.join("-")}, paper's loss, batch ` +
      `${f.batch}): ${fmt(f.msPerStep)} ms/step, ${fmt(f.imagesPerSecond)} images/s; GPU bytes ` +
      `in use ${f.bytesInUseFirst} -> ${f.bytesInUseLast} over ${f.steps} steps`,
  );
}
if (regressor) {
  console.log(
    `training step (V/A regressor, ResNet34 w1/8 @${regressor.side}, batch ${regressor.batch}): ` +
      `${fmt(regressor.msPerStep)} ms/step, ${
        fmt(regressor.imagesPerSecond)
      } images/s; GPU bytes ` +
      `in use ${regressor.bytesInUseFirst} -> ${regressor.bytesInUseLast} over ${regressor.steps} ` +
      `steps`,
  );
}
if (memory) {
  console.log(
    `GPU memory over ${memory.steps} steps of the demo-size face autoencoder (batch ${memory.batch}` +
      `, loss read every 50): ` +
      memory.samples.map(([step, inUse, allocated]) => `step ${step} ${inUse} (${allocated})`)
        .join(", ") +
      " bytes in use (allocated)",
  );
}
if (peers.length) {
  console.log(
    "\n" + markdownTable(
      ["peer", "what", "ms", "GFLOP/s", "images/s", "note"],
      peers.map((p) => [
        p.peer,
        p.what,
        fmt(p.ms),
        fmt(p.gflops),
        fmt(p.imagesPerSecond),
        p.note ?? "",
      ]),
    ),
  );
}
const ratios = summarize(rows, step, faceSteps, regressor, peers, memory);
if (afterPeers) {
  for (const p of peers) {
    if (p.what === "conv fwd 32->32 @64" && p.ms) {
      ratios.push(
        `vs ${p.peer} conv forward, ours timed again after the peers (${
          fmt(afterPeers.convForwardMs)
        } ms): ${fmt(p.ms / afterPeers.convForwardMs)}x`,
      );
    }
    const demo = faceSteps.find((f) => f.size === "demo");
    if (
      demo && afterPeers.demoStepMs !== null &&
      p.what === `train step face AE demo (batch ${demo.batch})` && p.ms
    ) {
      ratios.push(
        `vs ${p.peer} face autoencoder step, demo size, ours timed again after the peers (${
          fmt(afterPeers.demoStepMs)
        } ms): ${fmt(p.ms / afterPeers.demoStepMs)}x`,
      );
    }
  }
}
if (interleaved) {
  const list = (ms: number[]) => ms.map((m) => fmt(m)).join(", ");
  ratios.push(
    `vs PyTorch face autoencoder step, demo size, alternating ${interleaved.oursMs.length} ` +
      `rounds (ours ${list(interleaved.oursMs)} ms; PyTorch ${list(interleaved.torchMs)} ms): ` +
      `best round against best round ${fmt(interleaved.bestRatio)}x, median of the rounds' ` +
      `ratios ${fmt(interleaved.ratio)}x (target >= 0.5)`,
  );
}
if (ratios.length) console.log("\n" + ratios.join("\n"));
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      {
        adapter: b.adapterName,
        batch,
        quick,
        fenceFloorMs: floor,
        cpu: await cpuName(),
        cores: navigator.hardwareConcurrency,
        rows,
        step,
        faceSteps,
        regressor,
        memory,
        peers,
        afterPeers,
        interleaved,
        summary: ratios,
      },
      null,
      2,
    ),
  );
}

/** The issue-6 targets, as ratios computed from this run. */
function summarize(
  rows: BenchRow[],
  step: StepResult | null,
  faceSteps: FaceStepResult[],
  regressor: RegressorStepResult | null,
  peers: PeerResult[],
  memory: MemoryResult | null,
): string[] {
  const out: string[] = [];
  const find = (kernel: string, shape: string) =>
    rows.find((r) => r.kernel === kernel && r.shape === shape);
  const fwd = find("conv fwd", "ref 32->32 @64");
  const bin = find("conv bwd-in", "ref 32->32 @64");
  const bw = find("conv bwd-w", "ref 32->32 @64");
  if (fwd) out.push(`conv 32->32 @64 forward: ${fmt(fwd.gflops)} GFLOP/s (target >= 25)`);
  if (bin && bw && fwd) {
    const backward = (2 * fwd.gflops! * fwd.ms) / (bin.ms + bw.ms);
    out.push(`conv 32->32 @64 backward (input + weight): ${fmt(backward)} GFLOP/s (target >= 25)`);
  }
  const peak = rows.find((r) => r.kernel === "fma peak");
  if (peak?.gflops && fwd?.gflops) {
    out.push(
      `adapter's multiply-add ceiling (fma peak): ${fmt(peak.gflops)} GFLOP/s; conv forward at ` +
        `${fmt((100 * fwd.gflops) / peak.gflops)}% of it`,
    );
  }
  const copies = rows.filter((r) => r.kernel === "copy" && r.gbps);
  const copy = copies.length
    ? { gbps: copies.reduce((sum, r) => sum + r.gbps!, 0) / copies.length }
    : null;
  if (copy?.gbps) {
    const memory = rows.filter((r) =>
      /^(bn|maxpool|upsample|adam)/.test(r.kernel) && !r.variant.includes("(baseline)")
    );
    const worst = memory.reduce<BenchRow | null>(
      (w, r) => (!w || r.gbps! < w.gbps! ? r : w),
      null,
    );
    if (worst) {
      out.push(
        `memory-bound kernels: worst ${worst.kernel} ${worst.shape} at ` +
          `${fmt((100 * worst.gbps!) / copy.gbps)}% of the copy kernel (the mean of its ` +
          `${copies.length} timings, ${fmt(copy.gbps)} GB/s; target >= 50%)`,
      );
    }
  }
  for (const p of peers) {
    if (p.what === "conv fwd 32->32 @64" && p.ms && fwd) {
      out.push(`vs ${p.peer} conv forward: ${fmt(p.ms / fwd.ms)}x`);
    }
    if (p.what === "conv fwd+bwd 32->32 @64" && p.ms && fwd && bin && bw) {
      out.push(`vs ${p.peer} conv forward+backward: ${fmt(p.ms / (fwd.ms + bin.ms + bw.ms))}x`);
    }
    if (p.what.startsWith("train step (batch") && p.imagesPerSecond && step) {
      out.push(`vs ${p.peer} training step: ${fmt(step.imagesPerSecond / p.imagesPerSecond)}x`);
    }
    if (
      regressor && p.what === `train step resnet34 w1/8 @64 (batch ${regressor.batch})` &&
      p.imagesPerSecond
    ) {
      out.push(
        `vs ${p.peer} V/A regressor step (ResNet34 w1/8 @64): ` +
          `${fmt(regressor.imagesPerSecond / p.imagesPerSecond)}x (no target: issue 6 names the ` +
          `autoencoder steps)`,
      );
    }
    for (const f of faceSteps) {
      if (p.what === `train step face AE ${f.size} (batch ${f.batch})` && p.imagesPerSecond) {
        out.push(
          `vs ${p.peer} face autoencoder step, ${f.size} size: ` +
            `${fmt(f.imagesPerSecond / p.imagesPerSecond)}x (target >= 0.5)`,
        );
      }
    }
  }
  if (step) {
    out.push(
      `GPU bytes in use over ${step.steps} steps: ${step.bytesInUseFirst} -> ${step.bytesInUseLast}`,
    );
  }
  if (memory) {
    const inUse = memory.samples.map(([, bytes]) => bytes);
    const allocated = memory.samples.map(([, , bytes]) => bytes);
    const flat = (v: number[]) => v.every((b) => b === v[0]);
    // The pool grows during the first steps (the first loss read-back among them), then not.
    out.push(
      `GPU bytes in use over ${memory.steps} training steps: ${inUse[0]} -> ${inUse.at(-1)} ` +
        `(${flat(inUse) ? "flat" : "NOT flat"}; pool allocated ${allocated[0]} at step 1, ` +
        `${allocated[1] ?? allocated[0]} -> ${allocated.at(-1)} from step ` +
        `${memory.samples[1]?.[0] ?? 1}${flat(allocated.slice(1)) ? ", flat" : ", NOT flat"}) ` +
        `(target: flat)`,
    );
  }
  return out;
}

async function cpuName(): Promise<string> {
  try {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    return text.match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Launchers: each records the dispatches of one kernel family for one call, picking the
 * specialization (vec4, kernel width, ...) and packing the shape into the uniform block. They take
 * raw GPU buffers and sizes; temporaries come from the pool and go back to it before returning
 * (reuse waits for the submit, so that is safe).
 */

import type { Backend, KernelSource } from "./backend.ts";
import { grid1d, Uniforms, WORKGROUP_SIZE } from "./wgsl/common.ts";
import {
  affineKernel,
  binaryKernel,
  type BinaryOp,
  copyRowsKernel,
  expandKernel,
  fillKernel,
  unaryBackwardKernel,
  unaryKernel,
  type UnaryOp,
} from "./wgsl/elementwise.ts";
import { intoSplits, kSplits, reduceAxis, reduceMiddle, setSumRuns, sumAll } from "./reductions.ts";
import type { Conv2dGeometry } from "./conv_geometry.ts";
import { envVar } from "./env.ts";
import {
  conv2dBackwardInputKernel,
  conv2dBackwardWeightKernel,
  conv2dForwardKernel,
} from "./wgsl/conv.ts";
import {
  batchNormApplyKernel,
  batchNormApplyVec4Kernel,
  batchNormBackwardFinalizeKernel,
  batchNormBackwardFusedKernel,
  batchNormBackwardInputKernel,
  batchNormBackwardInputVec4Kernel,
  batchNormBackwardPartialKernel,
  batchNormBackwardSumsKernel,
  batchNormForwardFusedKernel,
  batchNormReluMaxPoolBackwardFusedKernel,
  batchNormReluMaxPoolBackwardPartialKernel,
  batchNormReluMaxPoolForwardKernel,
  batchNormStatsFinalizeKernel,
  batchNormStatsKernel,
  batchNormStatsPartialKernel,
  BN_FUSED_WORKGROUP,
  BN_NARROW_WORKGROUP,
  channelSumPartialKernel,
} from "./wgsl/batchnorm.ts";
import {
  maxPool2dBackwardKernel,
  maxPool2dForwardKernel,
  maxPool2x2BackwardKernel,
  maxPool2x2ForwardKernel,
  maxPool3x3s2BackwardKernel,
  resizeBackwardKernel,
  resizeForwardKernel,
  type ResizeMode,
  upsample2xBackwardKernel,
  upsample2xForwardKernel,
  warpBackwardFlowKernel,
  warpBackwardImageKernel,
  warpForwardKernel,
} from "./wgsl/spatial.ts";
import { matmulKernel, matmulLoads } from "./wgsl/matmul.ts";
import { FMA_PROBE_WORKGROUP, fmaProbeKernel } from "./wgsl/probe.ts";
import {
  type ChannelStatistics,
  type ConvActivation,
  uboApplicable,
  uboConv,
  uboConvBackwardWeight,
} from "./conv_ubo.ts";
import {
  subpixelApplicable,
  subpixelBackwardBlockFor,
  subpixelConv,
  subpixelConvBackwardInput,
  subpixelConvBackwardWeight,
} from "./conv_subpixel.ts";
import {
  setOneWindowWgrad,
  uboAnyApplicable,
  uboAnyBackwardInput,
  uboAnyBackwardWeight,
  uboAnyForward,
  uboColsApplicable,
  uboColsBackwardInput,
  uboColsBackwardWeight,
  uboColsForward,
} from "./conv_ubo_any.ts";
import { planeApplicable, planeConv, planeConvBackwardWeight } from "./conv_plane.ts";
import { tunedConvVariant } from "./autotune.ts";
import {
  gemmApplicable,
  gemmBackwardInput,
  gemmBackwardWeight,
  gemmDimensions,
  gemmForward,
  gemmTile,
  type GemmVariant,
} from "./conv_gemm.ts";
import { ADAM_MULTI_MAX, adamKernel, adamMultiKernel, mseBackwardKernel } from "./wgsl/optim.ts";

export type { BinaryOp, Conv2dGeometry, ResizeMode, UnaryOp };
export { reduceAxis, reduceMiddle, sumAll };

const F32 = 4;

/** Grid for one workgroup per item (reductions), folded into 2-D past 65535. */
function gridPerItem(items: number): [number, number] {
  return grid1d(items, 1);
}

/** y = op(x) over n elements. */
export function unary(b: Backend, op: UnaryOp, x: GPUBuffer, y: GPUBuffer, n: number): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  b.dispatch(unaryKernel(op, vec4), [x, y], new Uniforms(1).u32(count).bytes, grid1d(count));
}

/** dx = g * op'(x), computed from the forward output y. */
export function unaryBackward(
  b: Backend,
  op: UnaryOp,
  g: GPUBuffer,
  y: GPUBuffer,
  dx: GPUBuffer,
  n: number,
): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  b.dispatch(
    unaryBackwardKernel(op, vec4),
    [g, y, dx],
    new Uniforms(1).u32(count).bytes,
    grid1d(count),
  );
}

/** out = a op c element-wise over n elements; with `activation`, out = activation(a op c). */
export function binary(
  b: Backend,
  op: BinaryOp,
  a: GPUBuffer,
  c: GPUBuffer,
  out: GPUBuffer,
  n: number,
  activation?: UnaryOp,
): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  b.dispatch(
    binaryKernel(op, vec4, activation),
    [a, c, out],
    new Uniforms(1).u32(count).bytes,
    grid1d(count),
  );
}

/** y = x * scale + shift. */
export function affine(
  b: Backend,
  x: GPUBuffer,
  y: GPUBuffer,
  n: number,
  scale: number,
  shift: number,
): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  b.dispatch(
    affineKernel(vec4),
    [x, y],
    new Uniforms(3).u32(count).f32(scale).f32(shift).bytes,
    grid1d(count),
  );
}

/** out[0..n) = value. */
export function fill(b: Backend, out: GPUBuffer, n: number, value: number): void {
  b.dispatch(fillKernel(), [out], new Uniforms(2).u32(n).f32(value).bytes, grid1d(n));
}

/**
 * The adapter's multiply-add ceiling (kernels/wgsl/probe.ts): `threads` threads each run
 * FMA_PROBE_CHAINS vec4 chains acc = acc * m + a for `iterations` steps and write their sum to
 * out[thread]. Benchmarks time it; it computes nothing a model needs.
 */
export function fmaProbe(
  b: Backend,
  out: GPUBuffer,
  threads: number,
  iterations: number,
  m: number,
  a: number,
): void {
  b.dispatch(
    fmaProbeKernel(),
    [out],
    new Uniforms(4).u32(threads).u32(iterations).f32(m).f32(a).bytes,
    grid1d(threads, FMA_PROBE_WORKGROUP),
  );
}

/** out[i] = g[floor(i / inner)] * scale for i < n (inner = n broadcasts a scalar). */
export function expand(
  b: Backend,
  g: GPUBuffer,
  out: GPUBuffer,
  n: number,
  inner: number,
  scale: number,
): void {
  // One value over everything, in vec4s when they fit (the buffer may be a pooled larger one).
  const broadcast = inner >= n && n % 4 === 0;
  const count = broadcast ? n / 4 : n;
  b.dispatch(
    expandKernel(broadcast),
    [g, out],
    new Uniforms(3).u32(count).u32(Math.max(inner, 1)).f32(scale).bytes,
    grid1d(count),
  );
}

/** Layout of a row copy (all in elements). */
export interface RowCopy {
  outer: number;
  rowLength: number;
  srcStride: number;
  srcOffset: number;
  dstStride: number;
  dstOffset: number;
}

/**
 * dst rows (+)= src rows; see {@link RowCopy}. Moves vec4s when every length, stride and offset is
 * a multiple of 4 (`vec4: false` forces the scalar kernel).
 */
export function copyRows(
  b: Backend,
  src: GPUBuffer,
  dst: GPUBuffer,
  layout: RowCopy,
  accumulate = false,
  options: { vec4?: boolean } = {},
): void {
  const { outer, rowLength, srcStride, srcOffset, dstStride, dstOffset } = layout;
  const vec4 = (options.vec4 ?? vec4Copies) &&
    [rowLength, srcStride, srcOffset, dstStride, dstOffset].every((v) => v % 4 === 0);
  const k = vec4 ? 4 : 1;
  const u = new Uniforms(6).u32(outer).u32(rowLength / k).u32(srcStride / k).u32(srcOffset / k)
    .u32(dstStride / k).u32(dstOffset / k);
  b.dispatch(
    copyRowsKernel(accumulate, vec4),
    [src, dst],
    u.bytes,
    grid1d(outer * rowLength / k),
  );
}

function convUniforms(
  g: Conv2dGeometry,
  blocksC: number,
  blocksW: number,
  samplesPerSplit = 0,
  splits = 0,
): Uint8Array {
  return new Uniforms(15).u32(g.batch).u32(g.inC).u32(g.inH).u32(g.inW).u32(g.outC).u32(g.outH)
    .u32(g.outW).u32(g.kH).u32(g.kW).u32(g.stride).u32(g.pad).u32(blocksC).u32(blocksW)
    .u32(samplesPerSplit).u32(splits).bytes;
}

/**
 * Implementations of the conv kernels: "direct" (register-blocked, storage operands, any shape),
 * "ubo" (a uniform-buffer operand, 3x3 stride 1 padding 1, width % 4 == 0: the weights for
 * forward and backward-to-input, dy for backward-to-weight), "ubo-any" (a uniform-buffer
 * operand, any kernel size, stride and padding; kernels/conv_ubo_any.ts) and "ubo-cols" (ubo-any
 * with the kernel width and stride compiled in, kW <= 7, stride <= 2: several output / input
 * columns per lane for forward and backward-to-input, lanes owning whole kernel rows for
 * backward-to-weight; where it does not apply it falls back to ubo-any) and "gemm" (implicit GEMM
 * with workgroup-memory tiles, any shape: the structure real GPUs want; kernels/conv_gemm.ts),
 * "gemm-wide" (the same with 128 x 128 tiles of the product, 8 x 8 per thread, for large layers)
 * "gemm-flat" (64 x 128 tiles, 8 x 8 per thread: 64 rows of output channels over many pixels)
 * and "plane" (3x3 stride 1 padding 1 on maps of at most 16 pixels, one channel's whole plane per
 * thread, the map's shape compiled in; kernels/conv_plane.ts).
 */
export type ConvVariant = typeof CONV_VARIANTS[number];

/** Every conv variant, in the autotuner's order (the names `VA_CONV_VARIANT` takes). */
export const CONV_VARIANTS = [
  "direct",
  "ubo",
  "ubo-any",
  "ubo-cols",
  "gemm",
  "gemm-wide",
  "gemm-flat",
  "plane",
] as const;

/** Whether a conv variant is one of the implicit-GEMM ones (kernels/conv_gemm.ts). */
export function isGemmVariant(variant: ConvVariant): variant is GemmVariant {
  return variant === "gemm" || variant === "gemm-wide" || variant === "gemm-flat";
}

/** Which conv pass a variant query is about. */
export type ConvPass = "forward" | "backwardInput" | "backwardWeight";

/** Options of the conv launchers. */
export interface ConvOptions {
  /** Force an implementation instead of the default / autotuned choice. */
  variant?: ConvVariant;
  /**
   * {@link conv2dBackwardInput} only: add the gradient to dx's contents instead of overwriting
   * them (a tensor's other gradient summed in the same pass), where
   * {@link conv2dBackwardInputAccumulates} holds.
   */
  accumulate?: boolean;
}

/** Whether {@link conv2dBackwardInput} can add to dx (`ConvOptions.accumulate`) for this shape. */
export function conv2dBackwardInputAccumulates(
  b: Backend,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): boolean {
  const variant = conv2dVariant(b, "backwardInput", g, options);
  return variant === "ubo" || variant === "plane" || variant === "ubo-any" ||
    variant === "ubo-cols";
}

/** The variant a conv launcher uses for this pass and geometry. */
export function conv2dVariant(
  b: Backend,
  pass: ConvPass,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): ConvVariant {
  const wanted = options.variant ?? chooseConvVariant(b, pass, g);
  if (isGemmVariant(wanted) && gemmApplicable(b, pass, g, gemmTile(wanted))) return wanted;
  if (wanted === "ubo" && uboApplicable(b, g)) return "ubo";
  if (wanted === "plane" && planeApplicable(b, g)) return "plane";
  if (wanted === "ubo-cols" && uboColsApplicable(b, pass, g)) {
    return "ubo-cols";
  }
  if ((wanted === "ubo-any" || wanted === "ubo-cols") && uboAnyApplicable(b, g)) return "ubo-any";
  return "direct";
}

/**
 * The default variant for a pass and shape: the autotuner's cached choice when there is one
 * (kernels/autotune.ts), else the rule measured on llvmpipe (correct on every adapter): "ubo"
 * where it applies (for backward-to-weight only from width 8: on 4-wide maps "ubo-cols" measured
 * faster), else "ubo-any" when its channel block (outC for forward and backward-to-weight, inC for
 * backward-to-input; 16 per workgroup) is at least half full, else "direct"; forward and
 * backward-to-input use "ubo-cols" before those where it applies (1.3-3.8x faster than ubo-any,
 * 1.5-4x faster than direct on the ResNet shapes, also with a part-filled channel block), and
 * backward-to-weight uses it instead of "ubo-any" for kernels at least 3 wide (1-1.6x faster;
 * 1x1 kernels share no input values between taps). On CPU rasterizers maps of at most 16 pixels
 * (3x3 stride 1) take "plane" before all of these (ResNet34 w1/8's 2x2 and 4x4 layers at batch 32:
 * 64->64 @2 forward 1.4 -> 0.3-0.4 ms, weight gradient 1.1 -> 0.24; 32->32 @4 weight gradient
 * 0.85 -> 0.27, forward and backward to the input 10-30% faster). On real GPUs untuned layers take "gemm" or
 * "gemm-wide" where {@link gemmPreferredOnGpu} (the ubo family), {@link gemmPreferredOnGpuOutsideUbo}
 * (the others) and {@link gemmWidePreferredOnGpu} say so.
 */
function chooseConvVariant(b: Backend, pass: ConvPass, g: Conv2dGeometry): ConvVariant {
  const forced = forcedConvVariant();
  if (forced) return forced;
  const tuned = tunedConvVariant(b, pass, g);
  if (tuned) return tuned;
  const ubo = uboApplicable(b, g);
  const gemm = ubo ? gemmPreferredOnGpu(pass, g) : gemmPreferredOnGpuOutsideUbo(pass, g);
  if (!b.isCpuRasterizer && gemm && gemmApplicable(b, pass, g)) {
    const wide = gemmWidePreferredOnGpu(pass, g) &&
      gemmApplicable(b, pass, g, gemmTile("gemm-wide"));
    return wide ? "gemm-wide" : "gemm";
  }
  if (b.isCpuRasterizer && planeApplicable(b, g)) return "plane";
  if (ubo && (pass !== "backwardWeight" || g.inW >= 8)) return "ubo";
  const cols = colsByDefault && uboColsApplicable(b, pass, g);
  if (cols && pass !== "backwardWeight") return "ubo-cols";
  const blockChannels = pass === "backwardInput" ? g.inC : g.outC;
  if (blockChannels < 8 || !uboAnyApplicable(b, g)) return "direct";
  return cols && g.kW >= 3 ? "ubo-cols" : "ubo-any";
}

/**
 * Whether an untuned 3x3 stride-1 layer (the ubo family) takes a gemm variant rather than "ubo" on
 * a real GPU: fitted to the autotuner's timings of 69 (pass, shape) entries (both face
 * autoencoders' layers) on an NVIDIA H200 (bench/README.md, round 14;
 * bench/results/nvidia-h200-2026-11-28/fit_gpu_rule_run4.py), on which this rule and
 * {@link gemmWidePreferredOnGpu} land within 0.5% of the per-shape best in total, against 7.4x for
 * ubo alone (in sample: other GPUs may differ, and the training loops tune anyway). Forward and
 * backward to the input: deep layers on small maps (the ubo kernels hold few channels per
 * workgroup there). Backward to the weight: everything but narrow outputs with short reductions.
 */
export function gemmPreferredOnGpu(pass: ConvPass, g: Conv2dGeometry): boolean {
  const pairs = g.inC * g.outC;
  if (pass === "backwardWeight") {
    return (g.outC >= 16 && g.batch * g.outH * g.outW >= 65536) || pairs >= 4096;
  }
  const area = g.inH * g.inW;
  return (area <= 256 && pairs >= 4096) || (area <= 1024 && pairs >= 8192);
}

/**
 * Whether an untuned layer outside the ubo family (strided, 1x1, 7x7, maps whose width is not a
 * multiple of 4) takes a gemm variant on a real GPU. Fitted to the autotuner's timings of ResNet34
 * at full width on 224x224 faces, batch 32, on an NVIDIA H200 (bench/README.md, round 18;
 * bench/results/nvidia-h200-2026-11-28/fit_gpu_rule_run5.ts): there gemm was 2-100x faster than
 * ubo-cols, ubo-any and direct (the previous defaults made the step 1109 ms against 51 tuned),
 * except forward and backward to the input of the stem (3 input channels: a 147-long reduction, a
 * 3-row product), where ubo-cols won by 1.4x and 29x. The weight gradient always takes gemm.
 */
export function gemmPreferredOnGpuOutsideUbo(pass: ConvPass, g: Conv2dGeometry): boolean {
  return pass === "backwardWeight" || g.inC >= 16;
}

/**
 * Whether a layer that takes gemm on a real GPU ({@link gemmPreferredOnGpu}) takes "gemm-wide"
 * (128 x 128 tiles): the product's M (output channels; input channels backward to the input) fills
 * the tile's 128 rows, and there are enough tiles to fill the GPU (128 workgroups; for the
 * weight, whose K is split, 2048 columns). Same fit as gemmPreferredOnGpu.
 */
export function gemmWidePreferredOnGpu(pass: ConvPass, g: Conv2dGeometry): boolean {
  const { M, N } = gemmDimensions(pass, g);
  if (M < 128) return false;
  if (pass === "backwardWeight") return N >= 2048;
  return Math.ceil(M / 128) * Math.ceil(N / 128) >= 128;
}

/** Channels per workgroup block of the ubo kernels: 4 for layers with at most 4, else 8. */
export function uboBlockFor(channels: number): number {
  return channels <= 4 && round4Blocks ? 4 : 8;
}

let colsByDefault = true;
let fusedBatchNorm = true;
let pool3x3ByDefault = true;
let round4Blocks = true;
let vec4Copies = true;

/**
 * Benchmarks only (bench/profile_step.ts --compare): with `true`, launchers default as in round 3
 * (no "ubo-cols" for untuned shapes, 8-channel ubo blocks only, scalar row copies, batch-norm
 * training passes unfused, generic 3x3 max-pool backward, one weight-gradient dispatch per
 * channel block); `false` restores
 * the current defaults.
 */
export function setRound3Defaults(enabled: boolean): void {
  colsByDefault = !enabled;
  fusedBatchNorm = !enabled;
  pool3x3ByDefault = !enabled;
  setOneWindowWgrad(!enabled);
  vec4Copies = !enabled;
  round4Blocks = !enabled;
}

let forcedVariant: ConvVariant | null | undefined;

/**
 * `VA_CONV_VARIANT=` one of {@link CONV_VARIANTS} forces a variant everywhere (debugging, A/B
 * runs).
 */
function forcedConvVariant(): ConvVariant | null {
  if (forcedVariant === undefined) {
    const value = envVar("VA_CONV_VARIANT");
    forcedVariant = CONV_VARIANTS.find((variant) => variant === value) ?? null;
  }
  return forcedVariant;
}

/**
 * Batch-norm implementations: "per-channel" (one workgroup per channel walks the channel twice,
 * scalar loads; the original) and "chunked" (reductions split over (chunk, channel) workgroups
 * plus a per-channel finalize pass, vec4 loads when spatial % 4 == 0).
 */
export type BatchNormVariant = "per-channel" | "chunked";

/** Options of the batch-norm launchers. */
export interface BatchNormOptions {
  /** Force an implementation (tests, benchmarks); default "chunked". */
  variant?: BatchNormVariant;
  /** Apply: write relu(batchnorm(x)) (a fused ReLU). */
  relu?: boolean;
  /**
   * Backward (sums and input): the output of a fused-ReLU apply; the upstream gradient dy is
   * taken as dy * (reluOutput > 0), the gradient through the ReLU.
   */
  reluOutput?: GPUBuffer;
  /**
   * {@link batchNormBackwardTraining} where {@link batchNormReluMaskFromInput} holds: the forward
   * applied a fused ReLU, and its mask is recomputed from x, the statistics and the affine
   * parameters (`bias` when affine; the weight is the launcher's) instead of read from the output.
   */
  reluFromInput?: { bias: GPUBuffer | null };
  /**
   * Training passes ({@link batchNormForwardTraining}, {@link batchNormBackwardTraining}) of the
   * chunked variant: fold the per-channel finalize into the element pass (default true).
   */
  fused?: boolean;
  /**
   * Training forward ({@link batchNormForwardTraining}, {@link batchNormReluMaxPoolForwardTraining})
   * of the fused chunked passes: x's statistics partials, written by the conv that produced x
   * ({@link conv2dForward}'s `statistics`), instead of a partial pass over x (or the walked form's
   * own sums). The caller keeps and releases the buffer.
   */
  statistics?: ChannelStatistics | null;
  /**
   * Fused training passes whose walk is one workgroup per channel (CPU rasterizers): find the
   * channel's sums in the same pass, walking the channel twice (the walked form,
   * kernels/wgsl/batchnorm.ts walkedHead), instead of after a partial pass. Default true; false
   * runs the two passes (tests, benchmarks).
   */
  walked?: boolean;
  /**
   * Training forward of the fused passes ({@link batchNormResidualApplicable}): a map of x's shape
   * added to the normalized x before the ReLU, y = relu(batchnorm(x) + residual) (a ResNet block's
   * tail; without `relu`, batchnorm(x) + residual).
   */
  residual?: GPUBuffer;
  /**
   * Training backward of the fused passes: also write the upstream gradient, masked by
   * `reluOutput` > 0 when given, here (the gradient of the forward's `residual`).
   */
  residualGradient?: GPUBuffer;
  /**
   * Fused passes with one workgroup per channel: force (true) or refuse (false) the narrow
   * workgroup of one SIMD group (kernels/wgsl/batchnorm.ts BN_NARROW_WORKGROUP); default: for
   * channels of at most BN_NARROW_MOST vectors (tests, benchmarks).
   */
  narrow?: boolean;
}

function bnVariant(_b: Backend, _channels: number, options: BatchNormOptions): BatchNormVariant {
  return options.variant ?? "chunked";
}

/**
 * Whether {@link batchNormBackwardTraining} can recompute a fused ReLU's mask from its input
 * (`reluFromInput`; the fused chunked passes) instead of reading the forward's output
 * (`reluOutput`), so that a caller need not keep the output for the backward.
 */
export function batchNormReluMaskFromInput(
  b: Backend,
  channels: number,
  options: BatchNormOptions = {},
): boolean {
  return bnFused(b, channels, options);
}

/**
 * Whether the training passes take `residual` and `residualGradient` ({@link BatchNormOptions}):
 * the fused chunked passes.
 */
export function batchNormResidualApplicable(
  b: Backend,
  channels: number,
  options: BatchNormOptions = {},
): boolean {
  return bnFused(b, channels, options);
}

/** The batch-norm implementation used for a shape (n elements, `channels`, `spatial`). */
export function batchNormVariant(
  b: Backend,
  _n: number,
  channels: number,
  spatial = 1,
  options: BatchNormOptions = {},
): string {
  const v = bnVariant(b, channels, options);
  if (v === "per-channel") return "two-pass per channel";
  const segmented = bnFused(b, channels, options) && fusedPassForm(b) === "segmented";
  return `chunked${spatial % 4 === 0 ? " vec4" : ""}${segmented ? " segmented" : ""}`;
}

/** The fused passes' form on `b`: "segmented" (several workgroups per channel) or "fused". */
export function fusedPassForm(b: Backend): string {
  return reductionChunking(b).fusedThreads !== null ? "segmented" : "fused";
}

/** How the chunked per-channel reductions (batch-norm statistics, conv bias sums) cut a channel. */
export interface ReductionChunking {
  /** Threads the partial pass aims for (channels x chunks). */
  threads: number;
  /** Most chunks per channel (the passes that finish a channel sum them all). */
  mostPerChannel: number;
  /** Fewest vectors one chunk thread walks. */
  minChunk: number;
  /**
   * Threads the fused passes aim for over all channels, walking runs of one element or item
   * (several workgroups per channel: the segmented kernels); null for one workgroup per channel
   * whose threads walk runs of at least a few dozen vectors.
   */
  fusedThreads: number | null;
}

/**
 * CPU rasterizers: 512 threads cover a few cores' SIMD lanes (round 6). A GPU needs tens of
 * thousands of threads to keep enough loads in flight for its memory bandwidth: on an NVIDIA H200
 * the 512-thread partial passes moved 76-183 GB/s against 2400 for a copy, and took 26 of the
 * tuned paper-size step's 74 ms (bench/README.md, round 13).
 */
const CPU_REDUCTION: ReductionChunking = {
  threads: 512,
  mostPerChannel: Infinity,
  minChunk: 64,
  fusedThreads: null,
};
/**
 * Real GPUs: see {@link CPU_REDUCTION}. The fused passes' one workgroup of 64 threads per channel
 * ran at 77-523 GB/s on the H200 even after the partial passes were chunked (round 14): 64
 * channels of 64x64 at batch 64 gave 4096 threads 4096 elements each. Segmented, they aim for
 * 262144 threads (unmeasured on a GPU as of round 14).
 */
const GPU_REDUCTION: ReductionChunking = {
  threads: 65536,
  mostPerChannel: 256,
  minChunk: 16,
  fusedThreads: 262144,
};
/**
 * Base of the fused passes' least run per thread (a quarter of it for elements, an eighth for
 * pooled items) where one workgroup per channel walks the channel (CPU rasterizers; GPUs walk
 * runs of one, see {@link fusedWalk}).
 */
const BN_MIN_CHUNK = 64;

let reductionOverride: ReductionChunking | null = null;

/**
 * Tests and benchmarks: chunk the per-channel reductions (and the first stage of full sums,
 * kernels/reductions.ts sumAll) as on CPU rasterizers ("cpu") or as on GPUs ("gpu") whatever the
 * adapter; null restores the adapter's own.
 */
export function setReductionChunking(mode: "cpu" | "gpu" | null): void {
  reductionOverride = mode === null ? null : mode === "cpu" ? CPU_REDUCTION : GPU_REDUCTION;
  setSumRuns(mode === null ? null : mode === "cpu");
}

function reductionChunking(b: Backend): ReductionChunking {
  return reductionOverride ?? (b.isCpuRasterizer ? CPU_REDUCTION : GPU_REDUCTION);
}

/** Chunking of a per-channel reduction over [batch, channels, spatial]. */
function bnChunking(b: Backend, batch: number, channels: number, spatial: number) {
  const vec4 = spatial % 4 === 0;
  const spatialV = vec4 ? spatial / 4 : spatial;
  const total = batch * spatialV;
  const r = reductionChunking(b);
  const most = Math.min(r.mostPerChannel, Math.ceil(r.threads / channels));
  const runs = splitRuns(total, most, r.minChunk);
  return { vec4, spatialV, total, ...runs };
}

/**
 * `total` cut into at most `most` runs of at least `minLength` (one run when it is shorter): the
 * run length, and how many runs that makes.
 */
function splitRuns(
  total: number,
  most: number,
  minLength: number,
): { chunks: number; chunkLength: number } {
  const wanted = Math.max(1, Math.min(most, Math.ceil(total / minLength)));
  const chunkLength = Math.ceil(total / wanted);
  return { chunks: Math.ceil(total / chunkLength), chunkLength };
}

function bnChunkUniforms(batch: number, channels: number, k: ReturnType<typeof bnChunking>) {
  return new Uniforms(6).u32(batch).u32(channels).u32(k.spatialV).u32(k.chunks)
    .u32(k.chunkLength).u32(k.total).bytes;
}

/**
 * out[c] = scale * sum over n, s of x[n, c, s] for x [batch, channels, spatial] (a conv bias's
 * gradient): each channel is cut into chunks that threads walk serially with vec4 loads (the
 * batch-norm statistics' chunking), then the chunks are added. One workgroup per channel
 * (reduceMiddle) left most cores idle on narrow layers and reached ~2 GB/s.
 */
export function channelSums(
  b: Backend,
  x: GPUBuffer,
  out: GPUBuffer,
  batch: number,
  channels: number,
  spatial: number,
  scale = 1,
): void {
  const k = bnChunking(b, batch, channels, spatial);
  const partial = b.pool.acquire(channels * k.chunks * F32);
  b.dispatch(
    channelSumPartialKernel(k.vec4),
    [x, partial],
    bnChunkUniforms(batch, channels, k),
    grid1d(k.chunks * channels, 64),
  );
  reduceAxis(b, partial, out, channels, k.chunks, 1, scale);
  b.pool.release(partial);
}

/** Options of the conv forward launchers. */
export interface ConvForwardOptions extends ConvOptions {
  /**
   * Also form y's batch-norm statistics partials as y is stored, for a training-mode batch norm of
   * y (BatchNormOptions.statistics). Only some variants can (ubo, sub-pixel); the launcher returns
   * null where it did not.
   */
  statistics?: boolean;
  /**
   * y = activation(conv2d(x, w) + bias). The ubo variant applies it as it stores y; the others
   * write the conv to a scratch buffer and run the activation pass after it.
   */
  activation?: ConvActivation;
}

export type { ChannelStatistics, ConvActivation };
export { refreshPackedFilters } from "./pack_cache.ts";

/**
 * y = conv2d(x, w) + bias; y's batch-norm statistics partials (a pooled buffer the caller
 * releases) when `options.statistics` asks for them and the variant forms them, else null.
 */
export function conv2dForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvForwardOptions = {},
): ChannelStatistics | null {
  const variant = conv2dVariant(b, "forward", g, options);
  const activation = options.activation;
  if (activation && variant !== "ubo") {
    return convThenActivation(
      b,
      g,
      activation,
      y,
      (out, plain) => conv2dForward(b, x, w, bias, out, g, { ...options, ...plain }),
    );
  }
  if (isGemmVariant(variant)) {
    gemmForward(b, x, w, bias, y, g, gemmTile(variant));
    return null;
  }
  if (variant === "ubo") {
    const shape = { batch: g.batch, inC: g.inC, outC: g.outC, H: g.inH, W: g.inW };
    const block = uboBlockFor(g.outC);
    return uboConv(
      b,
      x,
      w,
      bias,
      y,
      shape,
      false,
      block,
      undefined,
      options.statistics,
      activation ?? null,
    );
  }
  if (variant === "ubo-any") {
    uboAnyForward(b, x, w, bias, y, g);
    return null;
  }
  if (variant === "plane") {
    const shape = { batch: g.batch, inC: g.inC, outC: g.outC, H: g.inH, W: g.inW };
    planeConv(b, x, w, bias, y, shape, false, uboBlockFor(g.outC));
    return null;
  }
  if (variant === "ubo-cols") {
    uboColsForward(b, x, w, bias, y, g);
    return null;
  }
  const blocksC = Math.ceil(g.outC / 4);
  const blocksW = Math.ceil(g.outW / 4);
  const threads = g.batch * blocksC * g.outH * blocksW;
  b.dispatch(
    conv2dForwardKernel(bias !== null),
    bias ? [x, w, bias, y] : [x, w, y],
    convUniforms(g, blocksC, blocksW),
    grid1d(threads),
  );
  return null;
}

/**
 * A conv forward whose variant cannot apply `activation` as it stores: `run` writes the conv into
 * scratch (its options with `plain`: no activation, no statistics, which would be the map's before
 * the activation), then the activation pass writes y. Returns null (no statistics).
 */
function convThenActivation(
  b: Backend,
  g: Conv2dGeometry,
  activation: ConvActivation,
  y: GPUBuffer,
  run: (out: GPUBuffer, plain: ConvForwardOptions) => void,
): null {
  const count = g.batch * g.outC * g.outH * g.outW;
  const scratch = b.pool.acquire(count * F32);
  run(scratch, { activation: undefined, statistics: false });
  unary(b, activation, scratch, y, count);
  b.pool.release(scratch);
  return null;
}

/** dx = conv2d backward to the input. */
export function conv2dBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): void {
  const variant = conv2dVariant(b, "backwardInput", g, options);
  const accumulate = options.accumulate ?? false;
  if (accumulate && !conv2dBackwardInputAccumulates(b, g, options)) {
    throw new Error(`conv2dBackwardInput: the ${variant} variant cannot add to dx`);
  }
  if (isGemmVariant(variant)) {
    gemmBackwardInput(b, dy, w, dx, g, gemmTile(variant));
    return;
  }
  if (variant === "ubo") {
    const shape = { batch: g.batch, inC: g.outC, outC: g.inC, H: g.inH, W: g.inW };
    uboConv(
      b,
      dy,
      w,
      null,
      dx,
      shape,
      true,
      uboBlockFor(g.inC),
      undefined,
      false,
      null,
      accumulate,
    );
    return;
  }
  if (variant === "ubo-any") {
    uboAnyBackwardInput(b, dy, w, dx, g, accumulate);
    return;
  }
  if (variant === "plane") {
    const shape = { batch: g.batch, inC: g.outC, outC: g.inC, H: g.inH, W: g.inW };
    planeConv(b, dy, w, null, dx, shape, true, uboBlockFor(g.inC), accumulate);
    return;
  }
  if (variant === "ubo-cols") {
    uboColsBackwardInput(b, dy, w, dx, g, accumulate);
    return;
  }
  const blocksC = Math.ceil(g.inC / 4);
  const blocksW = Math.ceil(g.inW / 4);
  const threads = g.batch * blocksC * g.inH * blocksW;
  b.dispatch(
    conv2dBackwardInputKernel(),
    [dy, w, dx],
    convUniforms(g, blocksC, blocksW),
    grid1d(threads),
  );
}

/** Threads the weight-gradient kernel aims for before splitting the batch further. */
const WEIGHT_GRAD_TARGET_THREADS = 8192;

/** dw = conv2d backward to the weight (split over the batch, then summed). */
export function conv2dBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): void {
  const variant = conv2dVariant(b, "backwardWeight", g, options);
  if (isGemmVariant(variant)) {
    gemmBackwardWeight(b, dy, x, dw, g, gemmTile(variant));
    return;
  }
  if (variant === "ubo") {
    const shape = { batch: g.batch, inC: g.inC, outC: g.outC, H: g.inH, W: g.inW };
    uboConvBackwardWeight(b, dy, x, dw, shape);
    return;
  }
  if (variant === "ubo-cols") {
    uboColsBackwardWeight(b, dy, x, dw, g);
    return;
  }
  if (variant === "ubo-any") {
    uboAnyBackwardWeight(b, dy, x, dw, g);
    return;
  }
  if (variant === "plane") {
    planeConvBackwardWeight(b, dy, x, dw, g);
    return;
  }
  const blocksC = Math.ceil(g.outC / 4);
  const threadsPerSplit = blocksC * g.inC * g.kH;
  const wantedSplits = Math.ceil(WEIGHT_GRAD_TARGET_THREADS / threadsPerSplit);
  const samplesPerSplit = Math.ceil(g.batch / Math.min(g.batch, Math.max(1, wantedSplits)));
  const splits = Math.ceil(g.batch / samplesPerSplit);
  const weightSize = g.outC * g.inC * g.kH * g.kW;
  const target = splits === 1 ? dw : b.pool.acquire(splits * weightSize * F32);
  b.dispatch(
    conv2dBackwardWeightKernel(g.kW),
    [dy, x, target],
    convUniforms(g, blocksC, 0, samplesPerSplit, splits),
    grid1d(splits * threadsPerSplit),
  );
  if (splits > 1) {
    reduceAxis(b, target, dw, 1, splits, weightSize);
    b.pool.release(target);
  }
}

/** Batch-norm statistics of x [batch, channels, spatial]; running stats updated when given. */
export function batchNormStats(
  b: Backend,
  x: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  running: { mean: GPUBuffer; var: GPUBuffer } | null,
  batch: number,
  channels: number,
  spatial: number,
  eps: number,
  momentum: number,
  options: BatchNormOptions = {},
): void {
  if (bnVariant(b, channels, options) === "chunked") {
    const k = bnChunking(b, batch, channels, spatial);
    const partial = b.pool.acquire(channels * k.chunks * 2 * F32);
    b.dispatch(
      batchNormStatsPartialKernel(k.vec4),
      [x, partial],
      bnChunkUniforms(batch, channels, k),
      grid1d(k.chunks * channels, 64),
    );
    const u = new Uniforms(6).u32(channels).u32(k.chunks).u32(spatial).f32(batch * spatial)
      .f32(eps).f32(momentum);
    const buffers = [x, partial, mean, invStd];
    if (running) buffers.push(running.mean, running.var);
    b.dispatch(batchNormStatsFinalizeKernel(running !== null), buffers, u.bytes, grid1d(channels));
    b.pool.release(partial);
    return;
  }
  const u = new Uniforms(5).u32(batch).u32(channels).u32(spatial).f32(eps).f32(momentum);
  b.dispatch(
    batchNormStatsKernel(running !== null),
    running ? [x, mean, invStd, running.mean, running.var] : [x, mean, invStd],
    u.bytes,
    gridPerItem(channels),
  );
}

/** Statistics for the normalize pass: batch (mean, invStd) or running (mean, var). */
export interface BatchNormStatBuffers {
  mean: GPUBuffer;
  stat: GPUBuffer;
  fromVariance: boolean;
}

/** y = batchnorm(x) with the given statistics and optional affine parameters. */
export function batchNormApply(
  b: Backend,
  x: GPUBuffer,
  stats: BatchNormStatBuffers,
  affineParams: { weight: GPUBuffer; bias: GPUBuffer } | null,
  y: GPUBuffer,
  n: number,
  channels: number,
  spatial: number,
  eps: number,
  options: BatchNormOptions = {},
): void {
  const vec4 = spatial % 4 === 0 && bnVariant(b, channels, options) === "chunked";
  const count = vec4 ? n / 4 : n;
  const u = new Uniforms(5).u32(count).u32(channels).u32(vec4 ? spatial / 4 : spatial).f32(eps)
    .f32(0);
  const buffers = [x, stats.mean, stats.stat];
  if (affineParams) buffers.push(affineParams.weight, affineParams.bias);
  buffers.push(y);
  const relu = options.relu ?? false;
  const kernel = vec4
    ? batchNormApplyVec4Kernel(affineParams !== null, stats.fromVariance, relu)
    : batchNormApplyKernel(affineParams !== null, stats.fromVariance, relu);
  b.dispatch(kernel, buffers, u.bytes, grid1d(count));
}

/** Whether the fused training passes run (the chunked variant; off in the round-3 baseline). */
function bnFused(b: Backend, channels: number, options: BatchNormOptions): boolean {
  return bnVariant(b, channels, options) === "chunked" && (options.fused ?? fusedBatchNorm);
}

/** A fused pass's uniforms for the element walk `walk` of the partial pass's chunking `k`. */
function fusedUniforms(
  batch: number,
  channels: number,
  k: ReturnType<typeof bnChunking>,
  walk: FusedWalk,
  count: number,
  eps: number,
  momentum: number,
): Uint8Array {
  const u = new Uniforms(walk.segments ? 12 : 11).u32(batch).u32(channels).u32(k.spatialV)
    .u32(k.chunks).u32(k.chunkLength).u32(k.total).f32(count).f32(eps).f32(momentum)
    .u32(walk.chunks).u32(walk.chunkLength);
  if (walk.segments) u.u32(walk.segments);
  return u.bytes;
}

/**
 * How a fused pass walks each channel's `total` elements or items: `chunks` runs of
 * `chunkLength`, by `segments` workgroups per channel (null: one, with the unsegmented kernels).
 */
interface FusedWalk {
  chunks: number;
  chunkLength: number;
  segments: number | null;
  /** One SIMD group per channel (BN_NARROW_WORKGROUP threads; unsegmented walks only). */
  narrow: boolean;
}

/**
 * Most vectors (or pooled items) per channel that an unsegmented fused pass walks with
 * BN_NARROW_WORKGROUP threads: the demo-size autoencoder's and the V/A regressor's maps at batch 32
 * (131072 elements per channel and fewer) ran faster so, the paper size's 64x64 maps at batch 64
 * (262144) slower (kernels/wgsl/batchnorm.ts).
 */
const BN_NARROW_MOST = 32768;

/**
 * The walk of a fused pass on `b` ({@link ReductionChunking.fusedThreads}). One workgroup per
 * channel (CPU rasterizers): up to one run per thread, of at least `minLength` (the partial passes
 * cut a channel into few chunks when there are many channels, 256 channels of 8x8 at batch 64: 2,
 * and a fused pass that walked those chunks kept 2 of its 64 threads busy). Segmented (GPUs): runs
 * of one, over enough workgroups per channel for the threads aimed for, 4 runs per thread or more.
 */
function fusedWalk(
  b: Backend,
  total: number,
  minLength: number,
  channels: number,
  options: BatchNormOptions,
): FusedWalk {
  const threads = reductionChunking(b).fusedThreads;
  if (threads === null) {
    const narrow = options.narrow ?? total <= BN_NARROW_MOST;
    const workgroup = narrow ? BN_NARROW_WORKGROUP : BN_FUSED_WORKGROUP;
    return { ...splitRuns(total, workgroup, minLength), segments: null, narrow };
  }
  const perChannel = Math.min(Math.ceil(total / 4), Math.ceil(threads / channels));
  const segments = Math.max(1, Math.ceil(perChannel / BN_FUSED_WORKGROUP));
  return { chunks: total, chunkLength: 1, segments, narrow: false };
}

/** The grid of a fused pass: a workgroup per channel and segment. */
function fusedGrid(channels: number, walk: FusedWalk): [number, number] {
  return gridPerItem(channels * (walk.segments ?? 1));
}

/**
 * Training-mode batch norm forward: batch statistics (mean, invStd, running stats updated when
 * given) and y = batchnorm(x) (plus `options.residual`, then relu'd with `options.relu`). The
 * chunked variant runs two passes (chunk partials, then statistics and normalize fused, one
 * workgroup per channel, or several on GPUs); otherwise {@link batchNormStats} then
 * {@link batchNormApply}.
 */
export function batchNormForwardTraining(
  b: Backend,
  x: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  running: { mean: GPUBuffer; var: GPUBuffer } | null,
  affineParams: { weight: GPUBuffer; bias: GPUBuffer } | null,
  y: GPUBuffer,
  batch: number,
  channels: number,
  spatial: number,
  eps: number,
  momentum: number,
  options: BatchNormOptions = {},
): void {
  if (!bnFused(b, channels, options)) {
    if (options.residual) {
      throw new Error("batchNormForwardTraining: a residual needs the fused passes");
    }
    batchNormStats(b, x, mean, invStd, running, batch, channels, spatial, eps, momentum, options);
    const stats = { mean, stat: invStd, fromVariance: false };
    const n = batch * channels * spatial;
    batchNormApply(b, x, stats, affineParams, y, n, channels, spatial, eps, options);
    return;
  }
  const k = bnChunking(b, batch, channels, spatial);
  const tiles = options.statistics ?? null;
  const walk = fusedWalk(b, k.total, BN_MIN_CHUNK / 4, channels, options);
  const walked = !tiles && walkedPass(walk, options);
  const partial = tiles ? tiles.buffer : walked ? null : bnStatsPartials(b, x, batch, channels, k);
  b.dispatch(
    batchNormForwardFusedKernel(
      k.vec4,
      affineParams !== null,
      options.relu ?? false,
      !!running,
      walk.segments !== null,
      tiles !== null,
      walked,
      walk.narrow,
      !!options.residual,
    ),
    fusedForwardBuffers(x, partial, affineParams, y, mean, invStd, running, options.residual),
    fusedUniforms(
      batch,
      channels,
      tiles ? { ...k, chunks: tiles.partials } : k,
      walk,
      batch * spatial,
      eps,
      momentum,
    ),
    fusedGrid(channels, walk),
  );
  if (partial && !tiles) b.pool.release(partial);
}

/**
 * Whether a fused pass with this walk finds its channel's sums itself (one workgroup per channel,
 * unless `options.walked` is false).
 */
function walkedPass(walk: FusedWalk, options: BatchNormOptions): boolean {
  return walk.segments === null && (options.walked ?? true);
}

/**
 * Bindings of the fused forward passes (unpooled and pooled): x, the statistics' partials, the
 * affine parameters when given, the output, mean, invStd and the running statistics when given.
 */
function fusedForwardBuffers(
  x: GPUBuffer,
  partial: GPUBuffer | null,
  affineParams: { weight: GPUBuffer; bias: GPUBuffer } | null,
  out: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  running: { mean: GPUBuffer; var: GPUBuffer } | null,
  residual?: GPUBuffer,
): GPUBuffer[] {
  const buffers = residual ? [x, residual] : [x];
  if (partial) buffers.push(partial);
  if (affineParams) buffers.push(affineParams.weight, affineParams.bias);
  buffers.push(out, mean, invStd);
  if (running) buffers.push(running.mean, running.var);
  return buffers;
}

/** The statistics' chunk partials of x (a pooled buffer the caller releases). */
function bnStatsPartials(
  b: Backend,
  x: GPUBuffer,
  batch: number,
  channels: number,
  k: ReturnType<typeof bnChunking>,
): GPUBuffer {
  const partial = b.pool.acquire(channels * k.chunks * 2 * F32);
  b.dispatch(
    batchNormStatsPartialKernel(k.vec4),
    [x, partial],
    bnChunkUniforms(batch, channels, k),
    grid1d(k.chunks * channels, 64),
  );
  return partial;
}

/**
 * Whether the batch norm, ReLU and 2x2 max-pool of a [batch, channels, height, width] map can run
 * as one op ({@link batchNormReluMaxPoolForwardTraining}): the fused training passes, an even
 * height and width % 4 == 0.
 */
export function batchNormReluMaxPoolApplicable(
  b: Backend,
  channels: number,
  height: number,
  width: number,
  options: BatchNormOptions = {},
): boolean {
  return bnFused(b, channels, options) && height > 0 && height % 2 === 0 && width > 0 &&
    width % 4 === 0;
}

/** Chunking of the pooled passes over items (2 rows x 4 columns: two pooling windows). */
function pooledChunking(
  b: Backend,
  batch: number,
  channels: number,
  height: number,
  width: number,
) {
  const quadsW = width / 4;
  const outH = height / 2;
  const total = batch * outH * quadsW;
  const r = reductionChunking(b);
  const most = Math.min(r.mostPerChannel, Math.ceil(r.threads / channels));
  // An item is two vectors: half as many items make a chunk's least work.
  const runs = splitRuns(total, most, r.minChunk / 2);
  return { quadsW, outH, total, ...runs };
}

/**
 * A fused pooled pass's walk over each channel's items ({@link fusedWalk}, 8 items or more), with
 * the item geometry of the partial pass's chunking `k`.
 */
function pooledWalk(
  b: Backend,
  k: ReturnType<typeof pooledChunking>,
  channels: number,
  options: BatchNormOptions,
) {
  return { ...k, ...fusedWalk(b, k.total, BN_MIN_CHUNK / 8, channels, options) };
}

/**
 * The pooled passes' uniforms for the item chunking `k` (a partial pass's, or a fused pass's walk,
 * whose segment count comes last when it is segmented).
 */
function pooledUniforms(
  batch: number,
  channels: number,
  k: ReturnType<typeof pooledChunking> & { segments?: number | null },
  statChunks: number,
  count: number,
  eps: number,
  momentum: number,
): Uint8Array {
  const u = new Uniforms(k.segments ? 12 : 11).u32(batch).u32(channels).u32(k.quadsW)
    .u32(k.outH).u32(k.chunks).u32(k.chunkLength).u32(k.total).u32(statChunks).f32(count)
    .f32(eps).f32(momentum);
  if (k.segments) u.u32(k.segments);
  return u.bytes;
}

/**
 * Training-mode maxPool2x2(relu(batchNorm(x))) for x [batch, channels, height, width]: the batch
 * statistics (mean, invStd; running stats updated when given), then the pooled map [batch,
 * channels, height / 2, width / 2] in one pass that never writes the normalized map (it and the
 * separate max-pool's read of it are the two passes saved). Needs
 * {@link batchNormReluMaxPoolApplicable}.
 */
export function batchNormReluMaxPoolForwardTraining(
  b: Backend,
  x: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  running: { mean: GPUBuffer; var: GPUBuffer } | null,
  affineParams: { weight: GPUBuffer; bias: GPUBuffer } | null,
  pooled: GPUBuffer,
  batch: number,
  channels: number,
  height: number,
  width: number,
  eps: number,
  momentum: number,
  options: BatchNormOptions = {},
): void {
  if (!batchNormReluMaxPoolApplicable(b, channels, height, width)) {
    throw new Error(
      `batchNormReluMaxPoolForwardTraining: not applicable to ${channels} channels of ${height}x${width}`,
    );
  }
  if (options.residual) throw new Error("batchNormReluMaxPoolForwardTraining: no residual here");
  const spatial = height * width;
  const k = bnChunking(b, batch, channels, spatial);
  const statistics = options.statistics ?? null;
  const p = pooledWalk(b, pooledChunking(b, batch, channels, height, width), channels, options);
  const walked = !statistics && walkedPass(p, options);
  const partial = statistics
    ? statistics.buffer
    : walked
    ? null
    : bnStatsPartials(b, x, batch, channels, k);
  b.dispatch(
    batchNormReluMaxPoolForwardKernel(
      affineParams !== null,
      running !== null,
      p.segments !== null,
      statistics !== null,
      walked,
      p.narrow,
    ),
    fusedForwardBuffers(x, partial, affineParams, pooled, mean, invStd, running),
    pooledUniforms(
      batch,
      channels,
      p,
      statistics ? statistics.partials : k.chunks,
      batch * spatial,
      eps,
      momentum,
    ),
    fusedGrid(channels, p),
  );
  if (partial && !statistics) b.pool.release(partial);
}

/**
 * Backward of {@link batchNormReluMaxPoolForwardTraining} from the pooled map's gradient dPooled:
 * sums[c] = sum(g), sums[channels + c] = sum(g * xhat) (the bias and weight gradients) and dx, g
 * being the gradient the max-pool and ReLU pass to the normalized map (each window's arg-max found
 * again from x). Two passes, like the unpooled fused backward, reading dPooled and x only.
 */
export function batchNormReluMaxPoolBackwardTraining(
  b: Backend,
  dPooled: GPUBuffer,
  x: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  affineParams: { weight: GPUBuffer; bias: GPUBuffer } | null,
  sums: GPUBuffer,
  dx: GPUBuffer,
  batch: number,
  channels: number,
  height: number,
  width: number,
  eps: number,
  options: BatchNormOptions = {},
): void {
  const p = pooledChunking(b, batch, channels, height, width);
  const params = affineParams ? [affineParams.weight, affineParams.bias] : [];
  const count = batch * height * width;
  const walk = pooledWalk(b, p, channels, options);
  const walked = walkedPass(walk, options);
  const partial = walked ? null : b.pool.acquire(channels * p.chunks * 2 * F32);
  if (partial) {
    b.dispatch(
      batchNormReluMaxPoolBackwardPartialKernel(affineParams !== null),
      [dPooled, x, mean, invStd, ...params, partial],
      pooledUniforms(batch, channels, p, p.chunks, count, eps, 0),
      grid1d(p.chunks * channels, 64),
    );
  }
  b.dispatch(
    batchNormReluMaxPoolBackwardFusedKernel(
      affineParams !== null,
      walk.segments !== null,
      walked,
      walk.narrow,
    ),
    [dPooled, x, mean, invStd, ...params, ...(partial ? [partial] : []), dx, sums],
    pooledUniforms(batch, channels, walk, p.chunks, count, eps, 0),
    fusedGrid(channels, walk),
  );
  if (partial) b.pool.release(partial);
}

/**
 * Training-mode batch norm backward to the input and the sums (sums[c] = sum(dy), sums[channels +
 * c] = sum(dy * xhat), for the weight and bias gradients), dy masked by `options.reluOutput` > 0
 * when given, or by the ReLU mask recomputed from x with `options.reluFromInput` (fused passes). The chunked variant runs two passes (chunk partials, then sums and dx fused, one
 * workgroup per channel); otherwise {@link batchNormBackwardSums} then
 * {@link batchNormBackwardInput}.
 */
export function batchNormBackwardTraining(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  mean: GPUBuffer,
  invStd: GPUBuffer,
  weight: GPUBuffer | null,
  sums: GPUBuffer,
  dx: GPUBuffer,
  batch: number,
  channels: number,
  spatial: number,
  eps: number,
  options: BatchNormOptions = {},
): void {
  const stats = { mean, stat: invStd, fromVariance: false };
  if (!bnFused(b, channels, options)) {
    if (options.residualGradient) {
      throw new Error("batchNormBackwardTraining: a residual's gradient needs the fused passes");
    }
    if (options.reluFromInput && !options.reluOutput) {
      throw new Error(
        "batchNormBackwardTraining: the unfused passes read the ReLU mask from reluOutput",
      );
    }
    batchNormBackwardSums(b, dy, x, stats, sums, batch, channels, spatial, eps, options);
    batchNormBackwardInput(
      b,
      dy,
      x,
      stats,
      weight,
      sums,
      dx,
      batch,
      channels,
      spatial,
      eps,
      options,
    );
    return;
  }
  const k = bnChunking(b, batch, channels, spatial);
  const relu = options.reluOutput ?? null;
  const fromInput = options.reluFromInput ?? null;
  if (fromInput && weight && !fromInput.bias) {
    throw new Error("batchNormBackwardTraining: reluFromInput of an affine batch norm needs bias");
  }
  if (fromInput && options.residualGradient) {
    // The ReLU's input held the residual too: its mask must be read from the output.
    throw new Error("batchNormBackwardTraining: a residual's gradient needs reluOutput");
  }
  const affineParams = fromInput && weight ? [weight, fromInput.bias!] : [];
  const mask = fromInput ? "input" : relu !== null;
  const walk = fusedWalk(b, k.total, BN_MIN_CHUNK / 4, channels, options);
  const walked = walkedPass(walk, options);
  const partial = walked ? null : b.pool.acquire(channels * k.chunks * 2 * F32);
  if (partial) {
    b.dispatch(
      batchNormBackwardPartialKernel(k.vec4, mask, weight !== null),
      fromInput
        ? [dy, x, mean, invStd, ...affineParams, partial]
        : relu
        ? [dy, x, relu, mean, partial]
        : [dy, x, mean, partial],
      bnChunkUniforms(batch, channels, k),
      grid1d(k.chunks * channels, 64),
    );
  }
  const buffers = relu && !fromInput ? [dy, x, relu, mean, invStd] : [dy, x, mean, invStd];
  if (weight) buffers.push(weight);
  if (fromInput && weight) buffers.push(fromInput.bias!);
  if (partial) buffers.push(partial);
  buffers.push(dx, sums);
  if (options.residualGradient) buffers.push(options.residualGradient);
  b.dispatch(
    batchNormBackwardFusedKernel(
      k.vec4,
      weight !== null,
      mask,
      walk.segments !== null,
      walked,
      walk.narrow,
      !!options.residualGradient,
    ),
    buffers,
    fusedUniforms(batch, channels, k, walk, batch * spatial, eps, 0),
    fusedGrid(channels, walk),
  );
  if (partial) b.pool.release(partial);
}

/** sums[c] = sum(dy), sums[channels + c] = sum(dy * xhat). */
export function batchNormBackwardSums(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  stats: BatchNormStatBuffers,
  sums: GPUBuffer,
  batch: number,
  channels: number,
  spatial: number,
  eps: number,
  options: BatchNormOptions = {},
): void {
  if (bnVariant(b, channels, options) === "chunked") {
    const k = bnChunking(b, batch, channels, spatial);
    const partial = b.pool.acquire(channels * k.chunks * 2 * F32);
    const relu = options.reluOutput ?? null;
    b.dispatch(
      batchNormBackwardPartialKernel(k.vec4, relu !== null),
      relu ? [dy, x, relu, stats.mean, partial] : [dy, x, stats.mean, partial],
      bnChunkUniforms(batch, channels, k),
      grid1d(k.chunks * channels, 64),
    );
    b.dispatch(
      batchNormBackwardFinalizeKernel(stats.fromVariance),
      [partial, stats.stat, sums],
      new Uniforms(3).u32(channels).u32(k.chunks).f32(eps).bytes,
      grid1d(channels),
    );
    b.pool.release(partial);
    return;
  }
  const u = new Uniforms(5).u32(batch).u32(channels).u32(spatial).f32(eps).f32(0);
  const relu = options.reluOutput ?? null;
  b.dispatch(
    batchNormBackwardSumsKernel(stats.fromVariance, relu !== null),
    relu ? [dy, x, relu, stats.mean, stats.stat, sums] : [dy, x, stats.mean, stats.stat, sums],
    u.bytes,
    gridPerItem(channels),
  );
}

/** dx of batch norm (training: through the batch statistics; eval: a per-channel scale). */
export function batchNormBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  stats: BatchNormStatBuffers,
  weight: GPUBuffer | null,
  sums: GPUBuffer | null,
  dx: GPUBuffer,
  batch: number,
  channels: number,
  spatial: number,
  eps: number,
  options: BatchNormOptions = {},
): void {
  const n = batch * channels * spatial;
  const vec4 = spatial % 4 === 0 && bnVariant(b, channels, options) === "chunked";
  const count = vec4 ? n / 4 : n;
  const u = new Uniforms(5).u32(count).u32(channels).u32(vec4 ? spatial / 4 : spatial).f32(eps)
    .f32(batch * spatial);
  const relu = options.reluOutput ?? null;
  const buffers = relu ? [dy, x, relu, stats.mean, stats.stat] : [dy, x, stats.mean, stats.stat];
  if (weight) buffers.push(weight);
  if (sums) buffers.push(sums);
  buffers.push(dx);
  const kernel = vec4
    ? batchNormBackwardInputVec4Kernel(sums !== null, weight !== null, stats.fromVariance, !!relu)
    : batchNormBackwardInputKernel(sums !== null, weight !== null, stats.fromVariance, !!relu);
  b.dispatch(kernel, buffers, u.bytes, grid1d(count));
}

/** Geometry of a 2-D pooling window over [planes, inH, inW]. */
export interface Pool2dGeometry {
  planes: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  padH: number;
  padW: number;
}

function poolUniforms(g: Pool2dGeometry): Uint8Array {
  return new Uniforms(11).u32(g.planes).u32(g.inH).u32(g.inW).u32(g.outH).u32(g.outW).u32(g.kH)
    .u32(g.kW).u32(g.strideH).u32(g.strideW).u32(g.padH).u32(g.padW).bytes;
}

/**
 * Pooling / resize implementations: "generic" (one thread per element, any window), "2x2"
 * (max-pool 2x2 stride 2 without padding, nearest x2 upsampling; width % 4 == 0; vec4 rows) and
 * "3x3s2" (max-pool 3x3 stride 2 padding 1, the ResNet stem's; backward only, one thread per 2x2
 * input block; the forward is the generic kernel).
 */
export type SpatialVariant = "generic" | "2x2" | "3x3s2";

/** Options of the pooling and resize launchers. */
export interface SpatialOptions {
  /** Force an implementation (tests, benchmarks); default: "2x2" or "3x3s2" where it applies. */
  variant?: SpatialVariant;
}

/** The max-pool implementation used for a geometry. */
export function maxPool2dVariant(g: Pool2dGeometry, options: SpatialOptions = {}): SpatialVariant {
  const fits = g.kH === 2 && g.kW === 2 && g.strideH === 2 && g.strideW === 2 && g.padH === 0 &&
    g.padW === 0 && g.inW % 4 === 0 && g.outW === g.inW / 2 && g.outH === Math.floor(g.inH / 2);
  if (fits && (options.variant ?? "2x2") === "2x2") return "2x2";
  const fits3 = g.kH === 3 && g.kW === 3 && g.strideH === 2 && g.strideW === 2 && g.padH === 1 &&
    g.padW === 1 && g.outH === Math.ceil(g.inH / 2) && g.outW === Math.ceil(g.inW / 2);
  const wanted = options.variant ?? (pool3x3ByDefault ? "3x3s2" : "generic");
  return fits3 && wanted === "3x3s2" ? "3x3s2" : "generic";
}

/** Whether the 2x2 max-pool kernels take two column quads a thread (whole pairs in each row). */
function pool2x2Pairs(g: Pool2dGeometry): boolean {
  return g.inW % 8 === 0;
}

function quadUniforms(total: number, inH: number, outH: number, inW: number): Uint8Array {
  return new Uniforms(5).u32(total).u32(inH).u32(outH).u32(inW / 4).u32(inW).bytes;
}

/** y = max-pool(x); argmax (u32) records the winning input position per output. */
export function maxPool2dForward(
  b: Backend,
  x: GPUBuffer,
  y: GPUBuffer,
  argmax: GPUBuffer,
  g: Pool2dGeometry,
  options: SpatialOptions = {},
): void {
  if (maxPool2dVariant(g, options) === "2x2") {
    const pairs = pool2x2Pairs(g);
    const total = g.planes * g.outH * (g.inW / (pairs ? 8 : 4));
    b.dispatch(
      maxPool2x2ForwardKernel(pairs),
      [x, y, argmax],
      quadUniforms(total, g.inH, g.outH, g.inW),
      grid1d(total),
    );
    return;
  }
  b.dispatch(
    maxPool2dForwardKernel(),
    [x, y, argmax],
    poolUniforms(g),
    grid1d(g.planes * g.outH * g.outW),
  );
}

/** dx of max-pool from dy and the saved argmax. */
export function maxPool2dBackward(
  b: Backend,
  dy: GPUBuffer,
  argmax: GPUBuffer,
  dx: GPUBuffer,
  g: Pool2dGeometry,
  options: SpatialOptions = {},
): void {
  if (maxPool2dVariant(g, options) === "2x2") {
    const pairs = pool2x2Pairs(g);
    const total = g.planes * Math.ceil(g.inH / 2) * (g.inW / (pairs ? 8 : 4));
    b.dispatch(
      maxPool2x2BackwardKernel(pairs),
      [dy, argmax, dx],
      quadUniforms(total, g.inH, g.outH, g.inW),
      grid1d(total),
    );
    return;
  }
  if (maxPool2dVariant(g, options) === "3x3s2") {
    b.dispatch(
      maxPool3x3s2BackwardKernel(),
      [dy, argmax, dx],
      poolUniforms(g),
      grid1d(g.planes * g.outH * g.outW),
    );
    return;
  }
  b.dispatch(
    maxPool2dBackwardKernel(),
    [dy, argmax, dx],
    poolUniforms(g),
    grid1d(g.planes * g.inH * g.inW),
  );
}

/** Geometry of a resize over [planes, inH, inW] -> [planes, outH, outW]. */
export interface ResizeGeometry {
  planes: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  /** Source step per output pixel (in/out, or 1/scaleFactor when a factor was given). */
  scaleH: number;
  scaleW: number;
}

function resizeUniforms(g: ResizeGeometry): Uint8Array {
  return new Uniforms(7).u32(g.planes).u32(g.inH).u32(g.inW).u32(g.outH).u32(g.outW).f32(g.scaleH)
    .f32(g.scaleW).bytes;
}

/** The resize implementation used for a mode and geometry. */
export function resizeVariant(
  mode: ResizeMode,
  g: ResizeGeometry,
  options: SpatialOptions = {},
): SpatialVariant {
  const fits = mode === "nearest" && g.scaleH === 0.5 && g.scaleW === 0.5 &&
    g.outH === 2 * g.inH && g.outW === 2 * g.inW && g.inW % 4 === 0;
  return fits && (options.variant ?? "2x2") === "2x2" ? "2x2" : "generic";
}

/** y = resize(x). */
export function resizeForward(
  b: Backend,
  mode: ResizeMode,
  x: GPUBuffer,
  y: GPUBuffer,
  g: ResizeGeometry,
  options: SpatialOptions = {},
): void {
  if (resizeVariant(mode, g, options) === "2x2") {
    const total = g.planes * g.inH * (g.inW / 4);
    b.dispatch(
      upsample2xForwardKernel(),
      [x, y],
      quadUniforms(total, g.inH, g.outH, g.inW),
      grid1d(total),
    );
    return;
  }
  b.dispatch(
    resizeForwardKernel(mode),
    [x, y],
    resizeUniforms(g),
    grid1d(g.planes * g.outH * g.outW),
  );
}

/** dx of resize. */
export function resizeBackward(
  b: Backend,
  mode: ResizeMode,
  dy: GPUBuffer,
  dx: GPUBuffer,
  g: ResizeGeometry,
  options: SpatialOptions = {},
): void {
  if (resizeVariant(mode, g, options) === "2x2") {
    const total = g.planes * g.inH * (g.inW / 4);
    b.dispatch(
      upsample2xBackwardKernel(),
      [dy, dx],
      quadUniforms(total, g.inH, g.outH, g.inW),
      grid1d(total),
    );
    return;
  }
  b.dispatch(
    resizeBackwardKernel(mode),
    [dy, dx],
    resizeUniforms(g),
    grid1d(g.planes * g.inH * g.inW),
  );
}

// ---- 2x nearest upsampling followed by a conv (a decoder block): sub-pixel kernels -------------

/**
 * Whether the sub-pixel kernels (kernels/conv_subpixel.ts: the conv at the source resolution with
 * 2x2 filters per output parity, 4 multiply-adds per output instead of 9) run a 2x nearest
 * upsampling + 3x3 conv pass: when the ubo variant is the plain conv's choice for that pass (the
 * same uniform-window structure; on adapters where the tuner picks another variant the two ops run
 * in turn), with an even height and a width divisible by 8 (`g` is the conv's geometry on the
 * upsampled map).
 */
export function upsampleConvFused(
  b: Backend,
  pass: ConvPass,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): boolean {
  return conv2dVariant(b, pass, g, options) === "ubo" && g.inH % 2 === 0 && g.inW % 8 === 0 &&
    subpixelApplicable(b, { W: g.inW / 2 });
}

function upsampleGeometry(g: Conv2dGeometry): ResizeGeometry {
  return {
    planes: g.batch * g.inC,
    inH: g.inH / 2,
    inW: g.inW / 2,
    outH: g.inH,
    outW: g.inW,
    scaleH: 0.5,
    scaleW: 0.5,
  };
}

/** The source map's shape of an upsample + conv whose conv geometry is `g`. */
function subpixelShape(g: Conv2dGeometry) {
  return { batch: g.batch, inC: g.inC, outC: g.outC, H: g.inH / 2, W: g.inW / 2 };
}

/**
 * y = conv2d(upsample2x(x), w) + bias, x [batch, inC, inH / 2, inW / 2] where `g` is the conv's
 * geometry on the upsampled map (nearest, as torch.nn.Upsample(scale_factor=2)). The sub-pixel
 * kernel never forms the upsampled map and does 4 multiply-adds per output instead of 9 (see
 * {@link upsampleConvFused}); other shapes and variants upsample into a temporary buffer first.
 * Returns y's statistics partials as {@link conv2dForward} does.
 */
export function upsampleConv2dForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvForwardOptions = {},
): ChannelStatistics | null {
  if (options.activation) {
    // The sub-pixel stores take no activation.
    return convThenActivation(
      b,
      g,
      options.activation,
      y,
      (out, plain) => upsampleConv2dForward(b, x, w, bias, out, g, { ...options, ...plain }),
    );
  }
  if (upsampleConvFused(b, "forward", g, options)) {
    const block = uboBlockFor(g.outC);
    return subpixelConv(b, x, w, bias, y, subpixelShape(g), block, undefined, options.statistics);
  }
  const upsampled = b.pool.acquire(g.batch * g.inC * g.inH * g.inW * F32);
  resizeForward(b, "nearest", x, upsampled, upsampleGeometry(g));
  const statistics = conv2dForward(b, upsampled, w, bias, y, g, options);
  b.pool.release(upsampled);
  return statistics;
}

/**
 * dx of {@link upsampleConv2dForward}, at the source resolution: upsampling's backward (each 2x2
 * block summed) folded into the kernel, which sums dy over 2x2 boxes first (kernels/wgsl/
 * conv_subpixel.ts, box form): 9 multiply-adds per source value and channel pair instead of 4 x 9.
 */
export function upsampleConv2dBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): void {
  if (upsampleConvFused(b, "backwardInput", g, options)) {
    const block = subpixelBackwardBlockFor(b, g.inC, uboBlockFor(g.inC));
    subpixelConvBackwardInput(b, dy, w, dx, subpixelShape(g), block);
    return;
  }
  const upsampled = b.pool.acquire(g.batch * g.inC * g.inH * g.inW * F32);
  conv2dBackwardInput(b, dy, w, upsampled, g, options);
  resizeBackward(b, "nearest", upsampled, dx, upsampleGeometry(g));
  b.pool.release(upsampled);
}

/** dw of {@link upsampleConv2dForward}, x at the source resolution. */
export function upsampleConv2dBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
  options: ConvOptions = {},
): void {
  if (upsampleConvFused(b, "backwardWeight", g, options)) {
    subpixelConvBackwardWeight(b, dy, x, dw, subpixelShape(g));
    return;
  }
  const upsampled = b.pool.acquire(g.batch * g.inC * g.inH * g.inW * F32);
  resizeForward(b, "nearest", x, upsampled, upsampleGeometry(g));
  conv2dBackwardWeight(b, dy, upsampled, dw, g, options);
  b.pool.release(upsampled);
}

/** Geometry of a warp: image [batch, channels, height, width], flow [batch, 2, height, width]. */
export interface WarpGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  /** Largest shift in pixels; the flow is clamped to +-maxShift. */
  maxShift: number;
}

// Every warp kernel runs one thread per pixel with the same uniforms.
function dispatchWarp(b: Backend, source: KernelSource, buffers: GPUBuffer[], g: WarpGeometry) {
  const uniforms = new Uniforms(6).u32(g.batch).u32(g.channels).u32(g.height).u32(g.width)
    .f32(g.maxShift).u32(Math.ceil(g.maxShift) + 1).bytes;
  b.dispatch(source, buffers, uniforms, grid1d(g.batch * g.height * g.width));
}

/** y = image bilinearly sampled at each pixel plus its flow (x shift in channel 0, y in 1). */
export function warpForward(
  b: Backend,
  image: GPUBuffer,
  flow: GPUBuffer,
  y: GPUBuffer,
  g: WarpGeometry,
): void {
  dispatchWarp(b, warpForwardKernel(), [image, flow, y], g);
}

/** dflow of the warp. */
export function warpBackwardFlow(
  b: Backend,
  dy: GPUBuffer,
  image: GPUBuffer,
  flow: GPUBuffer,
  dflow: GPUBuffer,
  g: WarpGeometry,
): void {
  dispatchWarp(b, warpBackwardFlowKernel(), [dy, image, flow, dflow], g);
}

/** dimage of the warp (gathered over the outputs within reach of each input pixel). */
export function warpBackwardImage(
  b: Backend,
  dy: GPUBuffer,
  flow: GPUBuffer,
  dimage: GPUBuffer,
  g: WarpGeometry,
): void {
  dispatchWarp(b, warpBackwardImageKernel(), [dy, flow, dimage], g);
}

/** c[M, N] = op(a) op(b) (+ bias[N]); see matmulKernel for the stored layouts. */
export function matmul(
  b: Backend,
  a: GPUBuffer,
  bMatrix: GPUBuffer,
  bias: GPUBuffer | null,
  c: GPUBuffer,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): void {
  const blocksN = Math.ceil(n / 4);
  const blocks = Math.ceil(m / 4) * blocksN;
  const loads = matmulLoads(m, n, k, transA, transB);
  // Few outputs over a long K (a Linear layer on a flattened conv map: 64 x 34 over K = 8192 is 144
  // threads) leave most of the machine idle: split K, then add the splits up (in fours where the
  // kernel takes 4 k at a time).
  const target = b.isCpuRasterizer ? MATMUL_TARGET_THREADS_CPU : MATMUL_TARGET_THREADS_GPU;
  const align = loads.a === "k" || loads.b === "k" ? 4 : 1;
  const { kPerSplit, splits } = kSplits(k, blocks, target, MATMUL_MIN_K, align);
  const workgroup = b.isCpuRasterizer ? MATMUL_WORKGROUP_CPU : WORKGROUP_SIZE;
  intoSplits(b, splits, m * n, c, (out) => {
    b.dispatch(
      matmulKernel(transA, transB, bias !== null, loads.a, loads.b, workgroup, n % 4 === 0),
      bias ? [a, bMatrix, bias, out] : [a, bMatrix, out],
      new Uniforms(5).u32(m).u32(n).u32(k).u32(blocksN).u32(kPerSplit).bytes,
      grid1d(blocks * splits, workgroup),
    );
  });
}

/**
 * Threads a matmul aims for before it splits K: a CPU rasterizer's two workgroups (its cores), a
 * GPU's tens of thousands (on an H200 the paper autoencoder's 144-thread products over K = 8192
 * took 5 of its step's 74 ms).
 */
const MATMUL_TARGET_THREADS_CPU = 512;
/** See {@link MATMUL_TARGET_THREADS_CPU}. */
const MATMUL_TARGET_THREADS_GPU = 16384;
/** Shortest K range of one split. */
const MATMUL_MIN_K = 256;
/**
 * Threads per matmul workgroup on CPU rasterizers: llvmpipe runs a workgroup on one core, and the
 * demo autoencoder's Linear products have 72-1152 threads (one to five 256-thread workgroups).
 * Session 18, its six products at batch 32: 2.45-2.75 ms with 256, 2.05-2.26 with 16.
 */
const MATMUL_WORKGROUP_CPU = 16;

/** Hyper-parameters of one Adam step (step counts from 1). */
export interface AdamStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

/** One fused Adam update of a parameter tensor of n elements. */
export function adam(
  b: Backend,
  param: GPUBuffer,
  grad: GPUBuffer,
  m: GPUBuffer,
  v: GPUBuffer,
  n: number,
  h: AdamStep,
): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  // Bias corrections in f64 on the CPU, as torch computes them in Python floats.
  const biasCorrection1 = 1 - h.beta1 ** h.step;
  const biasCorrection2 = 1 - h.beta2 ** h.step;
  const u = new Uniforms(7).u32(count).f32(h.beta1).f32(h.beta2).f32(h.eps).f32(h.weightDecay)
    .f32(h.lr / biasCorrection1).f32(Math.sqrt(biasCorrection2));
  b.dispatch(adamKernel(vec4), [param, grad, m, v], u.bytes, grid1d(count));
}

/** One tensor of a multi-tensor Adam step: buffers and element count. */
export interface AdamTensor {
  param: GPUBuffer;
  grad: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
  n: number;
}

/** Tensors per multi-tensor Adam dispatch on this backend (4 storage bindings each). */
export function adamGroupSize(b: Backend): number {
  const limit = b.device.limits.maxStorageBuffersPerShaderStage;
  return Math.max(1, Math.min(ADAM_MULTI_MAX, Math.floor(limit / 4)));
}

/**
 * On CPU rasterizers, tensors of at least this many elements take an Adam dispatch of their own
 * rather than a multi-tensor one. llvmpipe runs every branch of the multi-tensor kernel in every
 * thread (masked), so a tensor updated among 8 costs about what 8 such updates would, while a
 * dispatch costs 50-100 us of a step: alone pays from about 2000 elements. The V/A regressor's 110
 * tensors (ResNet34 w1/8: 26 of at least 2048 elements hold 97% of its 335594) took 10.0-11.6 ms
 * an update in 14 multi-tensor dispatches, 6.3-8.0 with those of 1024 elements or more alone and
 * 7.0-8.6 from 4096 (round 19); with this size its training step took 0.958 of the time. Real GPUs
 * branch per workgroup for free: there every tensor is grouped.
 */
export const ADAM_ALONE_FROM_CPU = 2048;

/** The size from which a tensor's Adam update runs alone on `b` ({@link ADAM_ALONE_FROM_CPU}). */
export function adamAloneFrom(b: Backend): number {
  return b.isCpuRasterizer ? ADAM_ALONE_FROM_CPU : Infinity;
}

/**
 * The Adam update of several tensors that share a step count: groups of up to
 * {@link adamGroupSize} tensors per dispatch (vec4 tensors and the others grouped apart), large
 * tensors alone on CPU rasterizers ({@link adamAloneFrom}); the results equal one {@link adam}
 * call per tensor.
 */
export function adamMulti(b: Backend, tensors: readonly AdamTensor[], h: AdamStep): void {
  const biasCorrection1 = 1 - h.beta1 ** h.step;
  const biasCorrection2 = 1 - h.beta2 ** h.step;
  const group = adamGroupSize(b);
  const alone = adamAloneFrom(b);
  for (const vec4 of [true, false]) {
    const list = tensors.filter((t) => t.n > 0 && (t.n % 4 === 0) === vec4);
    // Large tensors take a dispatch of their own where grouping costs more than a dispatch.
    for (const t of list.filter((t) => t.n >= alone)) adam(b, t.param, t.grad, t.m, t.v, t.n, h);
    const grouped = list.filter((t) => t.n < alone);
    for (let first = 0; first < grouped.length; first += group) {
      const part = grouped.slice(first, first + group);
      if (part.length === 1) {
        const t = part[0];
        adam(b, t.param, t.grad, t.m, t.v, t.n, h);
        continue;
      }
      const u = new Uniforms(6 + 2 * part.length).f32(h.beta1).f32(h.beta2).f32(h.eps)
        .f32(h.weightDecay).f32(h.lr / biasCorrection1).f32(Math.sqrt(biasCorrection2));
      let start = 0;
      const buffers: GPUBuffer[] = [];
      for (const t of part) {
        const count = vec4 ? t.n / 4 : t.n;
        u.u32(start).u32(count);
        start += Math.ceil(count / WORKGROUP_SIZE) * WORKGROUP_SIZE;
        buffers.push(t.param, t.grad, t.m, t.v);
      }
      b.dispatch(adamMultiKernel(vec4, part.length), buffers, u.bytes, grid1d(start));
    }
  }
}

/**
 * out = g[0] * scale * (input - target), times `weights` when given; with `sigmoidInput` also times
 * input * (1 - input) (the gradient carried through the sigmoid whose output `input` is).
 */
export function mseBackward(
  b: Backend,
  input: GPUBuffer,
  target: GPUBuffer,
  g: GPUBuffer,
  out: GPUBuffer,
  n: number,
  scale: number,
  weights: GPUBuffer | null = null,
  sigmoidInput = false,
): void {
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  b.dispatch(
    mseBackwardKernel(weights !== null, vec4, sigmoidInput),
    weights ? [input, target, weights, g, out] : [input, target, g, out],
    new Uniforms(2).u32(count).f32(scale).bytes,
    grid1d(count),
  );
}

export { WORKGROUP_SIZE };

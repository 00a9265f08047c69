/**
 * Reduction launchers (sums over axes and whole arrays), shared by kernels/ops.ts and the conv
 * variants' split-K partial sums.
 */

import type { Backend } from "./backend.ts";
import { grid1d, Uniforms } from "./wgsl/common.ts";
import { reduceAxisKernel, reduceMiddleKernel, sumRunsKernel } from "./wgsl/reduce.ts";

const F32 = 4;

/** Grid for one workgroup per item (reductions), folded into 2-D past 65535. */
function gridPerItem(items: number): [number, number] {
  return grid1d(items, 1);
}

/**
 * out[m] = scale * sum over outer and inner of x viewed as [outer, mid, inner] (or of
 * (x - y)^2 when y is given, times `weights` when given too). Scalar loads unless `vec4: true`:
 * the vec4 kernel sums in another order. One workgroup per m: for per-channel sums of activations
 * (conv bias gradients) see kernels/ops.ts `channelSums`, which splits each channel over many
 * threads.
 */
export function reduceMiddle(
  b: Backend,
  x: GPUBuffer,
  out: GPUBuffer,
  outer: number,
  mid: number,
  inner: number,
  scale = 1,
  y: GPUBuffer | null = null,
  total = outer * mid * inner,
  options: { vec4?: boolean; weights?: GPUBuffer | null } = {},
): void {
  const weights = options.weights ?? null;
  if (weights && !y) throw new Error("reduceMiddle: weights need y (a weighted squared error)");
  // vec4 loads (when asked for) when rows and the total are whole vec4s.
  const vec4 = (options.vec4 ?? false) && inner % 4 === 0 && total % 4 === 0;
  const k = vec4 ? 4 : 1;
  const u = new Uniforms(5).u32(outer).u32(mid).u32(inner / k).u32(total / k).f32(scale);
  const inputs = y ? (weights ? [x, y, weights] : [x, y]) : [x];
  b.dispatch(
    reduceMiddleKernel(y !== null, vec4, weights !== null),
    [...inputs, out],
    u.bytes,
    gridPerItem(mid),
  );
}

/** out = scale * sum along the middle axis of x viewed as [outer, length, inner]. */
export function reduceAxis(
  b: Backend,
  x: GPUBuffer,
  out: GPUBuffer,
  outer: number,
  length: number,
  inner: number,
  scale = 1,
): void {
  const u = new Uniforms(4).u32(outer).u32(length).u32(inner).f32(scale);
  b.dispatch(reduceAxisKernel(), [x, out], u.bytes, grid1d(outer * inner));
}

/** Elements summed by one workgroup in each stage of a full reduction. */
const SUM_CHUNK = 4096;
/**
 * Threads of the first stage of a full reduction on CPU rasterizers (each sums a run serially):
 * enough to share among the cores, few enough for one workgroup to add their sums.
 */
const SUM_RUNS = 512;

let sumRunsOverride: boolean | null = null;

/**
 * Force the first stage of {@link sumAll}: serial runs (true, CPU rasterizers' default), workgroups
 * (false, GPUs'), or the adapter's default (null). For tests (kernels/ops.ts setReductionChunking).
 */
export function setSumRuns(enabled: boolean | null): void {
  sumRunsOverride = enabled;
}

/**
 * out[0] = scale * sum of x[0..n) (or of (x - y)^2, times `weights` when given), in stages of one
 * workgroup per chunk, so a large array keeps every core busy instead of one workgroup walking it
 * all; on CPU rasterizers the first stage is {@link SUM_RUNS} serial runs instead (sumRunsKernel:
 * the demo's image loss, 393K floats: 1.54 -> 0.34 ms, a copy of them 0.5-0.7).
 */
export function sumAll(
  b: Backend,
  x: GPUBuffer,
  out: GPUBuffer,
  n: number,
  scale = 1,
  y: GPUBuffer | null = null,
  weights: GPUBuffer | null = null,
): void {
  if (n <= SUM_CHUNK) {
    reduceMiddle(b, x, out, 1, 1, Math.max(n, 1), scale, y, n, { weights });
    return;
  }
  if (sumRunsOverride ?? b.isCpuRasterizer) {
    // Runs summed serially by SUM_RUNS threads (no barriers), then their sums in one workgroup.
    const vec4 = n % 4 === 0;
    const total = vec4 ? n / 4 : n;
    const runLength = Math.ceil(total / SUM_RUNS);
    const runs = Math.ceil(total / runLength);
    const partial = b.pool.acquire(runs * F32);
    const inputs = y ? (weights ? [x, y, weights] : [x, y]) : [x];
    b.dispatch(
      sumRunsKernel(y !== null, vec4, weights !== null),
      [...inputs, partial],
      new Uniforms(3).u32(runs).u32(runLength).u32(total).bytes,
      grid1d(runs),
    );
    sumAll(b, partial, out, runs, scale);
    b.pool.release(partial);
    return;
  }
  const chunk = Math.max(SUM_CHUNK, Math.ceil(n / 65535));
  const rows = Math.ceil(n / chunk);
  const partial = b.pool.acquire(rows * F32);
  reduceMiddle(b, x, partial, 1, rows, chunk, 1, y, n, { vec4: true, weights });
  sumAll(b, partial, out, rows, scale);
  b.pool.release(partial);
}

/**
 * How a product's reduction of length `k` splits over more threads when `parallel` threads (or
 * workgroups) would run it unsplit: into up to `target / parallel` splits of at least `minK` each
 * (fewer when k is short), each split's range a multiple of `align`. The splits' partial results
 * are added up by {@link intoSplits}.
 */
export function kSplits(
  k: number,
  parallel: number,
  target: number,
  minK: number,
  align = 1,
): { kPerSplit: number; splits: number } {
  const wanted = Math.max(1, Math.min(Math.ceil(target / parallel), Math.floor(k / minK)));
  const kPerSplit = Math.max(1, Math.ceil(k / wanted / align) * align);
  // One split also for k = 0 (a product that is its bias alone).
  return { kPerSplit, splits: Math.max(1, Math.ceil(k / kPerSplit)) };
}

/**
 * Record a split product into `out` (`size` floats): `record` writes `splits` partial results
 * [splits, size] into the buffer it is given, which is `out` itself for one split, else a pooled
 * scratch buffer whose partials are then summed into `out`.
 */
export function intoSplits(
  b: Backend,
  splits: number,
  size: number,
  out: GPUBuffer,
  record: (target: GPUBuffer) => void,
): void {
  if (splits === 1) {
    record(out);
    return;
  }
  const partials = b.pool.acquire(splits * size * F32);
  record(partials);
  reduceAxis(b, partials, out, 1, splits, size);
  b.pool.release(partials);
}

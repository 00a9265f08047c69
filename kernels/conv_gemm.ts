/**
 * Launchers of the "gemm", "gemm-wide" and "gemm-flat" conv variants (kernels/wgsl/conv_gemm.ts):
 * implicit GEMM with workgroup tiles (64 x 64, 128 x 128 or 64 x 128 of the product per
 * workgroup), any kernel size, stride
 * and padding; forward, backward to the input and backward to the weight (K split over workgroups,
 * partial products summed by reduceAxis).
 */

import type { Backend } from "./backend.ts";
import { envVar } from "./env.ts";
import { Uniforms } from "./wgsl/common.ts";
import {
  convGemmKernel,
  GEMM_TILE,
  GEMM_TILE_FLAT,
  GEMM_TILE_WIDE,
  type GemmConvPass,
  gemmThreads,
  type GemmTile,
  gemmTileValid,
  gemmWorkgroupBytes,
} from "./wgsl/conv_gemm.ts";
import type { Conv2dGeometry } from "./conv_geometry.ts";
import { intoSplits, kSplits } from "./reductions.ts";

/**
 * Workgroups the weight gradient aims for when it splits K: enough to fill a large GPU (an H100
 * holds ~8 of these 256-thread workgroups on each of 132 multiprocessors).
 */
const GEMM_TARGET_WORKGROUPS = 1024;
/** Shortest K range of one split (512: 32 or 64 staged steps), so partial products stay few. */
const GEMM_MIN_SPLIT_K = 512;

/** The gemm conv variants (kernels/ops.ts ConvVariant). */
export type GemmVariant = "gemm" | "gemm-wide" | "gemm-flat";

/** The tiling of a gemm variant (VA_GEMM_WIDE_TILE overrides gemm-wide's). */
export function gemmTile(variant: GemmVariant): GemmTile {
  if (variant === "gemm-wide") return wideTileOverride() ?? GEMM_TILE_WIDE;
  return variant === "gemm-flat" ? GEMM_TILE_FLAT : GEMM_TILE;
}

/**
 * A tiling written as bench/gemm_sweep.ts names it (`gemmTileName`: "MxNxK/TMxTN", then "s"
 * for strided quads and "d" for double buffering: "128x128x16/8x8sd"), or null if the text is not
 * one or the tiling is not valid.
 */
export function parseGemmTile(text: string): GemmTile | null {
  const match = /^(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)(s?)(d?)$/.exec(text.trim());
  if (!match) return null;
  const [m, n, k, threadM, threadN] = match.slice(1, 6).map(Number);
  const tile: GemmTile = { m, n, k, threadM, threadN, strided: match[6] === "s" };
  if (match[7] === "d") tile.doubleBuffer = true;
  return gemmTileValid(tile) ? tile : null;
}

let wideOverride: GemmTile | null | undefined;

/**
 * `VA_GEMM_WIDE_TILE=MxNxK/TMxTN[s][d]` replaces the "gemm-wide" tiling (bench/device/run.sh sets
 * the sweep's fastest, so the tuned step measures it). An invalid value is an error, not ignored.
 * Autotune caches name variants, not tilings: tune again after changing it.
 */
function wideTileOverride(): GemmTile | null {
  if (wideOverride === undefined) {
    const value = envVar("VA_GEMM_WIDE_TILE");
    wideOverride = value ? parseGemmTile(value) : null;
    if (value && !wideOverride) {
      throw new Error(
        `VA_GEMM_WIDE_TILE=${value}: expected a valid tiling such as 128x128x8/8x8s (bench/gemm_sweep.ts names them)`,
      );
    }
  }
  return wideOverride;
}

/**
 * Tilings worth timing on a real GPU (bench/gemm_sweep.ts), by name (`gemmTileName`). Round
 * 14 (bench/README.md) swept ten on an NVIDIA H200 and kept the four fastest in total; round 18
 * swept those with double-buffered and 128-thread ones, and left out the two double-buffered ones
 * that were slower than their single-buffered twins (64x64x16/4x4d 36.6 ms in total against 26.2,
 * 128x64x16/8x8sd 65.7 against 31.3; 128x128x8/8x8sd stays, as fast as gemm-wide's tiling).
 */
export const GEMM_SWEEP_TILES: Record<string, GemmTile> = {
  "64x64x16/4x4 (gemm)": GEMM_TILE,
  "64x64x16/8x8s": { m: 64, n: 64, k: 16, threadM: 8, threadN: 8, strided: true },
  "64x128x16/8x8s (gemm-flat)": GEMM_TILE_FLAT,
  "128x64x16/8x8s": { m: 128, n: 64, k: 16, threadM: 8, threadN: 8, strided: true },
  "128x128x8/8x8": { m: 128, n: 128, k: 8, threadM: 8, threadN: 8 },
  "128x128x8/8x8s (gemm-wide)": GEMM_TILE_WIDE,
  "128x128x8/8x8sd": { ...GEMM_TILE_WIDE, doubleBuffer: true },
};

/** The product's dimensions of a pass: C[M, N] = A[M, K] B[K, N]. */
export function gemmDimensions(
  pass: GemmConvPass,
  g: Conv2dGeometry,
): { M: number; N: number; K: number } {
  const taps = g.kH * g.kW;
  if (pass === "forward") {
    return { M: g.outC, N: g.batch * g.outH * g.outW, K: g.inC * taps };
  }
  if (pass === "backwardInput") {
    return { M: g.inC, N: g.batch * g.inH * g.inW, K: g.outC * taps };
  }
  return { M: g.outC, N: g.inC * taps, K: g.batch * g.outH * g.outW };
}

/** How a pass splits K: the K range per split and the number of splits (1 but for the weight). */
export function gemmSplits(
  pass: GemmConvPass,
  g: Conv2dGeometry,
  tile: GemmTile = GEMM_TILE,
): { kPerSplit: number; splits: number } {
  const { M, N, K } = gemmDimensions(pass, g);
  if (pass !== "backwardWeight") return { kPerSplit: K, splits: 1 };
  const tiles = Math.ceil(M / tile.m) * Math.ceil(N / tile.n);
  return kSplits(K, tiles, GEMM_TARGET_WORKGROUPS, GEMM_MIN_SPLIT_K, tile.k);
}

/**
 * Whether a gemm variant can run this pass and geometry on this backend (workgroup memory,
 * threads per workgroup, grid limits).
 */
export function gemmApplicable(
  b: Backend,
  pass: GemmConvPass,
  g: Conv2dGeometry,
  tile: GemmTile = GEMM_TILE,
): boolean {
  if (g.outH <= 0 || g.outW <= 0) return false;
  const { M, N } = gemmDimensions(pass, g);
  const limits = b.device.limits;
  if (
    gemmWorkgroupBytes(tile) > limits.maxComputeWorkgroupStorageSize ||
    gemmThreads(tile) > limits.maxComputeInvocationsPerWorkgroup
  ) return false;
  const limit = limits.maxComputeWorkgroupsPerDimension;
  return Math.ceil(N / tile.n) <= limit && Math.ceil(M / tile.m) <= limit &&
    gemmSplits(pass, g, tile).splits <= limit;
}

function dispatchGemm(
  b: Backend,
  pass: GemmConvPass,
  g: Conv2dGeometry,
  buffers: GPUBuffer[],
  bias: boolean,
  tile: GemmTile,
  splits: number,
  kPerSplit: number,
): void {
  const { M, N, K } = gemmDimensions(pass, g);
  const uniforms = new Uniforms(12).u32(g.batch).u32(g.inC).u32(g.inH).u32(g.inW).u32(g.outC)
    .u32(g.outH).u32(g.outW).u32(g.pad).u32(M).u32(N).u32(K).u32(kPerSplit).bytes;
  b.dispatch(
    convGemmKernel(pass, g.kH, g.kW, g.stride, bias, tile),
    buffers,
    uniforms,
    [Math.ceil(N / tile.n), Math.ceil(M / tile.m), splits],
  );
}

/** y = conv2d(x, w) + bias through the gemm kernel. */
export function gemmForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
  tile: GemmTile = GEMM_TILE,
): void {
  const { K } = gemmDimensions("forward", g);
  const buffers = bias ? [w, x, bias, y] : [w, x, y];
  dispatchGemm(b, "forward", g, buffers, bias !== null, tile, 1, K);
}

/** dx = conv2d backward to the input through the gemm kernel. */
export function gemmBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  tile: GemmTile = GEMM_TILE,
): void {
  const { K } = gemmDimensions("backwardInput", g);
  dispatchGemm(b, "backwardInput", g, [w, dy, dx], false, tile, 1, K);
}

/** dw = conv2d backward to the weight through the gemm kernel (split K, then summed). */
export function gemmBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
  tile: GemmTile = GEMM_TILE,
): void {
  const { kPerSplit, splits } = gemmSplits("backwardWeight", g, tile);
  intoSplits(b, splits, g.outC * g.inC * g.kH * g.kW, dw, (target) => {
    dispatchGemm(b, "backwardWeight", g, [dy, x, target], false, tile, splits, kPerSplit);
  });
}

/**
 * Implicit-GEMM convolution with workgroup-memory tiles (the "gemm" and "gemm-wide" conv variants),
 * for real GPUs.
 *
 * Each pass is one matrix product C[M, N] = A[M, K] * B[K, N] whose operands are gathered from the
 * NCHW tensors on the fly (no im2col buffer):
 * - forward: M = outC, N = batch * outH * outW, K = inC * kH * kW; A = w, B = x (gathered);
 * - backwardInput: M = inC, N = batch * inH * inW, K = outC * kH * kW; A = w (transposed),
 *   B = dy (gathered through the stride: taps that land between output pixels read zero);
 * - backwardWeight: M = outC, N = inC * kH * kW, K = batch * outH * outW; A = dy, B = x
 *   (gathered). K is long and M * N small, so K is split over workgroups (grid z) into partial
 *   products that the launcher sums.
 *
 * A workgroup of 256 threads computes a 64 x 64 tile of C, each thread a 4 x 4 block of it ("gemm"),
 * or a 128 x 128 tile, each thread 8 x 8 ("gemm-wide": twice the multiply-adds per workgroup-memory
 * read, for large layers). Per step along K (16 or 8) the workgroup stages a slice of A and one of
 * B in workgroup memory, loaded so that neighbouring threads read neighbouring addresses, and the next
 * step's operands are fetched into registers before the current step's multiply-adds (latency
 * hiding without a second tile buffer). Workgroup-memory tiling is the right structure on GPUs and
 * slow on CPU rasterizers (per-lane scalar loops there), so the autotuner offers this variant only
 * on real GPUs. The kernel size and stride are compiled in: the index arithmetic divides by
 * constants, which compilers turn into multiplies.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, memoizedTemplate } from "./common.ts";

/** Which pass a gemm kernel computes. */
export type GemmConvPass = "forward" | "backwardInput" | "backwardWeight";

/**
 * A workgroup's share of C and how it gets there: `m` x `n` of C (square here), K staged `k` at a
 * time, each of the 256 threads a `perThread` x `perThread` block. Every thread loads 4 values of
 * A and 4 of B per step in both tilings (m * k = n * k = 1024).
 */
export interface GemmTile {
  m: number;
  n: number;
  k: number;
  perThread: number;
}

/** 64 x 64 per workgroup, 4 x 4 per thread, K 16 per step: the "gemm" variant. */
export const GEMM_TILE: GemmTile = { m: 64, n: 64, k: 16, perThread: 4 };
/**
 * 128 x 128 per workgroup, 8 x 8 per thread, K 8 per step: the "gemm-wide" variant (twice the
 * multiply-adds per workgroup-memory read, a quarter as many workgroups).
 */
export const GEMM_TILE_WIDE: GemmTile = { m: 128, n: 128, k: 8, perThread: 8 };
/** Threads per workgroup (16 x 16). */
export const GEMM_WORKGROUP = 256;

/** Uniform layout of the gemm kernels (all u32). */
export const GEMM_UNIFORM_FIELDS = [
  "batch",
  "inC",
  "inH",
  "inW",
  "outC",
  "outH",
  "outW",
  "pad",
  "M",
  "N",
  "K",
  "kPerSplit",
] as const;

const GEMM_UNIFORMS = GEMM_UNIFORM_FIELDS.map((f) => `${f}: u32,`).join(" ");

// Workgroup tiles hold k K-rows of m / 4 vec4s; a row is padded by one vec4 so that the A-tile
// stores (threads K-rows apart) fall in different memory banks.
function paddedRow(tile: GemmTile): number {
  return tile.m / 4 + 1;
}

/**
 * The setup of a pass whose B columns are output or input pixels (forward, backwardInput): this
 * thread's column `col` (fixed for the whole K loop), its sample and its pixel in a map of `plane`.
 */
function pixelColumn(plane: string, tile: GemmTile): string {
  return `
  let col = n0 + lid % ${tile.n}u;
  let colValid = col < params.N;
  let plane = ${plane};
  let sample = select(0u, col / plane, colValid);
  let pixel = col % plane;`;
}

/** `target = array[index]` where `inside`, else 0, never reading out of bounds. */
function guardedLoad(target: string, array: string, index: string, inside: string): string {
  return `${target} = select(0.0, ${array}[select(0u, ${index}, ${inside})], ${inside});`;
}

/**
 * Per-pass WGSL: the setup before the K loop, one step's operand loads into registers (`ra`, `rb`)
 * and the store. A is loaded along K: `kA` = k0 + lid % k is this thread's K index in the step, its
 * rows m0 + lid / k + (256 / k) r. B is loaded along N (one fixed column, K rows lid / n +
 * (256 / n) r) or, for the weight, along K (the step's `kA`, four fixed columns).
 */
function passCode(pass: GemmConvPass, bias: boolean, tile: GemmTile): {
  setup: string;
  stepA: string;
  stepB: string;
  store: string;
} {
  // A along K and B along K: K index lid % k, rows or columns lid / k + (256 / k) r. B along N:
  // column lid % n, K rows lid / n + (256 / n) r.
  const aRow = `lid / ${tile.k}u + ${GEMM_WORKGROUP / tile.k}u * r`;
  const bRowAlongN = `lid / ${tile.n}u + ${GEMM_WORKGROUP / tile.n}u * r`;
  if (pass === "forward") {
    return {
      // B along N: this thread's column (fixed) and four K rows.
      setup: `${pixelColumn("params.outH * params.outW", tile)}
  let xBase = sample * params.inC * params.inH * params.inW;
  let ih0 = i32((pixel / params.outW) * STRIDE) - i32(params.pad);
  let iw0 = i32((pixel % params.outW) * STRIDE) - i32(params.pad);`,
      stepA: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let m = m0 + ${aRow};
      ra[r] = select(0.0, a[min(m, params.M - 1u) * params.K + min(kA, params.K - 1u)],
                     m < params.M && kA < kEnd);
    }`,
      stepB: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let k = k0 + ${bRowAlongN};
      let ic = k / KHW;
      let tap = k % KHW;
      let ih = ih0 + i32(tap / KW);
      let iw = iw0 + i32(tap % KW);
      let inside = colValid && k < kEnd && ih >= 0 && ih < i32(params.inH) && iw >= 0 &&
        iw < i32(params.inW);
      let index = xBase + (ic * params.inH + u32(max(ih, 0))) * params.inW + u32(max(iw, 0));
      ${guardedLoad("rb[r]", "bsrc", "index", "inside")}
    }`,
      store: `
fn storeC(m: u32, n: u32, value: f32) {
  if (m >= params.M || n >= params.N) { return; }
  let plane = params.outH * params.outW;
  out[((n / plane) * params.outC + m) * plane + n % plane] = value${bias ? " + bias[m]" : ""};
}`,
    };
  }
  if (pass === "backwardInput") {
    return {
      // B along N: this thread's input pixel n (fixed); dy is read where the stride lands on it.
      setup: `${pixelColumn("params.inH * params.inW", tile)}
  let dyBase = sample * params.outC * params.outH * params.outW;
  let ohNum0 = i32(pixel / params.inW + params.pad);
  let owNum0 = i32(pixel % params.inW + params.pad);`,
      stepA: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let m = m0 + ${aRow};
      let oc = kA / KHW;
      let index = (oc * params.inC + min(m, params.M - 1u)) * KHW + kA % KHW;
      let inside = m < params.M && kA < kEnd;
      ${guardedLoad("ra[r]", "a", "index", "inside")}
    }`,
      stepB: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let k = k0 + ${bRowAlongN};
      let oc = k / KHW;
      let tap = k % KHW;
      let ohNum = ohNum0 - i32(tap / KW);
      let owNum = owNum0 - i32(tap % KW);
      let oh = ohNum / i32(STRIDE);
      let ow = owNum / i32(STRIDE);
      let inside = colValid && k < kEnd && ohNum >= 0 && owNum >= 0 &&
        ohNum % i32(STRIDE) == 0 && owNum % i32(STRIDE) == 0 && oh < i32(params.outH) &&
        ow < i32(params.outW);
      let index = dyBase + (oc * params.outH + u32(max(oh, 0))) * params.outW + u32(max(ow, 0));
      ${guardedLoad("rb[r]", "bsrc", "index", "inside")}
    }`,
      store: `
fn storeC(m: u32, n: u32, value: f32) {
  if (m >= params.M || n >= params.N) { return; }
  let plane = params.inH * params.inW;
  out[((n / plane) * params.inC + m) * plane + n % plane] = value;
}`,
    };
  }
  return {
    // B along K: this thread's four columns (filter taps, fixed) and one K index per step, shared
    // with the A loads.
    setup: `
  var tapRow: array<i32, 4>;
  var tapCol: array<i32, 4>;
  var tapBase: array<u32, 4>;
  var tapValid: array<bool, 4>;
  for (var r = 0u; r < 4u; r = r + 1u) {
    let n = n0 + ${aRow};
    tapValid[r] = n < params.N;
    let tap = n % KHW;
    tapRow[r] = i32(tap / KW) - i32(params.pad);
    tapCol[r] = i32(tap % KW) - i32(params.pad);
    tapBase[r] = select(0u, n / KHW, tapValid[r]) * params.inH * params.inW;
  }
  let plane = params.outH * params.outW;`,
    stepA: `
    let kValid = kA < kEnd;
    let sample = select(0u, kA / plane, kValid);
    let pixel = kA % plane;
    let oh = pixel / params.outW;
    let ow = pixel % params.outW;
    for (var r = 0u; r < 4u; r = r + 1u) {
      let m = m0 + ${aRow};
      let inside = m < params.M && kValid;
      let index = (sample * params.outC + min(m, params.M - 1u)) * plane + pixel;
      ${guardedLoad("ra[r]", "a", "index", "inside")}
    }`,
    stepB: `
    let xSample = sample * params.inC * params.inH * params.inW;
    for (var r = 0u; r < 4u; r = r + 1u) {
      let ih = i32(oh * STRIDE) + tapRow[r];
      let iw = i32(ow * STRIDE) + tapCol[r];
      let inside = tapValid[r] && kValid && ih >= 0 && ih < i32(params.inH) && iw >= 0 &&
        iw < i32(params.inW);
      let index = xSample + tapBase[r] + u32(max(ih, 0)) * params.inW + u32(max(iw, 0));
      ${guardedLoad("rb[r]", "bsrc", "index", "inside")}
    }`,
    store: `
fn storeC(m: u32, n: u32, value: f32) {
  if (m >= params.M || n >= params.N) { return; }
  out[wgSplit * params.M * params.N + m * params.N + n] = value;
}`,
  };
}

/**
 * One pass of the implicit-GEMM conv for a kernel of kH x kW taps and `stride`, tiled as `tile`.
 * Bindings: A (forward, backwardInput: w; backwardWeight: dy), B (forward, backwardWeight: x;
 * backwardInput: dy), [bias: forward only], out (y, dx, or dw partials [splits, outC, inC * kH *
 * kW]). Grid: [ceil(N / tile.n), ceil(M / tile.m), splits].
 */
function buildConvGemmKernel(
  pass: GemmConvPass,
  kH: number,
  kW: number,
  stride: number,
  bias: boolean,
  tile: GemmTile = GEMM_TILE,
): KernelSource {
  const withBias = pass === "forward" && bias;
  const bindings: [string, "read" | "readWrite"][] = [["a", "read"], ["bsrc", "read"]];
  if (withBias) bindings.push(["bias", "read"]);
  bindings.push(["out", "readWrite"]);
  const code = passCode(pass, withBias, tile);
  const row = paddedRow(tile);
  const { k: tk, n: tn } = tile;
  const spread = GEMM_WORKGROUP / tk;
  // A along K: K row lid % k, row lid / k + (256 / k) r. B along N (forward, backwardInput): K row
  // lid / n + (256 / n) r, column lid % n. B along K (backwardWeight): as A.
  const storeA =
    `tileA[(lid % ${tk}u) * ${row}u + (lid / ${tk}u + ${spread}u * r) / 4u][(lid / ${tk}u) % 4u] = ra[r];`;
  const storeB = pass !== "backwardWeight"
    ? `tileB[(lid / ${tn}u + ${
      GEMM_WORKGROUP / tn
    }u * r) * ${row}u + (lid % ${tn}u) / 4u][lid % 4u] = rb[r];`
    : `tileB[(lid % ${tk}u) * ${row}u + (lid / ${tk}u + ${spread}u * r) / 4u][(lid / ${tk}u) % 4u] = rb[r];`;
  const flags: Record<string, string | number | boolean> = {
    pass,
    kh: kH,
    kw: kW,
    stride,
    bias: withBias,
  };
  if (tile !== GEMM_TILE) flags.tile = `${tile.m}x${tile.n}`;
  return kernel(
    "convGemm",
    flags,
    bindings.map(([, kind]) => kind),
    `${declareBindings(bindings, GEMM_UNIFORMS)}
const KW = ${kW}u;
const KHW = ${kH * kW}u;
const STRIDE = ${stride}u;
var<private> wgSplit: u32;
var<workgroup> tileA: array<vec4f, ${tk * row}>;
var<workgroup> tileB: array<vec4f, ${tk * row}>;
${code.store}
@compute @workgroup_size(${GEMM_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * ${tn}u;
  let m0 = wid.y * ${tile.m}u;
  wgSplit = wid.z;
  let kBegin = wid.z * params.kPerSplit;
  let kEnd = min(params.K, kBegin + params.kPerSplit);
  let tx = lid % 16u;
  let ty = lid / 16u;
${code.setup}
  var ra: array<f32, 4>;
  var rb: array<f32, 4>;
${accumulators(tile)}
  // Fetch the first step's operands; each iteration stages them, then fetches the next step's
  // before its multiply-adds.
  var k0 = kBegin;
  {
    let kA = k0 + lid % ${tk}u;${code.stepA}${code.stepB}
  }
  loop {
    if (k0 >= kEnd) { break; }
    workgroupBarrier();
    for (var r = 0u; r < 4u; r = r + 1u) {
      ${storeA}
      ${storeB}
    }
    workgroupBarrier();
    k0 = k0 + ${tk}u;
    if (k0 < kEnd) {
      let kA = k0 + lid % ${tk}u;${code.stepA.replaceAll("\n    ", "\n      ")}${
      code.stepB.replaceAll("\n    ", "\n      ")
    }
    }
    for (var kk = 0u; kk < ${tk}u; kk = kk + 1u) {
${multiplyAdds(tile, row)}
    }
  }
${stores(tile)}
}`,
  );
}

/** The thread's accumulators: perThread rows of perThread / 4 vec4s (acc0, acc1, ...). */
function accumulators(tile: GemmTile): string {
  const count = tile.perThread * tile.perThread / 4;
  return Array.from({ length: count }, (_, i) => `  var acc${i} = vec4f(0.0);`).join("\n");
}

/** One K row's multiply-adds: row i of the block times its perThread / 4 column vec4s. */
function multiplyAdds(tile: GemmTile, row: number): string {
  const quads = tile.perThread / 4;
  if (quads === 1) {
    return `      let av = tileA[kk * ${row}u + ty];
      let bv = tileB[kk * ${row}u + tx];
      acc0 = acc0 + av.x * bv;
      acc1 = acc1 + av.y * bv;
      acc2 = acc2 + av.z * bv;
      acc3 = acc3 + av.w * bv;`;
  }
  const lines: string[] = [];
  for (let q = 0; q < quads; q++) {
    lines.push(`      let av${q} = tileA[kk * ${row}u + ty * ${quads}u + ${q}u];`);
  }
  for (let q = 0; q < quads; q++) {
    lines.push(`      let bv${q} = tileB[kk * ${row}u + tx * ${quads}u + ${q}u];`);
  }
  for (let i = 0; i < tile.perThread; i++) {
    const a = `av${Math.floor(i / 4)}.${"xyzw"[i % 4]}`;
    for (let q = 0; q < quads; q++) {
      const acc = `acc${i * quads + q}`;
      lines.push(`      ${acc} = ${acc} + ${a} * bv${q};`);
    }
  }
  return lines.join("\n");
}

/** The block's stores: row m0 + ty * perThread + i, columns n0 + tx * perThread + 4 q + j. */
function stores(tile: GemmTile): string {
  const quads = tile.perThread / 4;
  if (quads === 1) {
    return `  let m = m0 + ty * 4u;
  let n = n0 + tx * 4u;
  for (var j = 0u; j < 4u; j = j + 1u) {
    storeC(m, n + j, acc0[j]);
    storeC(m + 1u, n + j, acc1[j]);
    storeC(m + 2u, n + j, acc2[j]);
    storeC(m + 3u, n + j, acc3[j]);
  }`;
  }
  const lines = [
    `  let m = m0 + ty * ${tile.perThread}u;`,
    `  let n = n0 + tx * ${tile.perThread}u;`,
    `  for (var j = 0u; j < 4u; j = j + 1u) {`,
  ];
  for (let i = 0; i < tile.perThread; i++) {
    for (let q = 0; q < quads; q++) {
      lines.push(`    storeC(m + ${i}u, n + ${4 * q}u + j, acc${i * quads + q}[j]);`);
    }
  }
  lines.push("  }");
  return lines.join("\n");
}

/** {@link buildConvGemmKernel}, each specialization built once. */
export const convGemmKernel = memoizedTemplate(buildConvGemmKernel);

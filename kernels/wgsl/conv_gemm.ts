/**
 * Implicit-GEMM convolution with workgroup-memory tiles (the "gemm" conv variant), for real GPUs.
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
 * A workgroup of 256 threads computes a 64 x 64 tile of C; each thread a 4 x 4 block of it. Per
 * step of 16 along K the workgroup stages a 64 x 16 slice of A and a 16 x 64 slice of B in
 * workgroup memory, loaded so that neighbouring threads read neighbouring addresses, and the next
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

/** Rows (M) and columns (N) of C per workgroup, and the K step staged per barrier pair. */
export const GEMM_TILE_M = 64;
/** Columns of C per workgroup. */
export const GEMM_TILE_N = 64;
/** K per staged step. */
export const GEMM_TILE_K = 16;
/** Threads per workgroup (16 x 16, each a 4 x 4 block of C). */
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

// Workgroup tiles hold 16 K-rows of 16 vec4s; a row is padded to 17 vec4s so that the A-tile
// stores (threads 16 K-rows apart) fall in different memory banks.
const ROW = 17;

/**
 * The setup of a pass whose B columns are output or input pixels (forward, backwardInput): this
 * thread's column `col` (fixed for the whole K loop), its sample and its pixel in a map of `plane`.
 */
function pixelColumn(plane: string): string {
  return `
  let col = n0 + lid % 64u;
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
 * and the store. A is loaded along K: `kA` = k0 + lid % 16 is this thread's K index in the step, its
 * rows m0 + lid / 16 + 16 r. B is loaded along N (one fixed column, K rows lid / 64 + 4 r) or,
 * for the weight, along K (the step's `kA`, four fixed columns).
 */
function passCode(pass: GemmConvPass, bias: boolean): {
  setup: string;
  stepA: string;
  stepB: string;
  store: string;
} {
  if (pass === "forward") {
    return {
      // B along N: this thread's column n (fixed) and K rows kLocal = lid / 64 + 4 r.
      setup: `${pixelColumn("params.outH * params.outW")}
  let xBase = sample * params.inC * params.inH * params.inW;
  let ih0 = i32((pixel / params.outW) * STRIDE) - i32(params.pad);
  let iw0 = i32((pixel % params.outW) * STRIDE) - i32(params.pad);`,
      stepA: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let m = m0 + lid / 16u + 16u * r;
      ra[r] = select(0.0, a[min(m, params.M - 1u) * params.K + min(kA, params.K - 1u)],
                     m < params.M && kA < kEnd);
    }`,
      stepB: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let k = k0 + lid / 64u + 4u * r;
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
      setup: `${pixelColumn("params.inH * params.inW")}
  let dyBase = sample * params.outC * params.outH * params.outW;
  let ohNum0 = i32(pixel / params.inW + params.pad);
  let owNum0 = i32(pixel % params.inW + params.pad);`,
      stepA: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let m = m0 + lid / 16u + 16u * r;
      let oc = kA / KHW;
      let index = (oc * params.inC + min(m, params.M - 1u)) * KHW + kA % KHW;
      let inside = m < params.M && kA < kEnd;
      ${guardedLoad("ra[r]", "a", "index", "inside")}
    }`,
      stepB: `
    for (var r = 0u; r < 4u; r = r + 1u) {
      let k = k0 + lid / 64u + 4u * r;
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
    // B along K: this thread's four columns n = n0 + lid / 16 + 16 r (filter taps, fixed) and one
    // K index per step, shared with the A loads.
    setup: `
  var tapRow: array<i32, 4>;
  var tapCol: array<i32, 4>;
  var tapBase: array<u32, 4>;
  var tapValid: array<bool, 4>;
  for (var r = 0u; r < 4u; r = r + 1u) {
    let n = n0 + lid / 16u + 16u * r;
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
      let m = m0 + lid / 16u + 16u * r;
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
 * One pass of the implicit-GEMM conv for a kernel of kH x kW taps and `stride`. Bindings: A
 * (forward, backwardInput: w; backwardWeight: dy), B (forward, backwardWeight: x; backwardInput:
 * dy), [bias: forward only], out (y, dx, or dw partials [splits, outC, inC * kH * kW]). Grid:
 * [ceil(N / 64), ceil(M / 64), splits].
 */
function buildConvGemmKernel(
  pass: GemmConvPass,
  kH: number,
  kW: number,
  stride: number,
  bias: boolean,
): KernelSource {
  const withBias = pass === "forward" && bias;
  const bindings: [string, "read" | "readWrite"][] = [["a", "read"], ["bsrc", "read"]];
  if (withBias) bindings.push(["bias", "read"]);
  bindings.push(["out", "readWrite"]);
  const code = passCode(pass, withBias);
  // B along N (forward, backwardInput): K row lid / 64 + 4 r, column lid % 64. B along K
  // (backwardWeight): K row lid % 16, column lid / 16 + 16 r.
  const bAlongN = pass !== "backwardWeight";
  const storeB = bAlongN
    ? `tileB[(lid / 64u + 4u * r) * ${ROW}u + (lid % 64u) / 4u][lid % 4u] = rb[r];`
    : `tileB[(lid % 16u) * ${ROW}u + (lid / 16u + 16u * r) / 4u][(lid / 16u) % 4u] = rb[r];`;
  return kernel(
    "convGemm",
    { pass, kh: kH, kw: kW, stride, bias: withBias },
    bindings.map(([, kind]) => kind),
    `${declareBindings(bindings, GEMM_UNIFORMS)}
const KW = ${kW}u;
const KHW = ${kH * kW}u;
const STRIDE = ${stride}u;
var<private> wgSplit: u32;
var<workgroup> tileA: array<vec4f, ${GEMM_TILE_K * ROW}>;
var<workgroup> tileB: array<vec4f, ${GEMM_TILE_K * ROW}>;
${code.store}
@compute @workgroup_size(${GEMM_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * ${GEMM_TILE_N}u;
  let m0 = wid.y * ${GEMM_TILE_M}u;
  wgSplit = wid.z;
  let kBegin = wid.z * params.kPerSplit;
  let kEnd = min(params.K, kBegin + params.kPerSplit);
  let tx = lid % 16u;
  let ty = lid / 16u;
${code.setup}
  var ra: array<f32, 4>;
  var rb: array<f32, 4>;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  // Fetch the first step's operands; each iteration stages them, then fetches the next step's
  // before its multiply-adds.
  var k0 = kBegin;
  {
    let kA = k0 + lid % 16u;${code.stepA}${code.stepB}
  }
  loop {
    if (k0 >= kEnd) { break; }
    workgroupBarrier();
    for (var r = 0u; r < 4u; r = r + 1u) {
      tileA[(lid % 16u) * ${ROW}u + (lid / 16u + 16u * r) / 4u][(lid / 16u) % 4u] = ra[r];
      ${storeB}
    }
    workgroupBarrier();
    k0 = k0 + ${GEMM_TILE_K}u;
    if (k0 < kEnd) {
      let kA = k0 + lid % 16u;${code.stepA.replaceAll("\n    ", "\n      ")}${
      code.stepB.replaceAll("\n    ", "\n      ")
    }
    }
    for (var kk = 0u; kk < ${GEMM_TILE_K}u; kk = kk + 1u) {
      let av = tileA[kk * ${ROW}u + ty];
      let bv = tileB[kk * ${ROW}u + tx];
      acc0 = acc0 + av.x * bv;
      acc1 = acc1 + av.y * bv;
      acc2 = acc2 + av.z * bv;
      acc3 = acc3 + av.w * bv;
    }
  }
  let m = m0 + ty * 4u;
  let n = n0 + tx * 4u;
  for (var j = 0u; j < 4u; j = j + 1u) {
    storeC(m, n + j, acc0[j]);
    storeC(m + 1u, n + j, acc1[j]);
    storeC(m + 2u, n + j, acc2[j]);
    storeC(m + 3u, n + j, acc3[j]);
  }
}`,
  );
}

/** {@link buildConvGemmKernel}, each specialization built once. */
export const convGemmKernel = memoizedTemplate(buildConvGemmKernel);

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
 * A workgroup computes a tile of C (GemmTile: 64 x 64, each of 256 threads a 4 x 4 block, for
 * "gemm"; 128 x 128, 8 x 8 per thread, for "gemm-wide"; other tilings for the sweep in
 * bench/gemm_sweep.ts). Per step along K the workgroup stages a slice of A and one of B in
 * workgroup memory, loaded so that neighbouring threads read neighbouring addresses, and the next
 * step's operands are fetched into registers before the current step's multiply-adds (latency
 * hiding without a second tile buffer). Workgroup-memory tiling is the right structure on GPUs and
 * slow on CPU rasterizers (per-lane scalar loops there), so the autotuner offers this variant only
 * on real GPUs. The kernel size and stride are compiled in: the index arithmetic divides by
 * constants, which compilers turn into multiplies.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, memoizedTemplate, u32Fields } from "./common.ts";

/** Which pass a gemm kernel computes. */
export type GemmConvPass = "forward" | "backwardInput" | "backwardWeight";

/**
 * A workgroup's share of C and how it gets there: `m` x `n` of C, K staged `k` at a time, each
 * thread a `threadM` x `threadN` block of it (multiples of 4: the block is held as vec4s).
 * `strided`: a thread's row (column) quads are spaced by the threads along M (N) instead of
 * adjacent, so that neighbouring threads read neighbouring workgroup-memory vec4s (no bank
 * conflicts) when a thread holds more than one quad. `doubleBuffer`: two copies of the staged
 * slices, written alternately, so one workgroup barrier per K step instead of two (twice the
 * workgroup memory). The workgroup has (m / threadM) * (n / threadN) threads; see
 * {@link gemmTileValid} for the divisibility the loads need.
 */
export interface GemmTile {
  m: number;
  n: number;
  k: number;
  threadM: number;
  threadN: number;
  strided?: boolean;
  doubleBuffer?: boolean;
}

/** 64 x 64 per workgroup, 4 x 4 per thread, K 16 per step: the "gemm" variant. */
export const GEMM_TILE: GemmTile = { m: 64, n: 64, k: 16, threadM: 4, threadN: 4 };
/**
 * 128 x 128 per workgroup, 8 x 8 per thread (quads strided), K 8 per step: the "gemm-wide"
 * variant, twice the multiply-adds per workgroup-memory read of "gemm" and a quarter as many
 * workgroups. The fastest in total of the ten tilings bench/gemm_sweep.ts timed on an NVIDIA H200
 * (bench/README.md, round 14): 23.6 ms over 15 passes of the paper's heaviest layers against
 * 26.2 for "gemm" and 25.6 for the same tiling with adjacent quads.
 */
export const GEMM_TILE_WIDE: GemmTile = {
  m: 128,
  n: 128,
  k: 8,
  threadM: 8,
  threadN: 8,
  strided: true,
};

/**
 * 64 x 128 per workgroup (64 rows of M, 128 columns of N), 8 x 8 per thread (quads strided), K 16
 * per step, 128 threads: the "gemm-flat" variant, for layers of 64 output channels (input channels
 * backward to the input) over many pixels, where "gemm-wide" leaves half its rows idle. The
 * fastest in total of the sweep of round 18 on an NVIDIA H200 (bench/README.md: 22.0 ms against
 * 23.6 for gemm-wide's tiling), and with "gemm" and "gemm-wide" beside it the per-shape best came
 * to 19.5 ms against 21.3 for those two alone.
 */
export const GEMM_TILE_FLAT: GemmTile = {
  m: 64,
  n: 128,
  k: 16,
  threadM: 8,
  threadN: 8,
  strided: true,
};

/** Threads of a workgroup of `tile`. */
export function gemmThreads(tile: GemmTile): number {
  return (tile.m / tile.threadM) * (tile.n / tile.threadN);
}

/** Bytes of workgroup memory a kernel of `tile` declares (both staged slices, rows padded). */
export function gemmWorkgroupBytes(tile: GemmTile): number {
  return (tile.doubleBuffer ? 2 : 1) * tile.k * (rowVec4s(tile.m) + rowVec4s(tile.n)) * 16;
}

/**
 * Whether `tile` can be built: whole per-thread blocks of vec4s, and loads that split evenly over
 * the threads (each thread loads m * k / threads values of A along K and n * k / threads of B,
 * along N or K, spaced by threads / k or threads / n rows that are multiples of 4).
 */
export function gemmTileValid(tile: GemmTile): boolean {
  const threads = gemmThreads(tile);
  const whole = (a: number, b: number) => Number.isInteger(a / b) && a / b >= 1;
  return tile.threadM % 4 === 0 && tile.threadN % 4 === 0 && whole(tile.m, tile.threadM) &&
    whole(tile.n, tile.threadN) && whole(threads, tile.k) && whole(threads, tile.n) &&
    whole(tile.k, threads / tile.n) && whole(tile.m * tile.k, threads) &&
    whole(tile.n * tile.k, threads) && (threads / tile.k) % 4 === 0;
}

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

const GEMM_UNIFORMS = u32Fields(GEMM_UNIFORM_FIELDS);

// Workgroup tiles hold k K-rows of `width` / 4 vec4s; a row is padded by one vec4 so that the
// stores of threads K-rows apart fall in different memory banks.
function rowVec4s(width: number): number {
  return width / 4 + 1;
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

/**
 * storeC of a pass whose C columns are pixels of an NCHW map (forward: y; backwardInput: dx) of
 * `plane` pixels and `channels` channels (C's rows), plus `addend` (the forward's bias).
 */
function nchwStore(plane: string, channels: string, addend: string): string {
  return `
fn storeC(m: u32, n: u32, value: f32) {
  if (m >= params.M || n >= params.N) { return; }
  let plane = ${plane};
  out[((n / plane) * ${channels} + m) * plane + n % plane] = value${addend};
}`;
}

/** `target = array[index]` where `inside`, else 0, never reading out of bounds. */
function guardedLoad(target: string, array: string, index: string, inside: string): string {
  return `${target} = select(0.0, ${array}[select(0u, ${index}, ${inside})], ${inside});`;
}

/** `body(r)` for r < count, each in its own block (the loads are unrolled: r is a constant). */
function unrolled(count: number, body: (r: number) => string): string {
  return Array.from({ length: count }, (_, r) => `
    {${body(r)}
    }`).join("");
}

/**
 * Per-pass WGSL: the setup before the K loop, one step's operand loads into registers (`ra<r>`,
 * `rb<r>`) and the store. A is loaded along K: `kA` = k0 + lid % k is this thread's K index in the
 * step, its rows m0 + lid / k + (threads / k) r. B is loaded along N (one fixed column, K rows
 * lid / n + (threads / n) r) or, for the weight, along K (the step's `kA`, fixed columns).
 */
function passCode(pass: GemmConvPass, bias: boolean, tile: GemmTile): {
  setup: string;
  stepA: string;
  stepB: string;
  store: string;
} {
  const threads = gemmThreads(tile);
  const loadsA = tile.m * tile.k / threads;
  const loadsB = tile.n * tile.k / threads;
  const aRow = (r: number) => `lid / ${tile.k}u + ${(threads / tile.k) * r}u`;
  const bRowAlongN = (r: number) => `lid / ${tile.n}u + ${(threads / tile.n) * r}u`;
  if (pass === "forward") {
    return {
      // B along N: this thread's column (fixed) and its K rows.
      setup: `${pixelColumn("params.outH * params.outW", tile)}
  let xBase = sample * params.inC * params.inH * params.inW;
  let ih0 = i32((pixel / params.outW) * STRIDE) - i32(params.pad);
  let iw0 = i32((pixel % params.outW) * STRIDE) - i32(params.pad);`,
      stepA: unrolled(loadsA, (r) => `
      let m = m0 + ${aRow(r)};
      ra${r} = select(0.0, a[min(m, params.M - 1u) * params.K + min(kA, params.K - 1u)],
                     m < params.M && kA < kEnd);`),
      stepB: unrolled(loadsB, (r) => `
      let k = k0 + ${bRowAlongN(r)};
      let ic = k / KHW;
      let tap = k % KHW;
      let ih = ih0 + i32(tap / KW);
      let iw = iw0 + i32(tap % KW);
      let inside = colValid && k < kEnd && ih >= 0 && ih < i32(params.inH) && iw >= 0 &&
        iw < i32(params.inW);
      let index = xBase + (ic * params.inH + u32(max(ih, 0))) * params.inW + u32(max(iw, 0));
      ${guardedLoad(`rb${r}`, "bsrc", "index", "inside")}`),
      store: nchwStore("params.outH * params.outW", "params.outC", bias ? " + bias[m]" : ""),
    };
  }
  if (pass === "backwardInput") {
    return {
      // B along N: this thread's input pixel n (fixed); dy is read where the stride lands on it.
      setup: `${pixelColumn("params.inH * params.inW", tile)}
  let dyBase = sample * params.outC * params.outH * params.outW;
  let ohNum0 = i32(pixel / params.inW + params.pad);
  let owNum0 = i32(pixel % params.inW + params.pad);`,
      stepA: unrolled(loadsA, (r) => `
      let m = m0 + ${aRow(r)};
      let oc = kA / KHW;
      let index = (oc * params.inC + min(m, params.M - 1u)) * KHW + kA % KHW;
      let inside = m < params.M && kA < kEnd;
      ${guardedLoad(`ra${r}`, "a", "index", "inside")}`),
      stepB: unrolled(loadsB, (r) => `
      let k = k0 + ${bRowAlongN(r)};
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
      ${guardedLoad(`rb${r}`, "bsrc", "index", "inside")}`),
      store: nchwStore("params.inH * params.inW", "params.inC", ""),
    };
  }
  // B along K: this thread's columns (filter taps, fixed) and one K index per step, shared with
  // the A loads.
  const taps = Array.from({ length: loadsB }, (_, r) => `
  let tapN${r} = n0 + ${aRow(r)};
  let tapValid${r} = tapN${r} < params.N;
  let tapRow${r} = i32((tapN${r} % KHW) / KW) - i32(params.pad);
  let tapCol${r} = i32((tapN${r} % KHW) % KW) - i32(params.pad);
  let tapBase${r} = select(0u, tapN${r} / KHW, tapValid${r}) * params.inH * params.inW;`);
  return {
    setup: `${taps.join("")}
  let plane = params.outH * params.outW;`,
    stepA: `
    let kValid = kA < kEnd;
    let sample = select(0u, kA / plane, kValid);
    let pixel = kA % plane;
    let oh = pixel / params.outW;
    let ow = pixel % params.outW;${
      unrolled(loadsA, (r) => `
      let m = m0 + ${aRow(r)};
      let inside = m < params.M && kValid;
      let index = (sample * params.outC + min(m, params.M - 1u)) * plane + pixel;
      ${guardedLoad(`ra${r}`, "a", "index", "inside")}`)
    }`,
    stepB: `
    let xSample = sample * params.inC * params.inH * params.inW;${
      unrolled(loadsB, (r) => `
      let ih = i32(oh * STRIDE) + tapRow${r};
      let iw = i32(ow * STRIDE) + tapCol${r};
      let inside = tapValid${r} && kValid && ih >= 0 && ih < i32(params.inH) && iw >= 0 &&
        iw < i32(params.inW);
      let index = xSample + tapBase${r} + u32(max(ih, 0)) * params.inW + u32(max(iw, 0));
      ${guardedLoad(`rb${r}`, "bsrc", "index", "inside")}`)
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
  if (!gemmTileValid(tile)) throw new Error(`convGemm: tile ${JSON.stringify(tile)} is not valid`);
  const withBias = pass === "forward" && bias;
  const bindings: [string, "read" | "readWrite"][] = [["a", "read"], ["bsrc", "read"]];
  if (withBias) bindings.push(["bias", "read"]);
  bindings.push(["out", "readWrite"]);
  const code = passCode(pass, withBias, tile);
  const threads = gemmThreads(tile);
  const { k: tk, n: tn } = tile;
  const [rowA, rowB] = [rowVec4s(tile.m), rowVec4s(tile.n)];
  const spread = threads / tk;
  // A along K: K row lid % k, row lid / k + (threads / k) r. B along N (forward, backwardInput):
  // K row lid / n + (threads / n) r, column lid % n. B along K (backwardWeight): as A.
  const double = tile.doubleBuffer ?? false;
  // With double buffering the staged slices alternate between two halves (offsets bufA, bufB).
  const [baseA, baseB] = double ? ["bufA + ", "bufB + "] : ["", ""];
  const stageA = (r: number) =>
    `tileA[${baseA}(lid % ${tk}u) * ${rowA}u + (lid / ${tk}u + ${
      spread * r
    }u) / 4u][(lid / ${tk}u) % 4u] = ra${r};`;
  const stageB = (r: number) =>
    pass !== "backwardWeight"
      ? `tileB[${baseB}(lid / ${tn}u + ${
        (threads / tn) * r
      }u) * ${rowB}u + (lid % ${tn}u) / 4u][lid % 4u] = rb${r};`
      : `tileB[${baseB}(lid % ${tk}u) * ${rowB}u + (lid / ${tk}u + ${
        spread * r
      }u) / 4u][(lid / ${tk}u) % 4u] = rb${r};`;
  const loadsA = tile.m * tk / threads;
  const loadsB = tile.n * tk / threads;
  const registers = [
    ...Array.from({ length: loadsA }, (_, r) => `  var ra${r}: f32;`),
    ...Array.from({ length: loadsB }, (_, r) => `  var rb${r}: f32;`),
  ].join("\n");
  const flags: Record<string, string | number | boolean> = {
    pass,
    kh: kH,
    kw: kW,
    stride,
    bias: withBias,
  };
  if (!sameTile(tile, GEMM_TILE)) {
    flags.tile = gemmTileName(tile);
  }
  const indent = (s: string) => s.replaceAll("\n    ", "\n      ");
  return kernel(
    "convGemm",
    flags,
    bindings.map(([, kind]) => kind),
    `${declareBindings(bindings, GEMM_UNIFORMS)}
const KW = ${kW}u;
const KHW = ${kH * kW}u;
const STRIDE = ${stride}u;
var<private> wgSplit: u32;
var<workgroup> tileA: array<vec4f, ${(double ? 2 : 1) * tk * rowA}>;
var<workgroup> tileB: array<vec4f, ${(double ? 2 : 1) * tk * rowB}>;
${code.store}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * ${tn}u;
  let m0 = wid.y * ${tile.m}u;
  wgSplit = wid.z;
  let kBegin = wid.z * params.kPerSplit;
  let kEnd = min(params.K, kBegin + params.kPerSplit);
  let tx = lid % ${tn / tile.threadN}u;
  let ty = lid / ${tn / tile.threadN}u;
${code.setup}
${registers}
${accumulators(tile)}
  // Fetch the first step's operands; each iteration stages them, then fetches the next step's
  // before its multiply-adds.
  var k0 = kBegin;${
      double
        ? `
  // The half the next slices are staged in (the other is still being read before the barrier).
  var bufA = 0u;
  var bufB = 0u;`
        : ""
    }
  {
    let kA = k0 + lid % ${tk}u;${code.stepA}${code.stepB}
  }
  loop {
    if (k0 >= kEnd) { break; }${double ? "" : "\n    workgroupBarrier();"}
${Array.from({ length: loadsA }, (_, r) => `    ${stageA(r)}`).join("\n")}
${Array.from({ length: loadsB }, (_, r) => `    ${stageB(r)}`).join("\n")}
    workgroupBarrier();
    k0 = k0 + ${tk}u;
    if (k0 < kEnd) {
      let kA = k0 + lid % ${tk}u;${indent(code.stepA)}${indent(code.stepB)}
    }
    for (var kk = 0u; kk < ${tk}u; kk = kk + 1u) {
${multiplyAdds(tile, baseA, baseB)}
    }${
      double
        ? `
    bufA = ${tk * rowA}u - bufA;
    bufB = ${tk * rowB}u - bufB;`
        : ""
    }
  }
${stores(tile)}
}`,
  );
}

/** A tiling's name, as bench/gemm_sweep.ts and VA_GEMM_WIDE_TILE write it: "128x128x8/8x8s". */
export function gemmTileName(tile: GemmTile): string {
  return `${tile.m}x${tile.n}x${tile.k}/${tile.threadM}x${tile.threadN}${tile.strided ? "s" : ""}${
    tile.doubleBuffer ? "d" : ""
  }`;
}

function sameTile(a: GemmTile, b: GemmTile): boolean {
  return a.m === b.m && a.n === b.n && a.k === b.k && a.threadM === b.threadM &&
    a.threadN === b.threadN && (a.strided ?? false) === (b.strided ?? false) &&
    (a.doubleBuffer ?? false) === (b.doubleBuffer ?? false);
}

/**
 * Where quad `q` of a thread's rows (or columns) starts, in vec4s from the tile's first: adjacent
 * quads (`index` * quads + q), or strided by the threads along that side (`index` + q * threads).
 */
function quadOffset(
  index: string,
  q: number,
  quads: number,
  threadsAlong: number,
  strided: boolean,
) {
  if (quads === 1) return index;
  return strided ? `${index} + ${q * threadsAlong}u` : `${index} * ${quads}u + ${q}u`;
}

/** The thread's accumulators: threadM rows of threadN / 4 vec4s (acc0, acc1, ...). */
function accumulators(tile: GemmTile): string {
  const count = tile.threadM * tile.threadN / 4;
  return Array.from({ length: count }, (_, i) => `  var acc${i} = vec4f(0.0);`).join("\n");
}

/** One K row's multiply-adds: row i of the block times its threadN / 4 column vec4s. */
function multiplyAdds(tile: GemmTile, baseA: string, baseB: string): string {
  const [quadsM, quadsN] = [tile.threadM / 4, tile.threadN / 4];
  const [alongM, alongN] = [tile.m / tile.threadM, tile.n / tile.threadN];
  const strided = tile.strided ?? false;
  const [rowA, rowB] = [rowVec4s(tile.m), rowVec4s(tile.n)];
  const lines: string[] = [];
  for (let q = 0; q < quadsM; q++) {
    lines.push(
      `      let av${q} = tileA[${baseA}kk * ${rowA}u + ${
        quadOffset("ty", q, quadsM, alongM, strided)
      }];`,
    );
  }
  for (let q = 0; q < quadsN; q++) {
    lines.push(
      `      let bv${q} = tileB[${baseB}kk * ${rowB}u + ${
        quadOffset("tx", q, quadsN, alongN, strided)
      }];`,
    );
  }
  for (let i = 0; i < tile.threadM; i++) {
    const a = `av${Math.floor(i / 4)}.${"xyzw"[i % 4]}`;
    for (let q = 0; q < quadsN; q++) {
      const acc = `acc${i * quadsN + q}`;
      lines.push(`      ${acc} = ${acc} + ${a} * bv${q};`);
    }
  }
  return lines.join("\n");
}

/** The block's stores: each accumulator's four columns, unrolled. */
function stores(tile: GemmTile): string {
  const [quadsM, quadsN] = [tile.threadM / 4, tile.threadN / 4];
  const [alongM, alongN] = [tile.m / tile.threadM, tile.n / tile.threadN];
  const strided = tile.strided ?? false;
  const lines: string[] = [];
  for (let qm = 0; qm < quadsM; qm++) {
    lines.push(`  let row${qm} = m0 + 4u * (${quadOffset("ty", qm, quadsM, alongM, strided)});`);
  }
  for (let qn = 0; qn < quadsN; qn++) {
    lines.push(`  let col${qn} = n0 + 4u * (${quadOffset("tx", qn, quadsN, alongN, strided)});`);
  }
  for (let i = 0; i < tile.threadM; i++) {
    for (let qn = 0; qn < quadsN; qn++) {
      const acc = `acc${i * quadsN + qn}`;
      for (let j = 0; j < 4; j++) {
        lines.push(
          `  storeC(row${Math.floor(i / 4)} + ${i % 4}u, col${qn} + ${j}u, ${acc}.${"xyzw"[j]});`,
        );
      }
    }
  }
  return lines.join("\n");
}

/** {@link buildConvGemmKernel}, each specialization built once. */
export const convGemmKernel = memoizedTemplate(buildConvGemmKernel);

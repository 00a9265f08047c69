/**
 * A 3x3 conv (stride 1, padding 1) on a map upsampled 2x by nearest neighbour, computed at the
 * source resolution ("sub-pixel" form). Output pixel (2s + a, 2t + b) sees source rows s - 1 .. s
 * (a = 0) or s .. s + 1 (a = 1), and likewise columns, because each source value fills a 2x2
 * block: so it is a 2x2 conv of x with a filter U_ab that depends on the output parity (a, b), each
 * tap the sum of the 3x3 taps that land on the same source value:
 *
 *   U_ab[i][j] = sum over kh in K(a, i), kw in K(b, j) of w[kh][kw],
 *   K(0, 0) = {0}, K(0, 1) = {1, 2}, K(1, 0) = {0, 1}, K(1, 1) = {2}  (source row s + i - 1 + a).
 *
 * 4 multiply-adds per output and input channel instead of 9, the upsampled map never written. The
 * backward passes use the same U: to the input, dx[s][t] = sum over (a, b, i, j) of U_ab[i][j] *
 * dy[2(s - i + 1 - a) + a][...] (a 4x4, stride-2 correlation over dy: 16 multiply-adds per source
 * value instead of 4 x 9); to the weight, the 16 sums dU_ab[i][j] = sum of dy(2s + a, 2t + b) *
 * x(s + i - 1 + a, t + j - 1 + b) are formed per lane and folded into the 9 taps of dw (each tap is
 * the sum of the 4 dU entries whose K sets hold it).
 *
 * Like the ubo kernels (kernels/wgsl/conv_ubo.ts), the filters of a block of J output channels sit
 * in a uniform window (a broadcast load on CPU rasterizers) and each thread owns a register tile;
 * output vec4s hold 4 source columns of one column parity, interleaved when stored.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, memoizedTemplate } from "./common.ts";
import { tapSums, tapSumTerms, wgradWalkKernel } from "./conv3x3_wgrad.ts";
import { storeStatistics, windowedStore, windowPackKernel } from "./conv_ubo.ts";

/** Taps of the sub-pixel filters per channel pair: 4 parities x 2 x 2. */
export const SUBPIXEL_TAPS = 16;

/** Index of U_ab[i][j] among a channel pair's {@link SUBPIXEL_TAPS}. */
export function subpixelTap(a: number, b: number, i: number, j: number): number {
  return ((a * 2 + b) * 2 + i) * 2 + j;
}

/** The 3x3 filter rows (or columns) K(parity, i) whose values land on source offset i. */
export function subpixelRows(parity: number, i: number): number[] {
  return i === 0 ? (parity === 0 ? [0] : [0, 1]) : (parity === 0 ? [1, 2] : [2]);
}

/**
 * Pack U into uniform segments, as convUboPackKernel packs w: segment (chunk, block) holds, for an
 * input-channel chunk, [(icLocal * 16 + tap) * J + j], padded to 256 bytes. With `transpose` the
 * packed conv's output channels are w's input channels (w [runInC, runOutC, 3, 3] as stored: the
 * backward to the input). Threads: one per packed float. Uniforms: total, runInC, runOutC,
 * icChunk, blocksC, segFloats.
 */
function buildSubpixelPackKernel(transpose: boolean, ocBlock: number): KernelSource {
  const at = transpose ? "(ic * params.runOutC + oc) * 9u" : "(oc * params.runInC + ic) * 9u";
  return windowPackKernel(
    "subpixelPack",
    { transpose, j: ocBlock },
    ocBlock,
    SUBPIXEL_TAPS,
    `// tap = ((a * 2 + b) * 2 + i) * 2 + j: K(a, i) = {0} | {1, 2} | {0, 1} | {2}.
    let a = tap / 8u;
    let b = (tap / 4u) % 2u;
    let i = (tap / 2u) % 2u;
    let jj = tap % 2u;
    let rowLo = select(1u + a, 0u, i == 0u);
    let rowHi = select(2u, a, i == 0u);
    let colLo = select(1u + b, 0u, jj == 0u);
    let colHi = select(2u, b, jj == 0u);
    let base = ${at};
    for (var kh = rowLo; kh <= rowHi; kh = kh + 1u) {
      for (var kw = colLo; kw <= colHi; kw = kw + 1u) {
        value = value + w[base + kh * 3u + kw];
      }
    }`,
  );
}

/** The uniforms of the windowed conv dispatches (kernels/conv_ubo.ts dispatchWindowed). */
const WINDOWED_UNIFORMS = "batch: u32, inC: u32, H: u32, W: u32, outC: u32, quadsW: u32, " +
  "tiles: u32, icStart: u32, icCount: u32, accumulate: u32, ocBlockBase: u32, segVec4: u32, " +
  "foldX: u32, rowGroups: u32, colGroups: u32,";

/**
 * The entry point of the windowed sub-pixel kernels down to the thread's tile: image n, first
 * source row s0, first source quad quadS, first channel oc0 of its block, its filter segment seg,
 * and whether the tile has columns to its left and right.
 */
function tileMain(
  workgroup: number,
  R: number,
  P: number,
  J: number,
  statistics: ReturnType<typeof storeStatistics> | null = null,
): string {
  return `${
    statistics ? `${statistics.workgroupArray}\n` : ""
  }@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, ${
    statistics ? "@builtin(num_workgroups) nwg: vec3u, " : ""
  }@builtin(local_invocation_index) lid: u32) {
  let t = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  ${statistics ? statistics.open : "if (t >= params.tiles) { return; }"}
  let colGroup = t % params.colGroups;
  let rest = t / params.colGroups;
  let s0 = (rest % params.rowGroups) * ${R}u;
  let n = rest / params.rowGroups;
  let quadS = colGroup * ${P}u;
  let oc0 = (params.ocBlockBase + wid.y) * ${J}u;
  let seg = wid.y * params.segVec4;
  let hasLeft = quadS > 0u;
  let hasRight = quadS + ${P}u < params.quadsW;`;
}

/** Register tile of a sub-pixel thread: source rows x source column quads. */
export interface SubpixelTile {
  rows: number;
  quads: number;
  /** Backward to the input only: the 9-tap box form ({@link subpixelBoxBackwardInputKernel}). */
  box?: boolean;
}

/**
 * The source row `r` (offset from the tile's first, -1 .. rows) of x as the three vec4s per quad
 * p the 2x2 filters need: `xm{p}` (columns t - 1 ..), `x0{p}` (t ..), `xp{p}` (t + 1 ..); zeros
 * outside the map. Every name it declares ends in `row` (see {@link shifted}). Needs x (vec4),
 * base (quad index of the tile's first row and quad), the source size in params (H, quadsW: the
 * source's), s0, hasLeft, hasRight.
 */
function sourceRowLoads(r: number, quads: number, row: string): string[] {
  const [sr, inside, c, left, right] = ["sr", "inside", "c", "left", "right"].map((n) => n + row);
  const lines = [
    `let ${sr} = i32(s0) + ${r};`,
    `let ${inside} = ${sr} >= 0 && ${sr} < i32(params.H);`,
    `let ${c} = u32(i32(base) + ${r} * i32(params.quadsW));`,
    `let ${left} = select(0.0, x[${c} - 1u].w, ${inside} && hasLeft);`,
  ];
  for (let p = 0; p < quads; p++) {
    lines.push(`let ${shifted(0, p, row)} = select(vec4f(0.0), x[${c} + ${p}u], ${inside});`);
  }
  lines.push(`let ${right} = select(0.0, x[${c} + ${quads}u].x, ${inside} && hasRight);`);
  for (let p = 0; p < quads; p++) {
    const x0 = shifted(0, p, row);
    const prev = p === 0 ? left : `${shifted(0, p - 1, row)}.w`;
    const next = p === quads - 1 ? right : `${shifted(0, p + 1, row)}.x`;
    lines.push(`let ${shifted(-1, p, row)} = vec4f(${prev}, ${x0}.xyz);`);
    lines.push(`let ${shifted(1, p, row)} = vec4f(${x0}.yzw, ${next});`);
  }
  return lines;
}

/** The shifted source vector for column offset dj (-1, 0, +1) at quad p of row `row`. */
function shifted(dj: number, p: number, row: string): string {
  return (dj < 0 ? `xm${p}` : dj === 0 ? `x0${p}` : `xp${p}`) + row;
}

/**
 * Forward of upsample-2x-then-conv3x3 in sub-pixel form over one input-channel chunk and a
 * window of output-channel blocks (the same dispatch layout as convUboKernel). params.H and
 * params.quadsW are the source map's; y is written at twice them. Threads: x = tiles (batch *
 * rowGroups * colGroups) in groups of `workgroup`, folded over z; y = oc block in the window.
 * Uniforms: those of kernels/conv_ubo.ts dispatchWindowed (W unused).
 */
function buildSubpixelConvKernel(
  bias: boolean,
  ocBlock: number,
  tile: SubpixelTile,
  workgroup = 64,
  stats = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", "vec4f"],
    ["w", "uniform", "array<vec4f, 4096>"],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  bindings.push(["y", "readWrite", "vec4f"]);
  const statistics = stats ? storeStatistics(ocBlock, workgroup) : null;
  if (statistics) bindings.push(statistics.binding);
  const { rows: R, quads: P } = tile;
  const J = ocBlock;
  const vecsPerTap = J / 4;
  const acc = (a: number, b: number, r: number, p: number, j: number) =>
    `acc${a}${b}_${r}_${p}_${j}`;
  const accs: string[] = [];
  const stores: string[] = [];
  for (let a = 0; a < 2; a++) {
    for (let r = 0; r < R; r++) {
      for (let p = 0; p < P; p++) {
        for (let j = 0; j < J; j++) {
          accs.push(
            `var ${acc(a, 0, r, p, j)} = vec4f(0.0);`,
            `var ${acc(a, 1, r, p, j)} = vec4f(0.0);`,
          );
          // Columns 2t + b of the 4 source columns: even (b = 0) and odd interleaved.
          const e = acc(a, 0, r, p, j), o = acc(a, 1, r, p, j);
          const left = `store(n, oc0 + ${j}u, oh, q, vec4f(${e}.x, ${o}.x, ${e}.y, ${o}.y))`;
          const right = `store(n, oc0 + ${j}u, oh, q + 1u, vec4f(${e}.z, ${o}.z, ${e}.w, ${o}.w))`;
          const first = a === 0 && r === 0 && p === 0;
          stores.push(
            `if (s0 + ${r}u < params.H) {` +
              ` let q = 2u * (quadS + ${p}u); let oh = 2u * (s0 + ${r}u) + ${a}u;` +
              (statistics
                ? ` { ${statistics.add(j, left, first)} } { ${statistics.add(j, right, false)} } }`
                : ` ${left};` + ` ${right}; }`),
          );
        }
      }
    }
  }
  // All R + 2 source rows first, then each accumulator's 4 taps one after another (on CPU
  // rasterizers the accumulators live on the stack: one load and store per 4 multiply-adds).
  const body: string[] = [];
  const row = (k: number) => (k < 0 ? "_m1" : `_${k}`);
  for (let k = -1; k <= R; k++) body.push(...sourceRowLoads(k, P, row(k)));
  for (let r = 0; r < R; r++) {
    for (let a = 0; a < 2; a++) {
      for (let b = 0; b < 2; b++) {
        for (let p = 0; p < P; p++) {
          for (let j = 0; j < J; j++) {
            const target = acc(a, b, r, p, j);
            // Source row k = r + i - 1 + a feeds output row r of parity a through filter row i.
            for (let i = 0; i < 2; i++) {
              for (let jj = 0; jj < 2; jj++) {
                const weights = `w[wRow + ${subpixelTap(a, b, i, jj) * vecsPerTap + (j >> 2)}u]`;
                const x = shifted(jj - 1 + b, p, row(r + i - 1 + a));
                body.push(`${target} = fma(vec4f(${weights}[${j & 3}]), ${x}, ${target});`);
              }
            }
          }
        }
      }
    }
  }
  return kernel(
    "subpixelConv",
    { bias, j: J, rows: R, quads: P, wg: workgroup, ...(stats ? { stats } : {}) },
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        WINDOWED_UNIFORMS,
      )
    }
${
      windowedStore(
        "quad: u32",
        "((n * params.outC + oc) * 2u * params.H + oh) * 2u * params.quadsW + quad",
        bias,
        stats,
      )
    }
${tileMain(workgroup, R, P, J, statistics)}
  let planeQuads = params.H * params.quadsW;
  var base = ((n * params.inC + params.icStart) * params.H + s0) * params.quadsW + quadS;
  ${accs.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let wRow = seg + icLocal * ${SUBPIXEL_TAPS * vecsPerTap}u;
    ${body.join("\n    ")}
    base = base + planeQuads;
  }
  ${stores.join("\n  ")}
${statistics ? statistics.close : ""}}`,
  );
}

/**
 * dy row `k` (offset from 2 * s0, -1 .. 2 * rows) as the four stride-2 vec4s per source quad p
 * that the backward to the input needs: `dg{γ}_{p}` holds dy columns 2t + γ, 2t + 2 + γ, ... for
 * γ in -1, 0, 1, 2 (named m1, 0, 1, 2); zeros outside the map. Needs dy (vec4), dyBase (the dy quad
 * index of row 2 * s0 and column 2t of the tile), params.H / quadsW (source), s0, hasLeft,
 * hasRight. Every name it declares starts with `prefix`.
 */
function dyRowLoads(k: number, quads: number, prefix = ""): string[] {
  const n = (name: string) => `${prefix}${name}`;
  const lines = [
    `let ${n("dr")} = 2 * i32(s0) + ${k};`,
    `let ${n("inside")} = ${n("dr")} >= 0 && ${n("dr")} < 2 * i32(params.H);`,
    `let ${n("c")} = u32(i32(dyBase) + ${k} * 2 * i32(params.quadsW));`,
    `let ${n("left")} = select(0.0, dy[${n("c")} - 1u].w, ${n("inside")} && hasLeft);`,
  ];
  for (let p = 0; p < quads; p++) {
    lines.push(
      `let ${n(`d${p}a`)} = select(vec4f(0.0), dy[${n("c")} + ${2 * p}u], ${n("inside")});`,
    );
    lines.push(
      `let ${n(`d${p}b`)} = select(vec4f(0.0), dy[${n("c")} + ${2 * p + 1}u], ${n("inside")});`,
    );
  }
  lines.push(
    `let ${n("right")} = select(0.0, dy[${n("c")} + ${2 * quads}u].x, ${n("inside")} && hasRight);`,
  );
  for (let p = 0; p < quads; p++) {
    const prev = p === 0 ? n("left") : `${n(`d${p - 1}b`)}.w`;
    const next = p === quads - 1 ? n("right") : `${n(`d${p + 1}a`)}.x`;
    const g = strideTwoColumns(n(`d${p}a`), n(`d${p}b`), prev, next);
    lines.push(`let ${n(`dg0_${p}`)} = ${g.even};`);
    lines.push(`let ${n(`dg1_${p}`)} = ${g.odd};`);
    lines.push(`let ${n(`dg2_${p}`)} = ${g.evenAfter};`);
    lines.push(`let ${n(`dgm1_${p}`)} = ${g.oddBefore};`);
  }
  return lines;
}

/**
 * The stride-2 column vec4s of 8 consecutive values a, b (vec4 expressions) with the value before
 * (`prev`) and after (`next`): columns 0, 2, 4, 6 (even), 1, 3, 5, 7 (odd), 2, 4, 6, 8 (evenAfter)
 * and -1, 1, 3, 5 (oddBefore). A source quad's 4 columns meet these in the upsampled map.
 */
function strideTwoColumns(
  a: string,
  b: string,
  prev: string,
  next: string,
): { even: string; odd: string; evenAfter: string; oddBefore: string } {
  return {
    even: `vec4f(${a}.x, ${a}.z, ${b}.x, ${b}.z)`,
    odd: `vec4f(${a}.y, ${a}.w, ${b}.y, ${b}.w)`,
    evenAfter: `vec4f(${a}.z, ${b}.x, ${b}.z, ${next})`,
    oddBefore: `vec4f(${prev}, ${a}.y, ${a}.w, ${b}.y)`,
  };
}

/**
 * A windowed backward-to-input kernel of this file (the dispatch layout of subpixelConvKernel,
 * with inC = dy's channels, outC = dx's, H and quadsW the source's): each thread holds the
 * `tile.rows` x `tile.quads` x J vec4 accumulators acc{r}_{p}_{j} of its dx tile, runs `body` once
 * per dy channel (with dyBase at the channel's row 2 * s0, column 2 * 4 * quadS, and wRow at its
 * `tapsPerChannel` x J filter values), then stores the tile.
 */
function backwardInputKernel(
  family: string,
  workgroup: number,
  tile: SubpixelTile,
  J: number,
  tapsPerChannel: number,
  body: string[],
): KernelSource {
  const { rows: R, quads: P } = tile;
  const accs: string[] = [];
  const stores: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let j = 0; j < J; j++) {
        accs.push(`var acc${r}_${p}_${j} = vec4f(0.0);`);
        stores.push(
          `if (s0 + ${r}u < params.H) { store(n, oc0 + ${j}u, s0 + ${r}u, quadS + ${p}u, ` +
            `acc${r}_${p}_${j}); }`,
        );
      }
    }
  }
  return kernel(
    family,
    { j: J, rows: R, quads: P, wg: workgroup },
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["dy", "read", "vec4f"], ["w", "uniform", "array<vec4f, 4096>"], [
          "dx",
          "readWrite",
          "vec4f",
        ]],
        WINDOWED_UNIFORMS,
      )
    }
fn store(n: u32, oc: u32, row: u32, quad: u32, acc: vec4f) {
  if (oc >= params.outC) { return; }
  let at = ((n * params.outC + oc) * params.H + row) * params.quadsW + quad;
  if (params.accumulate != 0u) {
    dx[at] = dx[at] + acc;
  } else {
    dx[at] = acc;
  }
}
${tileMain(workgroup, R, P, J)}
  // dy is [batch, inC, 2H, 2W]: quad index of (n, icStart, 2 * s0, 2 * 4 * quadS).
  let planeQuads = 4u * params.H * params.quadsW;
  var dyBase = ((n * params.inC + params.icStart) * 2u * params.H + 2u * s0) * 2u * params.quadsW +
    2u * quadS;
  ${accs.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let wRow = seg + icLocal * ${tapsPerChannel * (J / 4)}u;
    ${body.join("\n    ")}
    dyBase = dyBase + planeQuads;
  }
  ${stores.join("\n  ")}
}`,
  );
}

/**
 * Backward to the input of {@link subpixelConvKernel}, over one chunk of dy's channels (the
 * packed conv's input channels) and a window of blocks of x's channels (its output channels; the
 * filters packed with `transpose`): dx at the source resolution, each value the 16 taps
 * U_ab[i][j] against dy(2s + 2 - 2i - a, 2t + 2 - 2j - b). Threads and uniforms as
 * subpixelConvKernel, with inC = dy's channels, outC = dx's, H and quadsW the source's.
 */
function buildSubpixelConvBackwardInputKernel(
  ocBlock: number,
  tile: SubpixelTile,
  workgroup = 64,
): KernelSource {
  const { rows: R, quads: P } = tile;
  const J = ocBlock;
  const vecsPerTap = J / 4;
  const acc = (r: number, p: number, j: number) => `acc${r}_${p}_${j}`;
  const gammaName = (g: number) => (g < 0 ? "m1" : String(g));
  const body: string[] = [];
  for (let k = -1; k <= 2 * R; k++) {
    body.push("{", ...dyRowLoads(k, P));
    for (let r = 0; r < R; r++) {
      for (let a = 0; a < 2; a++) {
        for (let i = 0; i < 2; i++) {
          if (2 * r + 2 - 2 * i - a !== k) continue;
          for (let b = 0; b < 2; b++) {
            for (let jj = 0; jj < 2; jj++) {
              const tap = subpixelTap(a, b, i, jj);
              const name = `w${r}_${a}${i}${b}${jj}`;
              for (let v = 0; v < vecsPerTap; v++) {
                body.push(`let ${name}_${v} = w[wRow + ${tap * vecsPerTap + v}u];`);
              }
              const gamma = 2 - 2 * jj - b;
              for (let p = 0; p < P; p++) {
                for (let j = 0; j < J; j++) {
                  const target = acc(r, p, j);
                  body.push(
                    `${target} = fma(vec4f(${name}_${j >> 2}[${j & 3}]), dg${
                      gammaName(gamma)
                    }_${p}, ${target});`,
                  );
                }
              }
            }
          }
        }
      }
    }
    body.push("}");
  }
  return backwardInputKernel("subpixelConvBackwardInput", workgroup, tile, J, SUBPIXEL_TAPS, body);
}

/**
 * Backward to the input of {@link subpixelConvKernel} in "box" form: source value x(u, v) fills
 * the 2x2 block at (2u, 2v) of the upsampled map, so
 *
 *   dx(u, v) = sum over (kh, kw) of w[kh][kw] * B(2u + 1 - kh, 2v + 1 - kw),
 *
 * B the 2x2 box sum of dy (see {@link buildSubpixelWgradBoxKernel}): 9 multiply-adds per source
 * value and channel pair instead of the 16 of the sub-pixel form. Per dy channel a thread sums
 * each dy row's column pairs (the three box columns kw), then adjacent rows; the adds are shared by
 * its J channels of dx. The filters are the plain 3x3 ones, packed as the ubo backward packs them
 * (convUboPackKernel with transposeFlip: tap 8 - (kh * 3 + kw) holds w[kh][kw]). Threads and
 * uniforms as {@link buildSubpixelConvBackwardInputKernel}.
 */
function buildSubpixelBoxBackwardInputKernel(
  ocBlock: number,
  tile: SubpixelTile,
  workgroup = 64,
): KernelSource {
  const { rows: R, quads: P } = tile;
  const J = ocBlock;
  const vecsPerTap = J / 4;
  const acc = (r: number, p: number, j: number) => `acc${r}_${p}_${j}`;
  const body: string[] = [];
  // dy row 2 * s0 - 1 + d (d = 0 .. 2R + 1); its column boxes: kw 0 sums columns 2t + 1 and
  // 2t + 2, kw 1 2t and 2t + 1, kw 2 2t - 1 and 2t.
  for (let d = 0; d < 2 * R + 2; d++) {
    const pre = `r${d}_`;
    body.push(...dyRowLoads(d - 1, P, pre));
    for (let p = 0; p < P; p++) {
      body.push(
        `let col${d}_${p}_0 = ${pre}dg1_${p} + ${pre}dg2_${p};`,
        `let col${d}_${p}_1 = ${pre}dg0_${p} + ${pre}dg1_${p};`,
        `let col${d}_${p}_2 = ${pre}dgm1_${p} + ${pre}dg0_${p};`,
      );
    }
  }
  // Row pair m (dy rows 2 * s0 - 1 + m and 2 * s0 + m) meets source row s0 + r through filter row
  // kh = 2r + 2 - m.
  for (let m = 0; m < 2 * R + 1; m++) {
    for (let p = 0; p < P; p++) {
      for (let kw = 0; kw < 3; kw++) {
        body.push(`let box${m}_${p}_${kw} = col${m}_${p}_${kw} + col${m + 1}_${p}_${kw};`);
      }
    }
  }
  // Each accumulator's 9 taps one after another (one stack load and store per 9 on CPU
  // rasterizers).
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let j = 0; j < J; j++) {
        const target = acc(r, p, j);
        for (let kh = 0; kh < 3; kh++) {
          for (let kw = 0; kw < 3; kw++) {
            const weights = `w[wRow + ${(8 - (kh * 3 + kw)) * vecsPerTap + (j >> 2)}u]`;
            const box = `box${2 * r + 2 - kh}_${p}_${kw}`;
            body.push(`${target} = fma(vec4f(${weights}[${j & 3}]), ${box}, ${target});`);
          }
        }
      }
    }
  }
  return backwardInputKernel("subpixelBoxBackwardInput", workgroup, tile, J, 9, body);
}

/** Register blocking of the sub-pixel weight gradient: J output x I input channels per lane. */
export interface SubpixelWgradTile {
  oc: number;
  ic: number;
  /** Source rows per tile (default 1): the tile's input rows are loaded once for all of them. */
  rows?: number;
  /** The 9-sum box form ({@link subpixelWgradBoxKernel}) instead of the 16 sub-pixel sums. */
  box?: boolean;
  /** Source quads per tile of the box form (default 1; must divide the row's quads). */
  quads?: number;
}

/**
 * Backward to the weight of {@link subpixelConvKernel}, laid out like conv3x3WgradKernel (lanes
 * walk contiguous ranges of (n, group of `rows` source rows) with a flat loop over the quads; each
 * lane's partial dw goes to its own slot [lane][outC][inC][9], summed afterwards). Per tile (one
 * source quad of `rows` source rows) a lane forms the 16 sub-pixel sums dU_ab[i][j] of each of its J x I
 * channel pairs (dy rows 2s and 2s + 1 split into even and odd columns against the source rows
 * s - 1 .. s + 1 shifted by a column), and at the end folds each pair's 16 into its 9 taps.
 * Threads: x = lanes, y = output-channel blocks, z = input-channel block (workgroup / ocLanes
 * lanes x ocLanes blocks per workgroup). Uniforms: batch, inC, outC, H, quadsW (the source's),
 * rowGroups (ceil(H / rows)), lanes, rowGroupsPerLane.
 */
function buildSubpixelWgradKernel(
  tile: SubpixelWgradTile,
  workgroup: number,
  ocLanes = 1,
): KernelSource {
  const { oc: J, ic: I } = tile;
  const R = tile.rows ?? 1;
  const acc = (j: number, i: number, a: number, b: number, ii: number, jj: number) =>
    `acc${j}_${i}_${subpixelTap(a, b, ii, jj)}`;
  const accs: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < J; j++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < SUBPIXEL_TAPS; t++) accs.push(`var acc${j}_${i}_${t} = vec4f(0.0);`);
      const taps: string[] = [];
      for (let kh = 0; kh < 3; kh++) {
        for (let kw = 0; kw < 3; kw++) {
          const terms: string[] = [];
          for (let a = 0; a < 2; a++) {
            for (let ii = 0; ii < 2; ii++) {
              if (!subpixelRows(a, ii).includes(kh)) continue;
              for (let b = 0; b < 2; b++) {
                for (let jj = 0; jj < 2; jj++) {
                  if (subpixelRows(b, jj).includes(kw)) terms.push(acc(j, i, a, b, ii, jj));
                }
              }
            }
          }
          taps.push(` partial[at + ${kh * 3 + kw}u] = horizontal(${terms.join(" + ")});`);
        }
      }
      stores.push(
        `if (oc0 + ${j}u < params.outC && ic0 + ${i}u < params.inC) {` +
          ` let at = slot + ((oc0 + ${j}u) * params.inC + ic0 + ${i}u) * 9u;` + taps.join("") +
          ` }`,
      );
    }
  }
  const body: string[] = [];
  // dy of the tile: rows 2(s + r) + a, 8 columns from 2t, as even (b = 0) and odd columns; rows
  // past the map read as zero.
  for (let j = 0; j < J; j++) {
    for (let r = 0; r < R; r++) {
      for (let a = 0; a < 2; a++) {
        const at = `dyAt + ${j}u * dyPlane + ${2 * r + a}u * 2u * params.quadsW`;
        const name = `dy${j}_${r}${a}`;
        const ok = `oh + ${r}u < params.H`;
        body.push(
          `let ${name}a = select(vec4f(0.0), dy[${at}], ${ok});`,
          `let ${name}b = select(vec4f(0.0), dy[${at} + 1u], ${ok});`,
          `let ${name}_0 = vec4f(${name}a.x, ${name}a.z, ${name}b.x, ${name}b.z);`,
          `let ${name}_1 = vec4f(${name}a.y, ${name}a.w, ${name}b.y, ${name}b.w);`,
        );
      }
    }
  }
  // Source row s - 1 + k of input channel i meets row r, parity a through filter row
  // ii = k - r - a.
  for (let i = 0; i < I; i++) {
    for (let k = 0; k < R + 2; k++) {
      body.push(
        "{",
        `let sr = i32(oh) + ${k - 1};`,
        `let inside = sr >= 0 && sr < i32(params.H);`,
        `let c = u32(i32(xAt + ${i}u * planeQuads) + sr * i32(params.quadsW));`,
        `let left = select(0.0, x[c - 1u].w, inside && hasLeft);`,
        `let x00 = select(vec4f(0.0), x[c], inside);`,
        `let right = select(0.0, x[c + 1u].x, inside && hasRight);`,
        `let xm0 = vec4f(left, x00.xyz);`,
        `let xp0 = vec4f(x00.yzw, right);`,
      );
      for (let r = 0; r < R; r++) {
        for (let a = 0; a < 2; a++) {
          const ii = k - r - a;
          if (ii < 0 || ii > 1) continue;
          for (let b = 0; b < 2; b++) {
            for (let jj = 0; jj < 2; jj++) {
              const xv = shifted(jj - 1 + b, 0, "");
              for (let j = 0; j < J; j++) {
                const target = acc(j, i, a, b, ii, jj);
                body.push(`${target} = fma(dy${j}_${r}${a}_${b}, ${xv}, ${target});`);
              }
            }
          }
        }
      }
      body.push("}");
    }
  }
  return wgradWalkKernel(
    "subpixelWgrad",
    { oc: J, ic: I, rows: R, quads: 1 },
    workgroup,
    ocLanes,
    {
      accs,
      // oh is the tile's first source row, quadW its source quad; dy is [.., 2H, 2W].
      tile: [
        "let dyPlane = 4u * planeQuads;",
        "let dyAt = ((n * params.outC + oc0) * 2u * params.H + 2u * oh) * 2u * params.quadsW + " +
        "2u * quadW;",
        "let xAt = (n * params.inC + ic0) * planeQuads + quadW;",
      ],
      body,
      stores,
    },
  );
}

/**
 * Backward to the weight of {@link subpixelConvKernel} in "box" form: 9 sums per channel pair
 * instead of 16. Source value x(u, v) fills the 2x2 block of the upsampled map at (2u, 2v), so
 *
 *   dw[kh][kw] = sum over (u, v) of x(u, v) * B(2u + 1 - kh, 2v + 1 - kw),
 *
 * where B(i, j) = dy(i, j) + dy(i + 1, j) + dy(i, j + 1) + dy(i + 1, j + 1) is the 2x2 box sum of
 * dy (zero outside the map): 9 multiply-adds per source value and pair, against 16 for the
 * sub-pixel sums and 36 on the upsampled map. A lane forms its tile's box sums in registers from
 * dy rows 2s - 1 .. 2s + 2R (row pairs first, then column pairs of even and odd columns), so they
 * cost adds per output channel, shared by the lane's I input channels. Same walk, slots and
 * uniforms as {@link buildSubpixelWgradKernel}.
 */
function buildSubpixelWgradBoxKernel(
  tile: SubpixelWgradTile,
  workgroup: number,
  ocLanes = 1,
): KernelSource {
  const { oc: J, ic: I } = tile;
  const R = tile.rows ?? 1;
  const P = tile.quads ?? 1;
  const { accs, stores } = tapSums(J, I);
  const body: string[] = [];
  // Output channel j: dy rows 2s - 1 + d (d = 0 .. 2R + 1), 8P columns from 2t (vec4s v0 ..
  // v{2P - 1}) plus one either side (l, r); pair m sums rows 2s - 1 + m and 2s + m; box[kw] of
  // pair m, quad p sums its columns 2t' + 1 - kw and 2t' + 2 - kw for the quad's 4 source columns.
  for (let j = 0; j < J; j++) {
    for (let d = 0; d < 2 * R + 2; d++) {
      const row = `dy${j}_${d}`;
      body.push(
        `let ${row}in = dyRow + ${d - 1} >= 0 && dyRow + ${d - 1} < dyRows;`,
        `let ${row}c = u32(i32(dyAt + ${j}u * dyPlane) + ${d - 1} * i32(dyQuads));`,
        `let ${row}l = select(0.0, dy[${row}c - 1u].w, ${row}in && hasLeft);`,
        `let ${row}r = select(0.0, dy[${row}c + ${2 * P}u].x, ${row}in && hasRight);`,
      );
      for (let v = 0; v < 2 * P; v++) {
        body.push(`let ${row}v${v} = select(vec4f(0.0), dy[${row}c + ${v}u], ${row}in);`);
      }
    }
    for (let m = 0; m < 2 * R + 1; m++) {
      const lo = `dy${j}_${m}`, hi = `dy${j}_${m + 1}`, pair = `pair${j}_${m}`;
      body.push(`let ${pair}l = ${lo}l + ${hi}l;`, `let ${pair}r = ${lo}r + ${hi}r;`);
      for (let v = 0; v < 2 * P; v++) body.push(`let ${pair}v${v} = ${lo}v${v} + ${hi}v${v};`);
      for (let q = 0; q < P; q++) {
        const prev = q === 0 ? `${pair}l` : `${pair}v${2 * q - 1}.w`;
        const next = q === P - 1 ? `${pair}r` : `${pair}v${2 * q + 2}.x`;
        const g = strideTwoColumns(`${pair}v${2 * q}`, `${pair}v${2 * q + 1}`, prev, next);
        const box = `box${j}_${m}_${q}`;
        body.push(
          `let ${box}e = ${g.even};`,
          `let ${box}o = ${g.odd};`,
          // kw 0: columns 2t' + 1, 2t' + 2; kw 1: 2t', 2t' + 1; kw 2: 2t' - 1, 2t'.
          `let ${box}_0 = ${box}o + ${g.evenAfter};`,
          `let ${box}_1 = ${box}e + ${box}o;`,
          `let ${box}_2 = ${box}e + ${g.oddBefore};`,
        );
      }
    }
  }
  // Per input channel, its R x P source vec4s first, then each accumulator's R x P multiply-adds
  // (tapSumTerms). Source row s + r meets filter row kh through row pair m = 2r + 2 - kh.
  for (let i = 0; i < I; i++) {
    body.push("{");
    for (let r = 0; r < R; r++) {
      for (let q = 0; q < P; q++) {
        body.push(
          `let x${r}_${q} = select(vec4f(0.0), x[xAt + ${i}u * planeQuads + ${r}u * ` +
            `params.quadsW + ${q}u], oh + ${r}u < params.H);`,
        );
      }
    }
    body.push(
      ...tapSumTerms(J, i, R, P, (j, kh, kw, r, q) => [
        `box${j}_${2 * r + 2 - kh}_${q}_${kw}`,
        `x${r}_${q}`,
      ]),
    );
    body.push("}");
  }
  return wgradWalkKernel(
    "subpixelWgradBox",
    { oc: J, ic: I, rows: R, quads: P },
    workgroup,
    ocLanes,
    {
      accs,
      // oh is the tile's first source row, quadW its first source quad; dy is [.., 2H, 2W].
      tile: [
        "let dyPlane = 4u * planeQuads;",
        "let dyQuads = 2u * params.quadsW;",
        "let dyRows = 2 * i32(params.H);",
        "let dyRow = 2 * i32(oh);",
        "let dyAt = ((n * params.outC + oc0) * 2u * params.H + 2u * oh) * dyQuads + 2u * quadW;",
        "let xAt = (n * params.inC + ic0) * planeQuads + oh * params.quadsW + quadW;",
      ],
      body,
      stores,
    },
  );
}

// Each template builds a specialization once (memoizedTemplate); the builders above write it.
/** {@link buildSubpixelPackKernel}, each specialization built once. */
export const subpixelPackKernel = memoizedTemplate(buildSubpixelPackKernel);
/** {@link buildSubpixelConvKernel}, each specialization built once. */
export const subpixelConvKernel = memoizedTemplate(buildSubpixelConvKernel);
/** {@link buildSubpixelConvBackwardInputKernel}, each specialization built once. */
export const subpixelConvBackwardInputKernel = memoizedTemplate(
  buildSubpixelConvBackwardInputKernel,
);
/** {@link buildSubpixelBoxBackwardInputKernel}, each specialization built once. */
export const subpixelBoxBackwardInputKernel = memoizedTemplate(buildSubpixelBoxBackwardInputKernel);
/** {@link buildSubpixelWgradKernel}, each specialization built once. */
export const subpixelWgradKernel = memoizedTemplate(buildSubpixelWgradKernel);
/** {@link buildSubpixelWgradBoxKernel}, each specialization built once. */
export const subpixelWgradBoxKernel = memoizedTemplate(buildSubpixelWgradBoxKernel);

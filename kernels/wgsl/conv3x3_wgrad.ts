/**
 * Backward-to-weight of the 3x3 family ("ubo" variant: 3x3, stride 1, padding 1, width % 4 == 0):
 * dw[oc, ic, kh, kw] = sum over (n, oh, ow) of dy[n, oc, oh, ow] * x[n, ic, oh + kh - 1, ow + kw - 1].
 *
 * A GEMM whose reduction runs over the pixels, so the pixels are split over lanes: each lane owns a
 * block of J output x I input channels x 9 taps (vec4 accumulators, one component per column of a
 * quad) and walks a contiguous range of row groups, a tile of R rows x P column quads at a time.
 * Per tile it loads J x R x P dy vec4s and I x (R + 2) rows of P vec4s plus one edge value each
 * side, and does J x I x 9 x R x P vec4 multiply-adds. Both operands are plain storage loads; the
 * work per load is what matters on CPU rasterizers (llvmpipe turns every storage load into a
 * per-lane loop): J 8, I 4, 1 x 2 tiles reach 19-24 GFLOP/s there against ~3.6 for the former
 * dy-in-uniform-windows kernel, J 16, I 8 (round 11) 1.4-1.5x more on the paper's encoder layers. Each lane writes its sums to its own slot, [lane][outC][inC][9];
 * the slots are summed afterwards (kernels/reductions.ts reduceAxis), so the result never depends
 * on dispatch order and dw needs no clearing.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, memoizedTemplate } from "./common.ts";
import { tileRowLoads, tileRowTap } from "./conv_ubo.ts";

/** Register blocking of one lane: channel blocks and the pixel tile it walks. */
export interface WgradTile {
  /** Output channels per lane (J). */
  oc: number;
  /** Input channels per lane (I). */
  ic: number;
  /** Output rows per tile (R). */
  rows: number;
  /** Column quads per tile (P); must divide the row's quads. */
  quads: number;
}

/**
 * Threads: x = lanes, y = output-channel blocks, z = input-channel block. A workgroup holds
 * `workgroup / ocLanes` lanes times `ocLanes` consecutive output-channel blocks: layers with many
 * channels have few lanes (each lane's slot holds a whole dw), and with one block per workgroup
 * most of a CPU rasterizer's SIMD lanes would idle.
 * Uniforms: batch, inC, outC, H, quadsW, rowGroups (ceil(H / R)), lanes, rowGroupsPerLane.
 */
function buildConv3x3WgradKernel(
  tile: WgradTile,
  workgroup: number,
  ocLanes = 1,
): KernelSource {
  if (workgroup % ocLanes !== 0) {
    throw new Error(`conv3x3WgradKernel: ${ocLanes} channel lanes do not divide ${workgroup}`);
  }
  const { oc: J, ic: I, rows: R, quads: P } = tile;
  const { accs, stores } = tapSums(J, I);
  const body: string[] = [];
  // dy of the tile, J x R x P vec4s; rows past the map read as zero. Channels past outC read
  // whatever lies there (their sums are never stored).
  for (let j = 0; j < J; j++) {
    for (let r = 0; r < R; r++) {
      for (let p = 0; p < P; p++) {
        body.push(
          `let dy${j}_${r}_${p} = select(vec4f(0.0), ` +
            `dy[dyAt + ${j}u * planeQuads + ${r}u * params.quadsW + ${p}u], oh + ${r}u < params.H);`,
        );
      }
    }
  }
  // Per input channel, its R + 2 rows first, then each accumulator's R x P multiply-adds.
  for (let i = 0; i < I; i++) {
    body.push("{");
    for (let k = 0; k < R + 2; k++) {
      body.push(...tileRowLoads("oh", `xAt + ${i}u * planeQuads`, k - 1, P, undefined, `_${k}`));
    }
    // Input row r + kh (ih = oh - 1 + r + kh) meets output row r through filter row kh.
    body.push(
      ...tapSumTerms(J, i, R, P, (j, kh, kw, r, p) => [
        `dy${j}_${r}_${p}`,
        tileRowTap(kw, p, `_${r + kh}`),
      ]),
    );
    body.push("}");
  }
  return wgradWalkKernel(
    "conv3x3Wgrad",
    { oc: J, ic: I, rows: R, quads: P },
    workgroup,
    ocLanes,
    {
      accs,
      tile: [
        "let dyAt = ((n * params.outC + oc0) * params.H + oh) * params.quadsW + quadW;",
        "let xAt = ((n * params.inC + ic0) * params.H + oh) * params.quadsW + quadW;",
      ],
      body,
      stores,
    },
  );
}

/**
 * The accumulators acc{j}_{i}_{tap} (vec4) of a lane's J x I channel pairs x 9 taps and the lines
 * storing their horizontal sums into the lane's slot (channels past the layer skipped): shared by
 * the 3x3 weight gradient and the sub-pixel box one.
 */
export function tapSums(J: number, I: number): { accs: string[]; stores: string[] } {
  const accs: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < J; j++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < 9; t++) accs.push(`var acc${j}_${i}_${t} = vec4f(0.0);`);
      stores.push(
        `if (oc0 + ${j}u < params.outC && ic0 + ${i}u < params.inC) {` +
          ` let at = slot + ((oc0 + ${j}u) * params.inC + ic0 + ${i}u) * 9u;` +
          Array.from(
            { length: 9 },
            (_, t) => ` partial[at + ${t}u] = horizontal(acc${j}_${i}_${t});`,
          ).join("") + ` }`,
      );
    }
  }
  return { accs, stores };
}

/**
 * The multiply-adds of a lane's {@link tapSums} accumulators for input channel `i` over a tile of
 * R x P: for each output channel j and tap (kh, kw), its R x P terms one after another (on CPU
 * rasterizers the accumulators live on the stack: one load and one store per R x P). `factors`
 * gives the two vec4 expressions of the term at row r, quad p.
 */
export function tapSumTerms(
  J: number,
  i: number,
  R: number,
  P: number,
  factors: (j: number, kh: number, kw: number, r: number, p: number) => [string, string],
): string[] {
  const lines: string[] = [];
  for (let j = 0; j < J; j++) {
    for (let kh = 0; kh < 3; kh++) {
      for (let kw = 0; kw < 3; kw++) {
        const acc = `acc${j}_${i}_${kh * 3 + kw}`;
        for (let r = 0; r < R; r++) {
          for (let p = 0; p < P; p++) {
            const [a, b] = factors(j, kh, kw, r, p);
            lines.push(`${acc} = fma(${a}, ${b}, ${acc});`);
          }
        }
      }
    }
  }
  return lines;
}

/**
 * A lane-split weight-gradient kernel (this file's, and the sub-pixel one in conv_subpixel.ts):
 * bindings x, dy, partial; thread (lane, output-channel block oc0, input-channel block ic0); the
 * lane walks its row groups' tiles in one flat loop with (n, oh, quadW) advanced by counters (no
 * division per tile; a loop over a row's tiles nested in a loop over rows cost ~40% on maps 8 wide:
 * llvmpipe moves the many live accumulators at every inner-loop entry and exit), `tile` lines
 * address the tile, `body` accumulates, and `stores` write the lane's slot (at `slot`). The
 * pipeline is keyed by the tile, workgroup and channel lanes. Uniforms: batch, inC, outC, H,
 * quadsW, rowGroups, lanes, rowGroupsPerLane.
 */
export function wgradWalkKernel(
  family: string,
  tile: { oc: number; ic: number; rows: number; quads: number },
  workgroup: number,
  ocLanes: number,
  parts: { accs: string[]; tile: string[]; body: string[]; stores: string[] },
): KernelSource {
  const { oc: J, ic: I, rows: R, quads: P } = tile;
  return kernel(
    family,
    { j: J, i: I, rows: R, quads: P, workgroup, ocLanes },
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "vec4f"], ["dy", "read", "vec4f"], ["partial", "readWrite", "f32"]],
        "batch: u32, inC: u32, outC: u32, H: u32, quadsW: u32, rowGroups: u32, lanes: u32, " +
          "rowGroupsPerLane: u32,",
      )
    }
fn horizontal(v: vec4f) -> f32 {
  return (v.x + v.y) + (v.z + v.w);
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lane = wid.x * ${workgroup / ocLanes}u + lid / ${ocLanes}u;
  let oc0 = (wid.y * ${ocLanes}u + lid % ${ocLanes}u) * ${J}u;
  if (lane >= params.lanes || oc0 >= params.outC) { return; }
  let ic0 = wid.z * ${I}u;
  let planeQuads = params.H * params.quadsW;
  let first = lane * params.rowGroupsPerLane;
  let last = min(params.batch * params.rowGroups, first + params.rowGroupsPerLane);
  var n = first / params.rowGroups;
  var oh = (first - n * params.rowGroups) * ${R}u;
  var quadW = 0u;
  let tiles = (last - min(first, last)) * (params.quadsW / ${P}u);
  ${parts.accs.join("\n  ")}
  for (var tile = 0u; tile < tiles; tile = tile + 1u) {
    let hasLeft = quadW > 0u;
    let hasRight = quadW + ${P}u < params.quadsW;
    ${parts.tile.join("\n    ")}
    ${parts.body.join("\n    ")}
    quadW = quadW + ${P}u;
    if (quadW >= params.quadsW) {
      quadW = 0u;
      oh = oh + ${R}u;
      if (oh >= params.H) {
        oh = 0u;
        n = n + 1u;
      }
    }
  }
  let slot = lane * params.outC * params.inC * 9u;
  ${parts.stores.join("\n  ")}
}`,
  );
}

// Each template builds a specialization once (memoizedTemplate); the builders above write it.
/** {@link buildConv3x3WgradKernel}, each specialization built once. */
export const conv3x3WgradKernel = memoizedTemplate(buildConv3x3WgradKernel);

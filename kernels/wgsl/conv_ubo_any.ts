/**
 * The "ubo-any" conv variant: any kernel size, stride and padding (the ResNet stem's 7x7 stride 2,
 * 1x1 stride-2 downsampling, 3x3 stride 2, and layers whose width is not a multiple of 4), with one
 * operand read from a uniform buffer so that CPU rasterizers broadcast it instead of running a
 * per-lane loop (see kernels/wgsl/conv_ubo.ts for the 3x3 stride-1 specialization).
 *
 * - Forward: lanes are output pixels, a workgroup owns a block of J output channels whose weights
 *   (packed [icLocal][kh][kw][j]) are uniform; each lane loads one input value per tap and does J
 *   multiply-adds with it.
 * - Backward to the input: the gather form, dispatched once per stride phase (ih % s, iw % s) so
 *   that the taps that reach a phase are the same for every lane (uniform loops); lanes are input
 *   pixels of that phase, a workgroup owns J input channels (weights packed [ocLocal][kh][kw][j]).
 * - Backward to the weight: lanes are (ic, kh, kw) rows of the im2col matrix, a workgroup walks a
 *   window of pixels whose dy for J output channels is uniform (packed [pixel][j]).
 *
 * Windows of packed operands are bound at 256-byte aligned offsets, at most 64 KiB each.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, memoizedTemplate } from "./common.ts";

/** Channels per workgroup block (J) by default. */
export const ANY_BLOCK = 16;
/** The smaller block, for layers with at most this many blocked channels (e.g. 3 -> 8 stems). */
export const ANY_BLOCK_SMALL = 8;

let smallBlocks = true;

/** Allow or forbid the 8-channel blocks (benchmarks compare against the 16-only baseline). */
export function setAnySmallBlocks(enabled: boolean): void {
  smallBlocks = enabled;
}

/** J for a layer whose blocked channel count is `channels`: 8 when that avoids a half-empty 16. */
export function anyBlockFor(channels: number): number {
  return smallBlocks && channels <= ANY_BLOCK_SMALL ? ANY_BLOCK_SMALL : ANY_BLOCK;
}

function flagsWithBlock(
  flags: Record<string, string | number | boolean>,
  j: number,
): Record<string, string | number | boolean> {
  return j === ANY_BLOCK ? flags : { ...flags, j };
}
/** The flags plus the workgroup size when it is not the default (keys of 64-thread kernels keep). */
function withWorkgroup(
  flags: Record<string, string | number | boolean>,
  workgroup: number,
): Record<string, string | number | boolean> {
  return workgroup === ANY_WORKGROUP ? flags : { ...flags, wg: workgroup };
}
/** vec4s in the declared uniform window (64 KiB). */
export const ANY_WINDOW_VEC4 = 4096;
/** Threads per workgroup. */
export const ANY_WORKGROUP = 64;

/**
 * Pack weights w [outC, inC, taps] into segments (chunk, block) of [loopLocal][tap][j] floats, each
 * padded to segFloats. "block" channels are the J-blocked ones, "loop" channels the chunked ones:
 * forward block = oc, loop = ic; with `transpose` (backward to the input) block = ic, loop = oc.
 * Threads: one per packed float. Uniforms: total, blockC, loopC, taps, loopChunk, blocks,
 * segFloats.
 */
function buildConvAnyPackKernel(transpose: boolean, jBlock = ANY_BLOCK): KernelSource {
  const source = transpose
    ? "w[(loopCh * params.blockC + blockCh) * params.taps + tap]"
    : "w[(blockCh * params.loopC + loopCh) * params.taps + tap]";
  return kernel(
    "convAnyPack",
    flagsWithBlock({ transpose }, jBlock),
    ["read", "readWrite"],
    `${
      declareBindings(
        [["w", "read"], ["packed", "readWrite"]],
        "total: u32, blockC: u32, loopC: u32, taps: u32, loopChunk: u32, blocks: u32, " +
          "segFloats: u32,",
      )
    }
${linearMain()}
  if (index >= params.total) { return; }
  let segment = index / params.segFloats;
  let within = index - segment * params.segFloats;
  let chunk = segment / params.blocks;
  let block = segment - chunk * params.blocks;
  let j = within % ${jBlock}u;
  let t = within / ${jBlock}u;
  let tap = t % params.taps;
  let loopLocal = t / params.taps;
  let blockCh = block * ${jBlock}u + j;
  let loopCh = chunk * params.loopChunk + loopLocal;
  var value = 0.0;
  if (loopLocal < params.loopChunk && loopCh < params.loopC && blockCh < params.blockC) {
    value = ${source};
  }
  packed[index] = value;
}`,
  );
}

const GEOMETRY = "batch: u32, inC: u32, inH: u32, inW: u32, outC: u32, outH: u32, outW: u32, " +
  "kH: u32, kW: u32, stride: u32, pad: u32,";

function accumulators(j: number): { decl: string; fma: (w: string, v: string) => string } {
  const JV = j / 4;
  const decl = Array.from({ length: JV }, (_, i) => `var acc${i} = vec4f(0.0);`).join("\n  ");
  const fma = (w: string, v: string) =>
    Array.from({ length: JV }, (_, i) => `acc${i} = acc${i} + ${w}[wBase + ${i}u] * ${v};`)
      .join("\n          ");
  return { decl, fma };
}

function stores(jBlock: number, call: (j: string, acc: string) => string): string {
  const JV = jBlock / 4;
  const out: string[] = [];
  for (let i = 0; i < JV; i++) {
    for (let c = 0; c < 4; c++) out.push(call(`${i * 4 + c}u`, `acc${i}[${c}]`));
  }
  return out.join("\n  ");
}

/**
 * Forward over one input-channel chunk and a window of output-channel blocks. Threads: x = output
 * pixels (batch * outH * outW) in groups of `workgroup`, folded over z; y = block in the window.
 * Uniforms: geometry, icStart, icCount, accumulate, blockBase, segVec4, foldX, pixels, khStart,
 * khEnd, kwStart, kwEnd (the taps any output pixel reaches).
 */
function buildConvAnyForwardKernel(
  bias: boolean,
  jBlock = ANY_BLOCK,
  workgroup = ANY_WORKGROUP,
): KernelSource {
  const JV = jBlock / 4;
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", "f32"],
    ["w", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  bindings.push(["y", "readWrite", "f32"]);
  const { decl, fma } = accumulators(jBlock);
  return kernel(
    "convAnyForward",
    withWorkgroup(flagsWithBlock({ bias }, jBlock), workgroup),
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        GEOMETRY + " icStart: u32, icCount: u32, accumulate: u32, blockBase: u32, segVec4: u32, " +
          "foldX: u32, pixels: u32, khStart: u32, khEnd: u32, kwStart: u32, kwEnd: u32,",
      )
    }
fn store(n: u32, oc: u32, oh: u32, ow: u32, acc: f32) {
  if (oc >= params.outC) { return; }
  let at = ((n * params.outC + oc) * params.outH + oh) * params.outW + ow;
  if (params.accumulate != 0u) {
    y[at] = y[at] + acc;
  } else {
    y[at] = acc${bias ? " + b[oc]" : ""};
  }
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  // No barriers: lanes past the end leave at once (whole idle SIMD groups then skip the loops).
  if (p >= params.pixels) { return; }
  let q = p;
  let ow = q % params.outW;
  let t = q / params.outW;
  let oh = t % params.outH;
  let n = t / params.outH;
  let oc0 = (params.blockBase + wid.y) * ${jBlock}u;
  let seg = wid.y * params.segVec4;
  let ihBase = i32(oh * params.stride) - i32(params.pad);
  let iwBase = i32(ow * params.stride) - i32(params.pad);
  ${decl}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let plane = (n * params.inC + params.icStart + icLocal) * params.inH;
    for (var kh = params.khStart; kh < params.khEnd; kh = kh + 1u) {
      let ih = ihBase + i32(kh);
      let rowOk = ih >= 0 && ih < i32(params.inH);
      let row = (plane + u32(max(ih, 0))) * params.inW;
      for (var kw = params.kwStart; kw < params.kwEnd; kw = kw + 1u) {
        let iw = iwBase + i32(kw);
        var v = 0.0;
        if (rowOk && iw >= 0 && iw < i32(params.inW)) { v = x[row + u32(iw)]; }
        let wBase = seg + ((icLocal * params.kH + kh) * params.kW + kw) * ${JV}u;
        ${fma("w", "v")}
      }
    }
  }
  ${stores(jBlock, (j, acc) => `store(n, oc0 + ${j}, oh, ow, ${acc});`)}
}`,
  );
}

/**
 * Backward to the input for one stride phase (rh, rw), one output-channel chunk and a window of
 * input-channel blocks: dx[n, ic, ih, iw] = sum over oc, kh, kw of dy[n, oc, oh, ow] *
 * w[oc, ic, kh, kw] with oh * s = ih + pad - kh. Lanes are the phase's pixels ih = rh + s * i,
 * iw = rw + s * j; the taps (kh = khStart, khStart + s, ... < khEnd) are those of the phase.
 * Uniforms: geometry, ocStart, ocCount, accumulate, blockBase, segVec4, foldX, pixels, rh, rw,
 * phaseH, phaseW, khStart, khEnd, kwStart, kwEnd.
 */
function buildConvAnyBackwardInputKernel(
  jBlock = ANY_BLOCK,
  workgroup = ANY_WORKGROUP,
): KernelSource {
  const JV = jBlock / 4;
  const { decl, fma } = accumulators(jBlock);
  return kernel(
    "convAnyBackwardInput",
    withWorkgroup(flagsWithBlock({}, jBlock), workgroup),
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["dy", "read", "f32"], ["w", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`], [
          "dx",
          "readWrite",
          "f32",
        ]],
        GEOMETRY + " ocStart: u32, ocCount: u32, accumulate: u32, blockBase: u32, segVec4: u32, " +
          "foldX: u32, pixels: u32, rh: u32, rw: u32, phaseH: u32, phaseW: u32, khStart: u32, " +
          "khEnd: u32, kwStart: u32, kwEnd: u32,",
      )
    }
fn store(n: u32, ic: u32, ih: u32, iw: u32, acc: f32) {
  if (ic >= params.inC) { return; }
  let at = ((n * params.inC + ic) * params.inH + ih) * params.inW + iw;
  if (params.accumulate != 0u) {
    dx[at] = dx[at] + acc;
  } else {
    dx[at] = acc;
  }
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  // No barriers: lanes past the end leave at once (whole idle SIMD groups then skip the loops).
  if (p >= params.pixels) { return; }
  let q = p;
  let jw = q % params.phaseW;
  let t = q / params.phaseW;
  let jh = t % params.phaseH;
  let n = t / params.phaseH;
  let ih = params.rh + params.stride * jh;
  let iw = params.rw + params.stride * jw;
  let ic0 = (params.blockBase + wid.y) * ${jBlock}u;
  let seg = wid.y * params.segVec4;
  let s = i32(params.stride);
  ${decl}
  for (var ocLocal = 0u; ocLocal < params.ocCount; ocLocal = ocLocal + 1u) {
    let plane = (n * params.outC + params.ocStart + ocLocal) * params.outH;
    for (var kh = params.khStart; kh < params.khEnd; kh = kh + params.stride) {
      let oh = (i32(ih + params.pad) - i32(kh)) / s;
      let rowOk = oh >= 0 && oh < i32(params.outH);
      let row = (plane + u32(max(oh, 0))) * params.outW;
      for (var kw = params.kwStart; kw < params.kwEnd; kw = kw + params.stride) {
        let ow = (i32(iw + params.pad) - i32(kw)) / s;
        var v = 0.0;
        if (rowOk && ow >= 0 && ow < i32(params.outW)) { v = dy[row + u32(ow)]; }
        let wBase = seg + ((ocLocal * params.kH + kh) * params.kW + kw) * ${JV}u;
        ${fma("w", "v")}
      }
    }
  }
  ${stores(jBlock, (j, acc) => `store(n, ic0 + ${j}, ih, iw, ${acc});`)}
}`,
  );
}

/**
 * Pack dy [batch, outC, outH * outW] into [block][pixelsPadded][J] floats (zero past outC and past
 * the real pixels). Threads: one per packed float. Uniforms: total, outC, pixels, pixelsPadded,
 * plane (outH * outW).
 */
function buildConvAnyDyPackKernel(jBlock = ANY_BLOCK): KernelSource {
  return kernel(
    "convAnyDyPack",
    flagsWithBlock({}, jBlock),
    ["read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read"], ["packed", "readWrite"]],
        "total: u32, outC: u32, pixels: u32, pixelsPadded: u32, plane: u32,",
      )
    }
${linearMain()}
  if (index >= params.total) { return; }
  let j = index % ${jBlock}u;
  let t = index / ${jBlock}u;
  let pixel = t % params.pixelsPadded;
  let block = t / params.pixelsPadded;
  let oc = block * ${jBlock}u + j;
  var value = 0.0;
  if (pixel < params.pixels && oc < params.outC) {
    let n = pixel / params.plane;
    value = dy[(n * params.outC + oc) * params.plane + (pixel - n * params.plane)];
  }
  packed[index] = value;
}`,
  );
}

/**
 * Backward to the weight over one window of pixels for one block of J output channels. Threads:
 * x = (ic, kh, kw) lanes in groups of 64; y = split of the window's pixels (partial-sum slot).
 * Uniforms: geometry, pixelStart (global pixel index n * outH * outW + oh * outW + ow of the
 * window's first pixel), count (pixels in the window), perSplit, ocBase, accumulate, slotSize,
 * blockVec4 (vec4s between the dy of consecutive blocks in the window, for z = block).
 */
function buildConvAnyBackwardWeightKernel(jBlock = ANY_BLOCK): KernelSource {
  const JV = jBlock / 4;
  const { decl, fma } = accumulators(jBlock);
  return kernel(
    "convAnyBackwardWeight",
    flagsWithBlock({}, jBlock),
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "f32"], ["g", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`], [
          "partial",
          "readWrite",
          "f32",
        ]],
        GEOMETRY + " pixelStart: u32, count: u32, perSplit: u32, ocBase: u32, accumulate: u32, " +
          "slotSize: u32, blockVec4: u32,",
      )
    }
fn store(slot: u32, oc: u32, row: u32, acc: f32) {
  if (oc >= params.outC) { return; }
  let at = slot * params.slotSize + oc * params.inC * params.kH * params.kW + row;
  if (params.accumulate != 0u) {
    partial[at] = partial[at] + acc;
  } else {
    partial[at] = acc;
  }
}
@compute @workgroup_size(${ANY_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lane = wid.x * ${ANY_WORKGROUP}u + lid;
  let taps = params.kH * params.kW;
  if (lane >= params.inC * taps) { return; }
  let ic = lane / taps;
  let tap = lane - ic * taps;
  let kh = tap / params.kW;
  let kw = tap - kh * params.kW;
  let slot = wid.y;
  // z: a block of J output channels when every block's dy lies in this one window.
  let blockOffset = wid.z * params.blockVec4;
  let ocBase = params.ocBase + wid.z * ${jBlock}u;
  let first = slot * params.perSplit;
  let last = min(params.count, first + params.perSplit);
  let plane = params.outH * params.outW;
  // Walk (n, oh, ow) incrementally from the split's first pixel (uniform counters).
  let start = params.pixelStart + first;
  var n = start / plane;
  var oh = (start - n * plane) / params.outW;
  var ow = start - n * plane - oh * params.outW;
  let ihOffset = i32(kh) - i32(params.pad);
  let iwOffset = i32(kw) - i32(params.pad);
  ${decl}
  for (var i = first; i < last; i = i + 1u) {
    let ih = i32(oh * params.stride) + ihOffset;
    let iw = i32(ow * params.stride) + iwOffset;
    var v = 0.0;
    if (ih >= 0 && ih < i32(params.inH) && iw >= 0 && iw < i32(params.inW)) {
      v = x[((n * params.inC + ic) * params.inH + u32(ih)) * params.inW + u32(iw)];
    }
    let wBase = blockOffset + i * ${JV}u;
    ${fma("g", "v")}
    ow = ow + 1u;
    if (ow == params.outW) {
      ow = 0u;
      oh = oh + 1u;
      if (oh == params.outH) {
        oh = 0u;
        n = n + 1u;
      }
    }
  }
  ${stores(jBlock, (j, acc) => `store(slot, ocBase + ${j}, lane, ${acc});`)}
}`,
  );
}

/** Widest kernel and largest stride the column-blocked forward unrolls. */
export const COLS_MAX_KW = 7;
export const COLS_MAX_STRIDE = 2;

/**
 * WGSL lines (for a block of their own) loading `span` consecutive values of one input row as
 * splatted vec4s v0 .. v{span - 1}: row `ih` (an i32 expression) of the plane starting at row
 * `plane` (u32) of x (vec4s), from the quad `quadBase` (an i32 in scope, aligned: the values start
 * `lead` components into it) on; quads outside the row or rows outside the map read zeros. Needs
 * `quadsW` (i32: quads per row) and `params.inH` in scope.
 */
function quadRowLoads(ih: string, plane: string, lead: number, span: number): string[] {
  const lines = [
    `  let ih = ${ih};`,
    `  let rowOk = ih >= 0 && ih < i32(params.inH);`,
    `  let rowQuad = (${plane} + u32(clamp(ih, 0, i32(params.inH) - 1))) * u32(quadsW);`,
  ];
  for (let k = 0; k < Math.ceil((lead + span) / 4); k++) {
    lines.push(
      `  let quad${k} = select(vec4f(0.0), x[rowQuad + u32(clamp(quadBase + ${k}, 0, quadsW - 1))], ` +
        `rowOk && quadBase + ${k} >= 0 && quadBase + ${k} < quadsW);`,
    );
  }
  for (let c = 0; c < span; c++) {
    lines.push(`  let v${c} = vec4f(quad${(lead + c) >> 2}.${"xyzw"[(lead + c) & 3]});`);
  }
  return lines;
}

/**
 * Output rows per lane of the "ubo-cols" forward past one (kernels/conv_ubo_any.ts rowsFor): the
 * kernel height and padding compiled in too, and with `vec4` x and y read and written as vec4s
 * (inW, outW and cols * stride multiples of 4, 4 columns per lane).
 */
export interface ColsForwardRows {
  rows: number;
  kH: number;
  pad: number;
  vec4: boolean;
}

/**
 * The "ubo-cols" forward: the ubo-any forward with P output columns per lane and the kernel width
 * K and stride S compiled in, so that the (P - 1) * S + K input values of one input row that the
 * lane's P pixels read are loaded once (the ResNet stem, 7x7 stride 2, loads 13 values per row
 * for 4 pixels instead of 28) and every uniform weight vector feeds P pixels. Threads: x = (n, oh,
 * column group) lanes in groups of `workgroup`, folded over z; y = block in the window. Uniforms:
 * those of {@link convAnyForwardKernel} plus colGroups (ceil(outW / P)).
 *
 * With `several` (R > 1 rows per lane, "convRowsForward"): the (R - 1) * S + K input rows the
 * lane's rows read are each loaded once and feed every output row they reach, unrolled, so the
 * stem loads 13 rows for 4 output rows instead of 28. Rows and columns outside the map are zeros
 * (selects); the khStart .. kwEnd uniforms are not read; x = (n, row group, column group) lanes;
 * one more uniform, rowGroups (ceil(outH / R)).
 */
function buildConvColsForwardKernel(
  bias: boolean,
  jBlock: number,
  kW: number,
  stride: number,
  cols: number,
  workgroup = ANY_WORKGROUP,
  several: ColsForwardRows | null = null,
): KernelSource {
  const JV = jBlock / 4;
  const span = (cols - 1) * stride + kW;
  const rows = several?.rows ?? 1;
  const vec4 = several?.vec4 ?? false;
  const element = vec4 ? "vec4f" : "f32";
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", element],
    ["w", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  bindings.push(["y", "readWrite", element]);
  const decl: string[] = [];
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < cols; p++) {
      for (let i = 0; i < JV; i++) decl.push(`var acc${r}_${p}_${i} = vec4f(0.0);`);
    }
  }
  const scalarLoads = (indent: string) =>
    Array.from(
      { length: span },
      (_, t) =>
        `${indent}let v${t} = select(0.0, x[row + u32(clamp(iwBase + ${t}, 0, inW - 1))], ` +
        `rowOk && iwBase + ${t} >= 0 && iwBase + ${t} < inW);`,
    );
  // One row per lane: the kernel rows a loop over [khStart, khEnd), one input row each.
  let body = "";
  if (!several) {
    const fmas: string[] = [];
    for (let kw = 0; kw < kW; kw++) {
      for (let i = 0; i < JV; i++) {
        fmas.push(`let w${kw}_${i} = w[wRow + ${kw * JV + i}u];`);
        for (let p = 0; p < cols; p++) {
          fmas.push(`acc0_${p}_${i} = acc0_${p}_${i} + w${kw}_${i} * v${p * stride + kw};`);
        }
      }
    }
    body = `for (var kh = params.khStart; kh < params.khEnd; kh = kh + 1u) {
      let ih = ihBase + i32(kh);
      let rowOk = ih >= 0 && ih < i32(params.inH);
      let row = (plane + u32(max(ih, 0))) * params.inW;
      let wRow = seg + (icLocal * params.kH + kh) * ${kW * JV}u;
      ${scalarLoads("").join("\n      ")}
      ${fmas.join("\n      ")}
    }`;
  } else {
    // Input row t of the lane's window meets output row r through kernel row t - r * S: each row
    // is loaded once, feeds the output rows it reaches, and is dead before the next row's loads.
    // vec4: a lane's row segment starts `lead` columns into an aligned quad, for every lane.
    const { kH, pad } = several;
    const lead = ((-pad % 4) + 4) % 4;
    const lines: string[] = [`let wPlane = seg + icLocal * ${kH * kW * JV}u;`];
    for (let t = 0; t < (rows - 1) * stride + kH; t++) {
      lines.push(`{`);
      if (vec4) {
        lines.push(...quadRowLoads(`ihBase + ${t}`, "plane", lead, span));
      } else {
        lines.push(`  let ih = ihBase + ${t};`);
        lines.push(`  let rowOk = ih >= 0 && ih < i32(params.inH);`);
        lines.push(`  let row = (plane + u32(clamp(ih, 0, i32(params.inH) - 1))) * params.inW;`);
        lines.push(
          ...scalarLoads("  ").map((line) =>
            line.replace(/select\((.*)\);$/, "vec4f(select($1));")
          ),
        );
      }
      for (let r = 0; r < rows; r++) {
        const kh = t - r * stride;
        if (kh < 0 || kh >= kH) continue;
        for (let kw = 0; kw < kW; kw++) {
          for (let i = 0; i < JV; i++) {
            const weight = `w[wPlane + ${(kh * kW + kw) * JV + i}u]`;
            for (let p = 0; p < cols; p++) {
              const acc = `acc${r}_${p}_${i}`;
              lines.push(`  ${acc} = fma(${weight}, v${p * stride + kw}, ${acc});`);
            }
          }
        }
      }
      lines.push(`}`);
    }
    body = lines.join("\n    ");
  }
  const storeLines: string[] = [];
  for (let r = 0; r < rows; r++) {
    if (vec4) {
      const lines: string[] = [];
      for (let q = 0; q < cols / 4; q++) {
        for (let i = 0; i < JV; i++) {
          for (let c = 0; c < 4; c++) {
            const value = `vec4f(${
              [0, 1, 2, 3].map((k) => `acc${r}_${4 * q + k}_${i}[${c}]`).join(", ")
            })`;
            lines.push(
              `store(base + ${i * 4 + c}u * chanStride + ${q}u, oc0 + ${i * 4 + c}u, ${value});`,
            );
          }
        }
      }
      storeLines.push(`if (oh0 + ${r}u < params.outH) {
    let base = (outBase + ${r}u * params.outW) / 4u;
    ${lines.join("\n    ")}
  }`);
      continue;
    }
    for (let p = 0; p < cols; p++) {
      const pixel: string[] = [];
      for (let i = 0; i < JV; i++) {
        for (let c = 0; c < 4; c++) {
          pixel.push(
            `store(base + ${i * 4 + c}u * chanStride, oc0 + ${
              i * 4 + c
            }u, acc${r}_${p}_${i}[${c}]);`,
          );
        }
      }
      const rowOk = several ? `oh0 + ${r}u < params.outH && ` : "";
      const rowOffset = several ? ` + ${r}u * params.outW` : "";
      storeLines.push(`if (${rowOk}ow0 + ${p}u < params.outW) {
    let base = outBase${rowOffset} + ${p}u;
    ${pixel.join("\n    ")}
  }`);
    }
  }
  const flags: Record<string, number | boolean> = several
    ? {
      bias,
      j: jBlock,
      kh: several.kH,
      kw: kW,
      s: stride,
      p: cols,
      r: rows,
      pad: several.pad,
      vec4,
    }
    : { bias, j: jBlock, kw: kW, s: stride, p: cols };
  return kernel(
    several ? "convRowsForward" : "convColsForward",
    withWorkgroup(flags, workgroup),
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        GEOMETRY + " icStart: u32, icCount: u32, accumulate: u32, blockBase: u32, segVec4: u32, " +
          "foldX: u32, pixels: u32, khStart: u32, khEnd: u32, kwStart: u32, kwEnd: u32, " +
          `colGroups: u32,${several ? " rowGroups: u32," : ""}`,
      )
    }
fn store(at: u32, oc: u32, acc: ${element}) {
  if (oc >= params.outC) { return; }
  if (params.accumulate != 0u) {
    y[at] = y[at] + acc;
  } else {
    y[at] = acc${bias ? ` + ${element}(b[oc])` : ""};
  }
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  // No barriers: lanes past the end leave at once (whole idle SIMD groups then skip the loops).
  if (p >= params.pixels) { return; }
  let group = p % params.colGroups;
  let t = p / params.colGroups;
  let rowGroups = ${several ? "params.rowGroups" : "params.outH"};
  let oh0 = (t % rowGroups) * ${rows}u;
  let n = t / rowGroups;
  let ow0 = group * ${cols}u;
  let oc0 = (params.blockBase + wid.y) * ${jBlock}u;
  let seg = wid.y * params.segVec4;
  let ihBase = i32(oh0 * params.stride) - i32(params.pad);
  let iwBase = i32(ow0 * ${stride}u) - i32(params.pad);
  let inW = i32(params.inW);${
      vec4
        ? `\n  let quadsW = inW / 4;\n  let quadBase = (iwBase - ${
          ((-several!.pad % 4) + 4) % 4
        }) / 4;`
        : ""
    }
  ${decl.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let plane = (n * params.inC + params.icStart + icLocal) * params.inH;
    ${body}
  }
  let chanStride = ${vec4 ? "params.outH * params.outW / 4u" : "params.outH * params.outW"};
  let outBase = ((n * params.outC + oc0) * params.outH + oh0) * params.outW + ow0;
  ${storeLines.join("\n  ")}
}`,
  );
}

/**
 * The "ubo-cols" backward to the input: {@link convAnyBackwardInputKernel} with P input columns
 * of the stride phase per lane and the kernel width K and stride S compiled in. In a phase the
 * column taps are kw = kwStart + S * t (t < ceil(K / S); taps at or past kwEnd get zero weights),
 * and column p of the lane reads dy at ow = owBase + p - t, so the lane loads P + T - 1 dy values
 * per row instead of P * T, and every uniform weight vector feeds P pixels. Uniforms: those of
 * {@link convAnyBackwardInputKernel} plus colGroups (ceil(phaseW / P)).
 */
function buildConvColsBackwardInputKernel(
  jBlock: number,
  kW: number,
  stride: number,
  cols: number,
  workgroup = ANY_WORKGROUP,
): KernelSource {
  const JV = jBlock / 4;
  const T = Math.ceil(kW / stride);
  const span = cols + T - 1;
  const decl: string[] = [];
  for (let p = 0; p < cols; p++) {
    for (let i = 0; i < JV; i++) decl.push(`var acc${p}_${i} = vec4f(0.0);`);
  }
  const loads: string[] = [];
  for (let d = 0; d < span; d++) {
    // ow = owBase - (T - 1) + d
    loads.push(
      `let v${d} = select(0.0, dy[row + u32(clamp(owLo + ${d}, 0, outW - 1))], ` +
        `rowOk && owLo + ${d} >= 0 && owLo + ${d} < outW);`,
    );
  }
  const fmas: string[] = [];
  for (let t = 0; t < T; t++) {
    fmas.push(`let tapOk${t} = params.kwStart + ${stride * t}u < params.kwEnd;`);
    for (let i = 0; i < JV; i++) {
      fmas.push(
        `let w${t}_${i} = select(vec4f(0.0), w[wRow + ${stride * t * JV + i}u], tapOk${t});`,
      );
      for (let p = 0; p < cols; p++) {
        fmas.push(`acc${p}_${i} = acc${p}_${i} + w${t}_${i} * v${p - t + T - 1};`);
      }
    }
  }
  const storeLines: string[] = [];
  for (let p = 0; p < cols; p++) {
    const pixel: string[] = [];
    for (let i = 0; i < JV; i++) {
      for (let c = 0; c < 4; c++) {
        pixel.push(
          `store(base + ${i * 4 + c}u * chanStride, ic0 + ${i * 4 + c}u, acc${p}_${i}[${c}]);`,
        );
      }
    }
    storeLines.push(`if (jw0 + ${p}u < params.phaseW) {
    let base = outBase + ${p * stride}u;
    ${pixel.join("\n    ")}
  }`);
  }
  return kernel(
    "convColsBackwardInput",
    withWorkgroup({ j: jBlock, kw: kW, s: stride, p: cols }, workgroup),
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["dy", "read", "f32"], ["w", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`], [
          "dx",
          "readWrite",
          "f32",
        ]],
        GEOMETRY + " ocStart: u32, ocCount: u32, accumulate: u32, blockBase: u32, segVec4: u32, " +
          "foldX: u32, pixels: u32, rh: u32, rw: u32, phaseH: u32, phaseW: u32, khStart: u32, " +
          "khEnd: u32, kwStart: u32, kwEnd: u32, colGroups: u32,",
      )
    }
fn store(at: u32, ic: u32, acc: f32) {
  if (ic >= params.inC) { return; }
  if (params.accumulate != 0u) {
    dx[at] = dx[at] + acc;
  } else {
    dx[at] = acc;
  }
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  // No barriers: lanes past the end leave at once (whole idle SIMD groups then skip the loops).
  if (p >= params.pixels) { return; }
  let group = p % params.colGroups;
  let t = p / params.colGroups;
  let jh = t % params.phaseH;
  let n = t / params.phaseH;
  let jw0 = group * ${cols}u;
  let ih = params.rh + ${stride}u * jh;
  let iw0 = params.rw + ${stride}u * jw0;
  let ic0 = (params.blockBase + wid.y) * ${jBlock}u;
  let seg = wid.y * params.segVec4;
  let outW = i32(params.outW);
  // ow of column p and column tap t: (iw0 + pad - kwStart) / S + p - t.
  let owLo = (i32(iw0 + params.pad) - i32(params.kwStart)) / ${stride} - ${T - 1};
  ${decl.join("\n  ")}
  for (var ocLocal = 0u; ocLocal < params.ocCount; ocLocal = ocLocal + 1u) {
    let plane = (n * params.outC + params.ocStart + ocLocal) * params.outH;
    for (var kh = params.khStart; kh < params.khEnd; kh = kh + ${stride}u) {
      let oh = (i32(ih + params.pad) - i32(kh)) / ${stride};
      let rowOk = oh >= 0 && oh < i32(params.outH);
      let row = (plane + u32(max(oh, 0))) * params.outW;
      let wRow = seg + ((ocLocal * params.kH + kh) * ${kW}u + params.kwStart) * ${JV}u;
      ${loads.join("\n      ")}
      ${fmas.join("\n      ")}
    }
  }
  let chanStride = params.inH * params.inW;
  let outBase = ((n * params.inC + ic0) * params.inH + ih) * params.inW + iw0;
  ${storeLines.join("\n  ")}
}`,
  );
}

/**
 * The "ubo-cols" backward to the weight on CPU rasterizers where widths allow vec4s (inW and outW
 * multiples of 4): dy read from storage as it is (no pack into uniform windows, one dispatch
 * whatever dy's size), each lane owning one input channel, a block of J output channels and every
 * tap (kH x kW x J / 4 vec4 sums; kernel, stride and padding compiled in), walking a range of
 * output row segments of 4 columns: per segment it loads J dy vec4s and, for each kernel row, the
 * input row's quads once, and every input value then feeds J / 4 vec4 multiply-adds per tap and
 * column. Thread t: split t % splits, output block (t / splits) % ocBlocks, input channel
 * t / (splits * ocBlocks); it writes its sums to sums[split * slot + ((oc * inC + ic) * kH + kh)
 * * kW + kw] (slot = outC * inC * kH * kW). Uniforms: batch, inC, inH, inW, outC, outH, outW,
 * ocBlocks, splits, segments, perSplit.
 */
function buildConvRowsBackwardWeightKernel(
  jBlock: number,
  kH: number,
  kW: number,
  stride: number,
  pad: number,
  workgroup: number,
): KernelSource {
  const JV = jBlock / 4;
  const span = 3 * stride + kW;
  const lead = ((-pad % 4) + 4) % 4;
  const decl: string[] = [];
  for (let kh = 0; kh < kH; kh++) {
    for (let kw = 0; kw < kW; kw++) {
      for (let i = 0; i < JV; i++) decl.push(`var acc${kh}_${kw}_${i} = vec4f(0.0);`);
    }
  }
  const body: string[] = [];
  for (let j = 0; j < jBlock; j++) {
    body.push(
      `let d${j} = select(vec4f(0.0), dy[min(dyBase + ${j}u * dyPlane, dyLast)], o0 + ${j}u < params.outC);`,
    );
  }
  // dy of the segment's column col for the output channels 4i .. 4i + 3.
  for (let col = 0; col < 4; col++) {
    for (let i = 0; i < JV; i++) {
      const parts = [0, 1, 2, 3].map((k) => `d${4 * i + k}.${"xyzw"[col]}`);
      body.push(`let g${col}_${i} = vec4f(${parts.join(", ")});`);
    }
  }
  for (let kh = 0; kh < kH; kh++) {
    body.push(`{`);
    body.push(...quadRowLoads(`ihBase + ${kh}`, "xPlane", lead, span));
    for (let kw = 0; kw < kW; kw++) {
      for (let i = 0; i < JV; i++) {
        const acc = `acc${kh}_${kw}_${i}`;
        for (let col = 0; col < 4; col++) {
          body.push(`  ${acc} = fma(g${col}_${i}, v${col * stride + kw}, ${acc});`);
        }
      }
    }
    body.push(`}`);
  }
  const stores: string[] = [];
  for (let i = 0; i < JV; i++) {
    for (let c = 0; c < 4; c++) {
      const lines: string[] = [];
      for (let kh = 0; kh < kH; kh++) {
        for (let kw = 0; kw < kW; kw++) {
          lines.push(`sums[at + ${kh * kW + kw}u] = acc${kh}_${kw}_${i}.${"xyzw"[c]};`);
        }
      }
      stores.push(`if (o0 + ${4 * i + c}u < params.outC) {
    let at = slotBase + ((o0 + ${4 * i + c}u) * params.inC + ic) * ${kH * kW}u;
    ${lines.join("\n    ")}
  }`);
    }
  }
  return kernel(
    "convRowsBackwardWeight",
    withWorkgroup({ j: jBlock, kh: kH, kw: kW, s: stride, pad }, workgroup),
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "vec4f"], ["dy", "read", "vec4f"], ["sums", "readWrite"]],
        "batch: u32, inC: u32, inH: u32, inW: u32, outC: u32, outH: u32, outW: u32, " +
          "ocBlocks: u32, splits: u32, segments: u32, perSplit: u32,",
      )
    }
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * ${workgroup}u + lid;
  let split = t % params.splits;
  let rest = t / params.splits;
  let o0 = (rest % params.ocBlocks) * ${jBlock}u;
  let ic = rest / params.ocBlocks;
  if (ic >= params.inC) { return; }
  let quadsW = i32(params.inW / 4u);
  let quadsOut = params.outW / 4u;
  let dyPlane = params.outH * quadsOut;
  let dyLast = params.batch * params.outC * dyPlane - 1u;
  ${decl.join("\n  ")}
  let segEnd = min(params.segments, (split + 1u) * params.perSplit);
  for (var segment = split * params.perSplit; segment < segEnd; segment = segment + 1u) {
    let q = segment % quadsOut;
    let rest2 = segment / quadsOut;
    let oh = rest2 % params.outH;
    let n = rest2 / params.outH;
    let dyBase = ((n * params.outC + o0) * params.outH + oh) * quadsOut + q;
    let xPlane = (n * params.inC + ic) * params.inH;
    let ihBase = i32(oh * ${stride}u) - ${pad};
    let quadBase = (i32(q * ${4 * stride}u) - ${pad} - ${lead}) / 4;
    ${body.join("\n    ")}
  }
  let slotBase = split * params.outC * params.inC * ${kH * kW}u;
  ${stores.join("\n  ")}
}`,
  );
}

/**
 * The "ubo-cols" backward to the weight: {@link convAnyBackwardWeightKernel} with lanes = (ic, kh)
 * rows that own all K column taps, the kernel width K and stride S compiled in. A lane walks the
 * window's pixels keeping the K input values of its row segment in registers: moving one pixel
 * right shifts them by S and loads S new ones (a full reload at each row start), and each uniform
 * dy vector feeds K taps. Uniforms: those of {@link convAnyBackwardWeightKernel}.
 */
function buildConvColsBackwardWeightKernel(jBlock: number, kW: number, stride: number) {
  const JV = jBlock / 4;
  const decl: string[] = [];
  for (let k = 0; k < kW; k++) {
    for (let i = 0; i < JV; i++) decl.push(`var acc${k}_${i} = vec4f(0.0);`);
  }
  const load = (k: number) =>
    `v${k} = select(0.0, x[row + u32(clamp(iwBase + ${k}, 0, inW - 1))], ` +
    `rowOk && iwBase + ${k} >= 0 && iwBase + ${k} < inW);`;
  const full = Array.from({ length: kW }, (_, k) => load(k)).join("\n      ");
  const shifted: string[] = [];
  for (let k = 0; k < kW - stride; k++) shifted.push(`v${k} = v${k + stride};`);
  for (let k = Math.max(0, kW - stride); k < kW; k++) shifted.push(load(k));
  const refill = stride < kW
    ? `if (fresh || ow == 0u) {
      ${full}
    } else {
      ${shifted.join("\n      ")}
    }
    fresh = false;`
    : full;
  const fmas: string[] = [];
  for (let i = 0; i < JV; i++) {
    fmas.push(`let g${i} = g[gBase + ${i}u];`);
    for (let k = 0; k < kW; k++) fmas.push(`acc${k}_${i} = acc${k}_${i} + g${i} * v${k};`);
  }
  const storeLines: string[] = [];
  for (let k = 0; k < kW; k++) {
    for (let i = 0; i < JV; i++) {
      for (let c = 0; c < 4; c++) {
        storeLines.push(
          `store(slot, ocBase + ${i * 4 + c}u, lane * ${kW}u + ${k}u, acc${k}_${i}[${c}]);`,
        );
      }
    }
  }
  const vars = Array.from({ length: kW }, (_, k) => `var v${k} = 0.0;`).join("\n  ");
  return kernel(
    "convColsBackwardWeight",
    { j: jBlock, kw: kW, s: stride },
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "f32"], ["g", "uniform", `array<vec4f, ${ANY_WINDOW_VEC4}>`], [
          "partial",
          "readWrite",
          "f32",
        ]],
        GEOMETRY + " pixelStart: u32, count: u32, perSplit: u32, ocBase: u32, accumulate: u32, " +
          "slotSize: u32, blockVec4: u32,",
      )
    }
fn store(slot: u32, oc: u32, row: u32, acc: f32) {
  if (oc >= params.outC) { return; }
  let at = slot * params.slotSize + oc * params.inC * params.kH * params.kW + row;
  if (params.accumulate != 0u) {
    partial[at] = partial[at] + acc;
  } else {
    partial[at] = acc;
  }
}
@compute @workgroup_size(${ANY_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lane = wid.x * ${ANY_WORKGROUP}u + lid;
  if (lane >= params.inC * params.kH) { return; }
  let ic = lane / params.kH;
  let kh = lane - ic * params.kH;
  let slot = wid.y;
  // z: a block of J output channels when every block's dy lies in this one window.
  let blockOffset = wid.z * params.blockVec4;
  let ocBase = params.ocBase + wid.z * ${jBlock}u;
  let first = slot * params.perSplit;
  let last = min(params.count, first + params.perSplit);
  let plane = params.outH * params.outW;
  // Walk (n, oh, ow) incrementally from the split's first pixel (uniform counters).
  let start = params.pixelStart + first;
  var n = start / plane;
  var oh = (start - n * plane) / params.outW;
  var ow = start - n * plane - oh * params.outW;
  let inW = i32(params.inW);
  ${decl.join("\n  ")}
  ${vars}
  var fresh = true;
  for (var i = first; i < last; i = i + 1u) {
    let ih = i32(oh * ${stride}u) - i32(params.pad) + i32(kh);
    let rowOk = ih >= 0 && ih < i32(params.inH);
    let row = ((n * params.inC + ic) * params.inH + u32(max(ih, 0))) * params.inW;
    let iwBase = i32(ow * ${stride}u) - i32(params.pad);
    ${refill}
    let gBase = blockOffset + i * ${JV}u;
    ${fmas.join("\n    ")}
    ow = ow + 1u;
    if (ow == params.outW) {
      ow = 0u;
      oh = oh + 1u;
      if (oh == params.outH) {
        oh = 0u;
        n = n + 1u;
      }
    }
  }
  ${storeLines.join("\n  ")}
}`,
  );
}

// Each template builds a specialization once (memoizedTemplate); the builders above write it.
/** {@link buildConvAnyPackKernel}, each specialization built once. */
export const convAnyPackKernel = memoizedTemplate(buildConvAnyPackKernel);
/** {@link buildConvAnyForwardKernel}, each specialization built once. */
export const convAnyForwardKernel = memoizedTemplate(buildConvAnyForwardKernel);
/** {@link buildConvAnyBackwardInputKernel}, each specialization built once. */
export const convAnyBackwardInputKernel = memoizedTemplate(buildConvAnyBackwardInputKernel);
/** {@link buildConvAnyDyPackKernel}, each specialization built once. */
export const convAnyDyPackKernel = memoizedTemplate(buildConvAnyDyPackKernel);
/** {@link buildConvAnyBackwardWeightKernel}, each specialization built once. */
export const convAnyBackwardWeightKernel = memoizedTemplate(buildConvAnyBackwardWeightKernel);
/** {@link buildConvColsForwardKernel}, each specialization built once. */
export const convColsForwardKernel = memoizedTemplate(buildConvColsForwardKernel);
/** {@link buildConvRowsBackwardWeightKernel}, each specialization built once. */
export const convRowsBackwardWeightKernel = memoizedTemplate(buildConvRowsBackwardWeightKernel);
/** {@link buildConvColsBackwardInputKernel}, each specialization built once. */
export const convColsBackwardInputKernel = memoizedTemplate(buildConvColsBackwardInputKernel);
/** {@link buildConvColsBackwardWeightKernel}, each specialization built once. */
export const convColsBackwardWeightKernel = memoizedTemplate(buildConvColsBackwardWeightKernel);

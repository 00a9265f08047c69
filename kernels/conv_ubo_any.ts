/**
 * Launchers of the "ubo-any" conv variant (kernels/wgsl/conv_ubo_any.ts): any kernel size, stride
 * and padding; forward, backward to the input and backward to the weight.
 */

import type { Backend } from "./backend.ts";
import { grid1d, Uniforms } from "./wgsl/common.ts";
import {
  ANY_BLOCK,
  ANY_WINDOW_VEC4,
  ANY_WORKGROUP,
  anyBlockFor,
  COLS_MAX_KW,
  COLS_MAX_STRIDE,
  convAnyBackwardInputKernel,
  convAnyBackwardWeightKernel,
  convAnyDyPackKernel,
  convAnyForwardKernel,
  convAnyPackKernel,
  convColsBackwardInputKernel,
  convColsBackwardWeightKernel,
  convColsForwardKernel,
  convRowsBackwardWeightKernel,
} from "./wgsl/conv_ubo_any.ts";
import type { Conv2dGeometry } from "./conv_geometry.ts";
import { reduceAxis } from "./reductions.ts";
import { cachedPack, windowSegments } from "./pack_cache.ts";

const F32 = 4;
const WINDOW_FLOATS = ANY_WINDOW_VEC4 * 4;
const WINDOW_BYTES = WINDOW_FLOATS * F32;

/** Whether the ubo-any variant can run this geometry on this backend. */
export function uboAnyApplicable(b: Backend, g: Conv2dGeometry): boolean {
  return g.kH * g.kW * ANY_BLOCK <= WINDOW_FLOATS && b.maxUniformBindingBytes >= WINDOW_BYTES &&
    b.uniformOffsetAlignment <= 256 && g.outH > 0 && g.outW > 0;
}

function geometryUniforms(u: Uniforms, g: Conv2dGeometry): Uniforms {
  return u.u32(g.batch).u32(g.inC).u32(g.inH).u32(g.inW).u32(g.outC).u32(g.outH).u32(g.outW)
    .u32(g.kH).u32(g.kW).u32(g.stride).u32(g.pad);
}

/**
 * Packed filter segments: weights of J "block" channels for a chunk of "loop" channels; cached
 * while the weight is unwritten (kernels/pack_cache.ts cachedPack: not to be released).
 */
function packWeights(
  b: Backend,
  w: GPUBuffer,
  blockC: number,
  loopC: number,
  taps: number,
  transpose: boolean,
  j: number,
) {
  const kernel = convAnyPackKernel(transpose, j);
  return cachedPack(b, w, `${kernel.key}|${blockC}|${loopC}|${taps}`, () => {
    const { blocks, chunks, loopChunk, segFloats, total } = windowSegments(
      blockC,
      loopC,
      taps,
      j,
      WINDOW_FLOATS,
    );
    const packed = b.pool.acquire(total * F32 + WINDOW_BYTES);
    const uniforms = new Uniforms(7).u32(total).u32(blockC).u32(loopC).u32(taps).u32(loopChunk)
      .u32(blocks).u32(segFloats).bytes;
    const perWindow = Math.floor(WINDOW_FLOATS / segFloats);
    return {
      filters: { packed, blocks, chunks, loopChunk, segFloats, perWindow },
      pack: () => b.dispatch(kernel, [w, packed], uniforms, grid1d(total)),
    };
  });
}

/** Fewest workgroups a dispatch should have on a CPU rasterizer (a few per core). */
const MIN_CPU_WORKGROUPS = 4;

/**
 * Workgroup size and grid x (folded over z) for `lanes` threads, with `yGroups` workgroups along y.
 * ANY_WORKGROUP threads per workgroup, except on CPU rasterizers when that leaves fewer than
 * MIN_CPU_WORKGROUPS workgroups: llvmpipe runs a workgroup on one core, so a late ResNet layer's
 * one-workgroup dispatches (64 lanes: batch 32 x 2x2 pixels) kept the other core idle. Halved down
 * to 8 threads (one SIMD batch) instead. Shared by the ubo and sub-pixel launchers.
 */
export function foldedGrid(
  b: Backend,
  lanes: number,
  yGroups = 1,
): { foldX: number; foldZ: number; workgroup: number } {
  let workgroup = ANY_WORKGROUP;
  while (
    b.isCpuRasterizer && workgroup > 8 &&
    Math.ceil(lanes / workgroup) * yGroups < MIN_CPU_WORKGROUPS
  ) workgroup /= 2;
  const groups = Math.ceil(lanes / workgroup);
  const maxPerDim = b.device.limits.maxComputeWorkgroupsPerDimension;
  const foldX = Math.min(groups, maxPerDim);
  return { foldX, foldZ: Math.ceil(groups / foldX), workgroup };
}

/** [start, end) of the kernel taps along one axis that any output position reaches. */
function forwardTaps(k: number, stride: number, pad: number, inSize: number, outSize: number) {
  let start = k;
  let end = 0;
  for (let t = 0; t < k; t++) {
    // Reached when some o in [0, outSize) has 0 <= o * stride - pad + t < inSize.
    const lo = Math.max(0, Math.ceil((pad - t) / stride));
    const hi = Math.min(outSize - 1, Math.floor((inSize - 1 + pad - t) / stride));
    if (lo <= hi) {
      start = Math.min(start, t);
      end = Math.max(end, t + 1);
    }
  }
  return start < end ? [start, end] : [0, 0];
}

/** y = conv(x, w) + bias, any geometry. */
export function uboAnyForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
): void {
  windowedForward(b, x, w, bias, y, g, null);
}

/**
 * The forward launcher both variants share: weights packed into 64 KiB uniform windows, one
 * dispatch per (input-channel chunk, window). `cols` null: "ubo-any", one output pixel per lane;
 * a number: "ubo-cols", that many output columns per lane (kernel width and stride compiled in).
 */
function windowedForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
  cols: number | null,
  rows = 1,
): void {
  const taps = g.kH * g.kW;
  const j = anyBlockFor(g.outC);
  const p = packWeights(b, w, g.outC, g.inC, taps, false, j);
  const colGroups = cols === null ? g.outW : Math.ceil(g.outW / cols);
  const rowGroups = Math.ceil(g.outH / rows);
  const lanes = g.batch * rowGroups * colGroups;
  const { foldX, foldZ, workgroup } = foldedGrid(b, lanes, Math.min(p.perWindow, p.blocks));
  const [khStart, khEnd] = forwardTaps(g.kH, g.stride, g.pad, g.inH, g.outH);
  const [kwStart, kwEnd] = cols === null
    ? forwardTaps(g.kW, g.stride, g.pad, g.inW, g.outW)
    : [0, g.kW];
  const kernel = cols === null
    ? convAnyForwardKernel(bias !== null, j, workgroup)
    : convColsForwardKernel(
      bias !== null,
      j,
      g.kW,
      g.stride,
      cols,
      workgroup,
      rows > 1
        ? {
          rows,
          kH: g.kH,
          pad: g.pad,
          vec4: cols % 4 === 0 && (cols * g.stride) % 4 === 0 && g.inW % 4 === 0 &&
            g.outW % 4 === 0,
        }
        : null,
    );
  for (let chunk = 0; chunk < p.chunks; chunk++) {
    const icStart = chunk * p.loopChunk;
    const icCount = Math.min(p.loopChunk, g.inC - icStart);
    for (let base = 0; base < p.blocks; base += p.perWindow) {
      const blocks = Math.min(p.perWindow, p.blocks - base);
      const offset = (chunk * p.blocks + base) * p.segFloats * F32;
      const u = geometryUniforms(new Uniforms(24), g).u32(icStart).u32(icCount)
        .u32(chunk > 0 ? 1 : 0).u32(base).u32(p.segFloats / 4).u32(foldX).u32(lanes)
        .u32(khStart).u32(khEnd).u32(kwStart).u32(kwEnd);
      if (cols !== null) u.u32(colGroups);
      if (rows > 1) u.u32(rowGroups);
      const buffers = [x, { buffer: p.packed, offset, size: WINDOW_BYTES }];
      if (bias) buffers.push(bias);
      buffers.push(y);
      b.dispatch(kernel, buffers, u.bytes, [foldX, blocks, foldZ]);
    }
  }
}

/** Taps [start, end) (step stride, start in the phase's residue class) reaching phase r. */
function phaseTaps(
  k: number,
  stride: number,
  pad: number,
  r: number,
  inSize: number,
  outSize: number,
): [number, number] {
  let start = -1;
  let end = 0;
  for (let t = (r + pad) % stride; t < k; t += stride) {
    // Reached when some i = r + stride * j < inSize has 0 <= (i + pad - t) / stride < outSize.
    let reached = false;
    for (let i = r; i < inSize && !reached; i += stride) {
      const o = (i + pad - t) / stride;
      reached = o >= 0 && o < outSize;
    }
    if (reached) {
      if (start < 0) start = t;
      end = t + 1;
    }
  }
  return start < 0 ? [0, 0] : [start, end];
}

/** dx = conv backward to the input, any geometry (dx fully written; added to with `accumulate`). */
export function uboAnyBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  accumulate = false,
): void {
  windowedBackwardInput(b, dy, w, dx, g, null, accumulate);
}

/**
 * The backward-to-input launcher both variants share: one pass per stride phase (rh, rw) of dx,
 * with the taps that reach it, per (output-channel chunk, weight window). `cols` null: "ubo-any",
 * one dx pixel per lane; a number: "ubo-cols", that many dx columns of the phase per lane. With
 * `accumulate` every pass adds to dx (its first chunk too).
 */
function windowedBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  cols: number | null,
  accumulate = false,
): void {
  const taps = g.kH * g.kW;
  const j = anyBlockFor(g.inC);
  const p = packWeights(b, w, g.inC, g.outC, taps, true, j);
  const s = g.stride;
  for (let rh = 0; rh < Math.min(s, g.inH); rh++) {
    for (let rw = 0; rw < Math.min(s, g.inW); rw++) {
      const phaseH = Math.ceil((g.inH - rh) / s);
      const phaseW = Math.ceil((g.inW - rw) / s);
      const colGroups = cols === null ? phaseW : Math.ceil(phaseW / cols);
      const lanes = g.batch * phaseH * colGroups;
      const { foldX, foldZ, workgroup } = foldedGrid(b, lanes, Math.min(p.perWindow, p.blocks));
      const kernel = cols === null
        ? convAnyBackwardInputKernel(j, workgroup)
        : convColsBackwardInputKernel(j, g.kW, g.stride, cols, workgroup);
      let [khStart, khEnd] = phaseTaps(g.kH, s, g.pad, rh, g.inH, g.outH);
      let [kwStart, kwEnd] = phaseTaps(g.kW, s, g.pad, rw, g.inW, g.outW);
      if (khStart >= khEnd || kwStart >= kwEnd) {
        // No tap reaches this phase: its dx is zero (one pass with an empty tap loop writes it).
        [khStart, khEnd, kwStart, kwEnd] = [0, 0, 0, 0];
      }
      const chunks = khEnd > khStart && kwEnd > kwStart ? p.chunks : 1;
      for (let chunk = 0; chunk < chunks; chunk++) {
        const ocStart = chunk * p.loopChunk;
        const ocCount = Math.min(p.loopChunk, g.outC - ocStart);
        for (let base = 0; base < p.blocks; base += p.perWindow) {
          const blocks = Math.min(p.perWindow, p.blocks - base);
          const offset = (chunk * p.blocks + base) * p.segFloats * F32;
          const u = geometryUniforms(new Uniforms(29), g).u32(ocStart).u32(ocCount)
            .u32(chunk > 0 || accumulate ? 1 : 0).u32(base).u32(p.segFloats / 4).u32(foldX)
            .u32(lanes).u32(rh).u32(rw).u32(phaseH).u32(phaseW).u32(khStart).u32(khEnd).u32(kwStart)
            .u32(kwEnd);
          if (cols !== null) u.u32(colGroups);
          b.dispatch(
            kernel,
            [dy, { buffer: p.packed, offset, size: WINDOW_BYTES }, dx],
            u.bytes,
            [foldX, blocks, foldZ],
          );
        }
      }
    }
  }
}

let oneWindowWgrad = true;

/** Benchmarks: allow (default) or forbid one weight-gradient dispatch for all blocks. */
export function setOneWindowWgrad(enabled: boolean): void {
  oneWindowWgrad = enabled;
}

/** Target workgroups per dispatch of the weight-gradient kernel (pixels are split to reach it). */
const WGRAD_TARGET_GROUPS = 8;

/**
 * dw = conv backward to the weight, any geometry; with `cols` ("ubo-cols": kW <= 7, stride <= 2)
 * the lanes are (ic, kh) rows owning all kw taps (convColsBackwardWeightKernel).
 */
export function uboAnyBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
  cols = false,
): void {
  const plane = g.outH * g.outW;
  const pixels = g.batch * plane;
  const j = anyBlockFor(g.outC);
  const pixelBytes = j * F32;
  const alignPixels = Math.max(1, b.uniformOffsetAlignment / pixelBytes);
  const pixelsPadded = Math.ceil(pixels / alignPixels) * alignPixels;
  const blocks = Math.ceil(g.outC / j);
  const total = blocks * pixelsPadded * j;
  const packed = b.pool.acquire(total * F32 + WINDOW_BYTES);
  b.dispatch(
    convAnyDyPackKernel(j),
    [dy, packed],
    new Uniforms(5).u32(total).u32(g.outC).u32(pixels).u32(pixelsPadded).u32(plane).bytes,
    grid1d(total),
  );
  const perWindow = Math.floor(WINDOW_FLOATS / j / alignPixels) * alignPixels;
  const lanes = g.inC * g.kH * (cols ? 1 : g.kW);
  const groupsX = Math.ceil(lanes / ANY_WORKGROUP);
  // When every block's dy fits in one window, one dispatch runs all blocks (z = block).
  const oneWindow = oneWindowWgrad && pixels <= perWindow &&
    blocks * pixelsPadded * j <= WINDOW_FLOATS;
  const groups = groupsX * (oneWindow ? blocks : 1);
  const splits = Math.max(1, Math.min(8, Math.ceil(WGRAD_TARGET_GROUPS / groups)));
  const slotSize = g.outC * g.inC * g.kH * g.kW;
  const target = splits === 1 ? dw : b.pool.acquire(splits * slotSize * F32);
  const kernel = cols
    ? convColsBackwardWeightKernel(j, g.kW, g.stride)
    : convAnyBackwardWeightKernel(j);
  if (oneWindow) {
    const perSplit = Math.ceil(pixels / splits);
    const u = geometryUniforms(new Uniforms(18), g).u32(0).u32(pixels).u32(perSplit).u32(0)
      .u32(0).u32(slotSize).u32(pixelsPadded * j / 4);
    b.dispatch(
      kernel,
      [x, { buffer: packed, offset: 0, size: WINDOW_BYTES }, target],
      u.bytes,
      [groupsX, splits, blocks],
    );
  } else {
    for (let block = 0; block < blocks; block++) {
      for (let start = 0; start < pixels; start += perWindow) {
        const count = Math.min(perWindow, pixels - start);
        const perSplit = Math.ceil(count / splits);
        const offset = (block * pixelsPadded + start) * pixelBytes;
        const u = geometryUniforms(new Uniforms(18), g).u32(start).u32(count).u32(perSplit)
          .u32(block * j).u32(start > 0 ? 1 : 0).u32(slotSize).u32(0);
        b.dispatch(
          kernel,
          [x, { buffer: packed, offset, size: WINDOW_BYTES }, target],
          u.bytes,
          [groupsX, splits],
        );
      }
    }
  }
  // Every slot is written by the first window of each block (an empty split stores zeros).
  if (splits > 1) {
    reduceAxis(b, target, dw, 1, splits, slotSize);
    b.pool.release(target);
  }
  b.pool.release(packed);
}

/** Output columns per lane of the "ubo-cols" forward: P * J <= 32 accumulators, P <= outW. */
export function colsFor(g: Conv2dGeometry): number {
  const j = anyBlockFor(g.outC);
  const max = Math.max(1, 32 / j);
  let cols = 1;
  while (cols * 2 <= max && cols * 2 <= g.outW) cols *= 2;
  return cols;
}

/**
 * Output rows per lane of the "ubo-cols" forward (convColsForwardKernel's several-row form when more than 1): on CPU
 * rasterizers 4 for kernels of 3 rows or more on maps at least 8 rows high (each input row then
 * feeds several output rows; smaller maps have little work to save and would add specializations
 * to compile), else 1, as on real GPUs (not measured there). On llvmpipe, ResNet's
 * 7x7 stride-2 stem 3->64 @224 at batch 8 took 175 ms with 1, 109 with 4 and 90 with 8 rows; 3->8
 * @64 at batch 32 5.4-5.7, 2.9-4.2 and 3.6-3.8 ms; the 3x3 stride-2 64->128 @56, batch 8, 117 ->
 * 65 ms with 4 (round 20). Not 8: the stem's kernel then takes a second to compile (0.37 s with 4),
 * and one height keeps the specializations few.
 */
export function rowsFor(b: Backend, g: Conv2dGeometry): number {
  return b.isCpuRasterizer && g.kH >= 3 && g.outH >= 8 ? 4 : 1;
}

/**
 * Whether the "ubo-cols" weight gradient reads dy from storage (convRowsBackwardWeightKernel): on CPU
 * rasterizers, for kernels of 3 rows or more where inW and outW are multiples of 4. Otherwise dy
 * is packed into 64 KiB uniform windows, one dispatch per window: the ResNet stem's dy at batch 32
 * on 64x64 faces is 16 windows (bench/README.md round 20).
 */
export function storedDyWgradFor(b: Backend, g: Conv2dGeometry): boolean {
  return b.isCpuRasterizer && g.kH >= 3 && g.kW <= COLS_MAX_KW && g.stride <= COLS_MAX_STRIDE &&
    g.inW % 4 === 0 && g.outW % 4 === 0;
}

/** Output channels per lane of the stored-dy weight gradient (two vec4s of sums per tap). */
const STORED_DY_BLOCK = 8;
/** Lanes the stored-dy weight gradient aims for (32 SIMD groups of llvmpipe's 8 lanes). */
const STORED_DY_TARGET_LANES = 256;
/** Fewest row segments a lane of it walks (fewer: its slot costs more than its sums). */
const STORED_DY_MIN_SEGMENTS = 16;

/**
 * dw = conv backward to the weight, "ubo-cols": with `storedDy` (default {@link storedDyWgradFor})
 * by convRowsBackwardWeightKernel (the lanes' sums then added up by reduceAxis), else by the
 * windowed kernel (convColsBackwardWeightKernel).
 */
export function uboColsBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
  storedDy = storedDyWgradFor(b, g),
): void {
  if (!storedDy) {
    uboAnyBackwardWeight(b, dy, x, dw, g, true);
    return;
  }
  const ocBlocks = Math.ceil(g.outC / STORED_DY_BLOCK);
  const segments = g.batch * g.outH * (g.outW / 4);
  const blockLanes = g.inC * ocBlocks;
  const wanted = Math.max(
    1,
    Math.min(
      Math.ceil(STORED_DY_TARGET_LANES / blockLanes),
      Math.floor(segments / STORED_DY_MIN_SEGMENTS),
    ),
  );
  const perSplit = Math.ceil(segments / wanted);
  const splits = Math.ceil(segments / perSplit);
  const slot = g.outC * g.inC * g.kH * g.kW;
  const target = splits === 1 ? dw : b.pool.acquire(splits * slot * F32);
  const lanes = blockLanes * splits;
  const workgroup = lanes >= 64 * 4 ? 64 : 8;
  b.dispatch(
    convRowsBackwardWeightKernel(STORED_DY_BLOCK, g.kH, g.kW, g.stride, g.pad, workgroup),
    [x, dy, target],
    new Uniforms(11).u32(g.batch).u32(g.inC).u32(g.inH).u32(g.inW).u32(g.outC).u32(g.outH)
      .u32(g.outW).u32(ocBlocks).u32(splits).u32(segments).u32(perSplit).bytes,
    grid1d(lanes, workgroup),
  );
  if (splits > 1) {
    reduceAxis(b, target, dw, 1, splits, slot);
    b.pool.release(target);
  }
}

/**
 * Whether the "ubo-cols" kernels (kernel width and stride compiled in) run this pass and geometry:
 * forward with outW >= 2, backward to the input with inW >= 2 * stride, backward to the weight.
 */
export function uboColsApplicable(
  b: Backend,
  pass: "forward" | "backwardInput" | "backwardWeight",
  g: Conv2dGeometry,
): boolean {
  const wide = pass === "forward"
    ? g.outW >= 2
    : pass === "backwardInput"
    ? g.inW >= 2 * g.stride
    : true;
  return uboAnyApplicable(b, g) && g.kW <= COLS_MAX_KW && g.stride <= COLS_MAX_STRIDE && wide;
}

/**
 * y = conv(x, w) + bias with several output columns per lane (see convColsForwardKernel), and
 * `rows` output rows per lane (convColsForwardKernel's several-row form when more than 1; default {@link rowsFor}).
 */
export function uboColsForward(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  g: Conv2dGeometry,
  rows = rowsFor(b, g),
): void {
  windowedForward(b, x, w, bias, y, g, colsFor(g), rows);
}

/** Input columns per lane of the "ubo-cols" backward to the input (P * J <= 32, P <= phase). */
export function colsBackwardInputFor(g: Conv2dGeometry): number {
  const j = anyBlockFor(g.inC);
  const phaseW = Math.max(1, Math.floor(g.inW / g.stride));
  let cols = 1;
  while (cols * 2 * j <= 32 && cols * 2 <= phaseW) cols *= 2;
  return cols;
}

/**
 * dx = conv backward to the input with several columns per lane (convColsBackwardInputKernel);
 * added to dx with `accumulate`.
 */
export function uboColsBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  g: Conv2dGeometry,
  accumulate = false,
): void {
  windowedBackwardInput(b, dy, w, dx, g, colsBackwardInputFor(g), accumulate);
}

/**
 * Launchers of the "ubo" conv variant (kernels/wgsl/conv_ubo.ts): 3x3, stride 1, padding 1,
 * width a multiple of 4. Forward and backward-to-input (the same kernel on dy with the filter
 * transposed and flipped).
 */

import type { Backend } from "./backend.ts";
import { grid1d, Uniforms } from "./wgsl/common.ts";
import {
  convUboKernel,
  convUboPackKernel,
  UBO_OC_BLOCK,
  UBO_WINDOW_VEC4,
} from "./wgsl/conv_ubo.ts";
import {
  convUboWgradKernel,
  convUboWgradPackKernel,
  WGRAD_WINDOW_VEC4,
  WGRAD_WORKGROUP,
} from "./wgsl/conv_ubo_wgrad.ts";
import { reduceAxis } from "./reductions.ts";

const F32 = 4;
const WINDOW_FLOATS = UBO_WINDOW_VEC4 * 4;
const WINDOW_BYTES = WINDOW_FLOATS * F32;

/** Shape of one same-size 3x3 convolution run by the ubo kernel. */
export interface UboConvShape {
  batch: number;
  inC: number;
  outC: number;
  H: number;
  W: number;
}

/** Whether the ubo variant can run a conv of this geometry on this backend. */
export function uboApplicable(
  b: Backend,
  g: { kH: number; kW: number; stride: number; pad: number; inW: number; inH: number },
): boolean {
  return g.kH === 3 && g.kW === 3 && g.stride === 1 && g.pad === 1 && g.inW % 4 === 0 &&
    b.maxUniformBindingBytes >= WINDOW_BYTES && b.uniformOffsetAlignment <= 256;
}

/**
 * y = conv3x3(x, w') + bias where w' is w ([outC, inC, 3, 3]), or with `transposeFlip` the
 * transposed, flipped w ([inC, outC, 3, 3] as stored: the backward-to-input filter).
 */
export function uboConv(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: UboConvShape,
  transposeFlip: boolean,
  ocBlock = UBO_OC_BLOCK,
): void {
  const blocksC = Math.ceil(s.outC / ocBlock);
  const maxChunk = Math.floor(WINDOW_FLOATS / (9 * ocBlock));
  const chunks = Math.ceil(s.inC / maxChunk);
  const icChunk = Math.ceil(s.inC / chunks);
  const segFloats = Math.ceil((icChunk * 9 * ocBlock) / 64) * 64;
  const total = chunks * blocksC * segFloats;
  // The tail keeps every 64 KiB window inside the buffer.
  const packed = b.pool.acquire(total * F32 + WINDOW_BYTES);
  b.dispatch(
    convUboPackKernel(transposeFlip, ocBlock),
    [w, packed],
    new Uniforms(6).u32(total).u32(s.inC).u32(s.outC).u32(icChunk).u32(blocksC).u32(segFloats)
      .bytes,
    grid1d(total),
  );
  const quads = (s.batch * s.H * s.W) / 4;
  const groups = Math.ceil(quads / 64);
  const maxPerDim = b.device.limits.maxComputeWorkgroupsPerDimension;
  const foldX = Math.min(groups, maxPerDim);
  const foldZ = Math.ceil(groups / foldX);
  const perWindow = Math.floor(WINDOW_FLOATS / segFloats);
  const kernel = convUboKernel(bias !== null, ocBlock);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const icStart = chunk * icChunk;
    const icCount = Math.min(icChunk, s.inC - icStart);
    for (let base = 0; base < blocksC; base += perWindow) {
      const blocks = Math.min(perWindow, blocksC - base);
      const offset = (chunk * blocksC + base) * segFloats * F32;
      const u = new Uniforms(13).u32(s.batch).u32(s.inC).u32(s.H).u32(s.W).u32(s.outC)
        .u32(s.W / 4).u32(quads).u32(icStart).u32(icCount).u32(chunk > 0 ? 1 : 0).u32(base)
        .u32(segFloats / 4).u32(foldX);
      const buffers = [x, { buffer: packed, offset, size: WINDOW_BYTES }];
      if (bias) buffers.push(bias);
      buffers.push(y);
      b.dispatch(kernel, buffers, u.bytes, [foldX, blocks, foldZ]);
    }
  }
  b.pool.release(packed);
}

/** Output channels per workgroup of the ubo weight-gradient kernel (J). */
export const UBO_WGRAD_OC_BLOCK = 8;

/** Rows of quads per uniform window of the weight-gradient kernel, or 0 when none fits. */
function wgradRowsPerWindow(b: Backend, quadsW: number, ocBlock: number): number {
  const quadBytes = ocBlock * 16;
  const alignQuads = Math.max(1, b.uniformOffsetAlignment / quadBytes);
  let rows = Math.floor(WGRAD_WINDOW_VEC4 / (quadsW * ocBlock));
  while (rows > 0 && (rows * quadsW) % alignQuads !== 0) rows--;
  return rows;
}

/** Whether the ubo weight-gradient kernel takes this geometry (on top of {@link uboApplicable}). */
export function uboWgradApplicable(
  b: Backend,
  g: { kH: number; kW: number; stride: number; pad: number; inW: number; inH: number },
): boolean {
  return uboApplicable(b, g) && b.uniformOffsetAlignment % 16 === 0 &&
    wgradRowsPerWindow(b, g.inW / 4, UBO_WGRAD_OC_BLOCK) > 0;
}

/** Target workgroups per dispatch of the weight-gradient kernel (rows are split to reach it). */
const WGRAD_TARGET_GROUPS = 8;

/**
 * dw = conv3x3 backward to the weight (stride 1, padding 1, width % 4 == 0), dy read through
 * uniform windows; see kernels/wgsl/conv_ubo_wgrad.ts.
 */
export function uboConvBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  s: UboConvShape,
  ocBlock = UBO_WGRAD_OC_BLOCK,
): void {
  const quadsW = s.W / 4;
  const planeQuads = s.H * quadsW;
  const quads = s.batch * planeQuads;
  const quadBytes = ocBlock * 16;
  const alignQuads = Math.max(1, b.uniformOffsetAlignment / quadBytes);
  const quadsPadded = Math.ceil(quads / alignQuads) * alignQuads;
  const blocksC = Math.ceil(s.outC / ocBlock);
  const total = blocksC * quadsPadded * ocBlock;
  const packed = b.pool.acquire(total * 16 + WGRAD_WINDOW_VEC4 * 16);
  b.dispatch(
    convUboWgradPackKernel(ocBlock),
    [dy, packed],
    new Uniforms(5).u32(total).u32(s.outC).u32(quads).u32(quadsPadded).u32(planeQuads).bytes,
    grid1d(total),
  );
  const rowsPerWindow = wgradRowsPerWindow(b, quadsW, ocBlock);
  const totalRows = s.batch * s.H;
  const lanes = s.inC * 3;
  const groupsX = Math.ceil(lanes / WGRAD_WORKGROUP);
  const splits = Math.max(1, Math.min(8, Math.ceil(WGRAD_TARGET_GROUPS / groupsX)));
  const slotSize = s.outC * s.inC * 9;
  const target = splits === 1 ? dw : b.pool.acquire(splits * slotSize * F32);
  const kernel = convUboWgradKernel(ocBlock);
  for (let block = 0; block < blocksC; block++) {
    for (let rowStart = 0; rowStart < totalRows; rowStart += rowsPerWindow) {
      const rows = Math.min(rowsPerWindow, totalRows - rowStart);
      const rowsPerSplit = Math.ceil(rows / splits);
      const offset = (block * quadsPadded + rowStart * quadsW) * quadBytes;
      const u = new Uniforms(10).u32(s.inC).u32(s.H).u32(quadsW).u32(s.outC).u32(rowStart)
        .u32(rows).u32(rowsPerSplit).u32(block * ocBlock).u32(rowStart > 0 ? 1 : 0)
        .u32(slotSize);
      b.dispatch(
        kernel,
        [x, { buffer: packed, offset, size: WGRAD_WINDOW_VEC4 * 16 }, target],
        u.bytes,
        [groupsX, splits],
      );
    }
  }
  // Every slot is written by the first window of each block (an empty split stores zeros).
  if (splits > 1) {
    reduceAxis(b, target, dw, 1, splits, slotSize);
    b.pool.release(target);
  }
  b.pool.release(packed);
}

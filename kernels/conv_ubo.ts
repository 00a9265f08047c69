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
): void {
  const blocksC = Math.ceil(s.outC / UBO_OC_BLOCK);
  const maxChunk = Math.floor(WINDOW_FLOATS / (9 * UBO_OC_BLOCK));
  const chunks = Math.ceil(s.inC / maxChunk);
  const icChunk = Math.ceil(s.inC / chunks);
  const segFloats = Math.ceil((icChunk * 9 * UBO_OC_BLOCK) / 64) * 64;
  const total = chunks * blocksC * segFloats;
  // The tail keeps every 64 KiB window inside the buffer.
  const packed = b.pool.acquire(total * F32 + WINDOW_BYTES);
  b.dispatch(
    convUboPackKernel(transposeFlip),
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
  const kernel = convUboKernel(bias !== null);
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

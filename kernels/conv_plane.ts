/**
 * Launchers of the "plane" conv variant (kernels/wgsl/conv_plane.ts): 3x3, stride 1, padding 1 on
 * maps of at most 16 pixels (a whole number of vec4s), one channel's plane per thread: forward,
 * backward to the input (the forward on dy with the ubo variant's transposed, flipped filter
 * windows) and backward to the weight.
 */

import type { Backend } from "./backend.ts";
import { grid1d, Uniforms } from "./wgsl/common.ts";
import { convUboPackKernel, UBO_WINDOW_VEC4 } from "./wgsl/conv_ubo.ts";
import { convPlaneKernel, convPlaneWgradKernel, planeShapeSupported } from "./wgsl/conv_plane.ts";
import { channelBlock, packWindows } from "./conv_ubo.ts";
import { foldedGrid } from "./conv_ubo_any.ts";
import { reduceAxis } from "./reductions.ts";
import type { Conv2dGeometry } from "./conv_geometry.ts";

const F32 = 4;
const WINDOW_BYTES = UBO_WINDOW_VEC4 * 4 * F32;

/** Whether the plane variant can run a conv of this geometry on this backend. */
export function planeApplicable(b: Backend, g: Conv2dGeometry): boolean {
  return g.kH === 3 && g.kW === 3 && g.stride === 1 && g.pad === 1 &&
    planeShapeSupported(g.inH, g.inW) && b.maxUniformBindingBytes >= WINDOW_BYTES &&
    b.uniformOffsetAlignment <= 256;
}

/**
 * y = conv3x3(x, w) + bias on a small map; with `transposeFlip` the backward to the input (x is
 * dy, `runInC` its channels, w the forward weight [runOutC, runInC, 3, 3] read transposed and
 * flipped). `ocBlock` output channels per thread (the ubo packing's block: 4 or 8).
 */
export function planeConv(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: { batch: number; inC: number; outC: number; H: number; W: number },
  transposeFlip: boolean,
  ocBlock: number,
  accumulate = false,
): void {
  const { packed, blocksC, chunks, icChunk, segFloats } = packWindows(
    b,
    convUboPackKernel(transposeFlip, ocBlock),
    w,
    s.inC,
    s.outC,
    ocBlock,
    9,
  );
  const perWindow = Math.floor((UBO_WINDOW_VEC4 * 4) / segFloats);
  // Samples per thread: each uniform weight then serves several planes (16 values of y per
  // channel and thread; on 2x2 maps 4 samples took 64->64 at batch 32 from 0.55 to 0.30-0.40 ms on
  // llvmpipe, while 4x4 maps ran fastest with one).
  const samples = Math.max(1, 2 ** Math.floor(Math.log2(16 / (s.H * s.W))));
  const { foldX, foldZ, workgroup } = foldedGrid(
    b,
    Math.ceil(s.batch / samples),
    Math.min(perWindow, blocksC),
  );
  const kernel = convPlaneKernel(s.H, s.W, ocBlock, bias !== null, workgroup, samples);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const icStart = chunk * icChunk;
    const icCount = Math.min(icChunk, s.inC - icStart);
    for (let base = 0; base < blocksC; base += perWindow) {
      const blocks = Math.min(perWindow, blocksC - base);
      const offset = (chunk * blocksC + base) * segFloats * F32;
      const u = new Uniforms(9).u32(s.batch).u32(s.inC).u32(s.outC).u32(icStart).u32(icCount)
        .u32(chunk > 0 || accumulate ? 1 : 0).u32(base).u32(segFloats / 4).u32(foldX);
      const buffers = [x, { buffer: packed, offset, size: WINDOW_BYTES }];
      if (bias) buffers.push(bias);
      buffers.push(y);
      b.dispatch(kernel, buffers, u.bytes, [foldX, blocks, foldZ]);
    }
  }
}

/**
 * Fewest threads a plane weight gradient dispatches before it splits the batch (each split's sums
 * then go through one more pass): 8 SIMD groups of llvmpipe's 8 lanes, 4 per core on 2 cores.
 */
const WGRAD_MIN_THREADS = 64;

/** dw = conv3x3 backward to the weight on a small map (dw is overwritten). */
export function planeConvBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  g: Conv2dGeometry,
): void {
  // 4 x 4 channels: 144 sums per thread (2x2 maps: 16 products per sample and pair).
  const ocBlock = channelBlock(4, g.outC);
  const icBlock = channelBlock(4, g.inC);
  const ocBlocks = Math.ceil(g.outC / ocBlock);
  const icBlocks = Math.ceil(g.inC / icBlock);
  const blockThreads = ocBlocks * icBlocks;
  const wanted = Math.min(g.batch, Math.max(1, Math.ceil(WGRAD_MIN_THREADS / blockThreads)));
  const perSplit = Math.ceil(g.batch / wanted);
  const splits = Math.ceil(g.batch / perSplit);
  const slot = g.outC * g.inC * 9;
  const target = splits === 1 ? dw : b.pool.acquire(splits * slot * F32);
  const threads = splits * blockThreads;
  const workgroup = b.isCpuRasterizer ? 8 : 64;
  b.dispatch(
    convPlaneWgradKernel(g.inH, g.inW, ocBlock, icBlock, workgroup),
    [x, dy, target],
    new Uniforms(7).u32(g.batch).u32(g.inC).u32(g.outC).u32(ocBlocks).u32(icBlocks).u32(splits)
      .u32(perSplit).bytes,
    grid1d(threads, workgroup),
  );
  if (splits > 1) {
    reduceAxis(b, target, dw, 1, splits, slot);
    b.pool.release(target);
  }
}

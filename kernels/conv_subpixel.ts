/**
 * Launchers of the sub-pixel kernels (kernels/wgsl/conv_subpixel.ts): a 3x3 conv (stride 1,
 * padding 1) on a 2x nearest upsampling of x, computed at x's resolution with 2x2 filters per
 * output parity: 4 multiply-adds per output instead of 9. Shapes are the source map's; its width
 * must be a multiple of 4.
 */

import type { Backend } from "./backend.ts";
import { UBO_WINDOW_VEC4 } from "./wgsl/conv_ubo.ts";
import {
  SUBPIXEL_TAPS,
  subpixelConvBackwardInputKernel,
  subpixelConvKernel,
  subpixelPackKernel,
  type SubpixelTile,
  subpixelWgradKernel,
  type SubpixelWgradTile,
} from "./wgsl/conv_subpixel.ts";
import { dispatchWindowed, packWindows, runWgradLanes } from "./conv_ubo.ts";

const WINDOW_BYTES = UBO_WINDOW_VEC4 * 16;

/** A conv on x upsampled 2x: x is [batch, inC, H, W], the result [batch, outC, 2H, 2W]. */
export interface SubpixelShape {
  batch: number;
  inC: number;
  outC: number;
  /** The source (half-resolution) height and width. */
  H: number;
  W: number;
}

/** Whether the sub-pixel kernels take a source map of this size on this backend. */
export function subpixelApplicable(b: Backend, s: { W: number }): boolean {
  return s.W % 4 === 0 && b.maxUniformBindingBytes >= WINDOW_BYTES &&
    b.uniformOffsetAlignment <= 256;
}

/**
 * Register tile (source rows x quads) of both passes. CPU rasterizers: 8 x 1, at most the map's
 * height (forward 256 vec4 accumulators, backward 64; measured against 2 x 1, 4 x 1, 2 x 2 and 4 x
 * 2 on the paper's 128->64 layer at batch 64: forward 358 against 405-428 ms, backward 424
 * against 468-522; on the demo's layers within a few percent of the best); GPUs 1 x 1 (not
 * measured).
 */
export function subpixelTileFor(b: Backend, s: { H: number }): SubpixelTile {
  return { rows: Math.min(b.isCpuRasterizer ? 8 : 1, s.H), quads: 1 };
}

/** y = conv3x3(upsample2x(x), w) + bias, w [outC, inC, 3, 3]. */
export function subpixelConv(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: SubpixelShape,
  ocBlock: number,
  tileOverride?: SubpixelTile,
): void {
  runSubpixel(b, x, w, bias, y, s, ocBlock, tileOverride, false);
}

/**
 * dx of {@link subpixelConv} at the source resolution (upsampling's backward folded in); dy is
 * [batch, outC, 2H, 2W], w [outC, inC, 3, 3]. `ocBlock` blocks x's channels.
 */
export function subpixelConvBackwardInput(
  b: Backend,
  dy: GPUBuffer,
  w: GPUBuffer,
  dx: GPUBuffer,
  s: SubpixelShape,
  ocBlock: number,
  tileOverride?: SubpixelTile,
): void {
  // The packed conv runs from dy's channels (s.outC) to x's (s.inC).
  const shape = { ...s, inC: s.outC, outC: s.inC };
  runSubpixel(b, dy, w, null, dx, shape, ocBlock, tileOverride, true);
}

function runSubpixel(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: SubpixelShape,
  ocBlock: number,
  tileOverride: SubpixelTile | undefined,
  backward: boolean,
): void {
  const tile = tileOverride ?? subpixelTileFor(b, s);
  const pack = subpixelPackKernel(backward, ocBlock);
  const filters = packWindows(b, pack, w, s.inC, s.outC, ocBlock, SUBPIXEL_TAPS);
  const kernelFor = (workgroup: number) =>
    backward
      ? subpixelConvBackwardInputKernel(ocBlock, tile, workgroup)
      : subpixelConvKernel(bias !== null, ocBlock, tile, workgroup);
  dispatchWindowed(b, kernelFor, x, bias, y, s, tile, filters);
}

/**
 * Channel blocking of the sub-pixel weight gradient: on CPU rasterizers 8 x 8 channels per lane
 * (16 sums per pair: 1024 vec4 accumulators; at batch 64 on the paper's four decoder layers 356,
 * 752, 783 and 807 ms against 396, 902, 946 and 960 for 4 x 8; 4 x 4, 8 x 4, 2 x 4, 4 x 2 slower
 * still), on GPUs 2 x 1 (not measured); shrunk to a layer's channels.
 */
export function subpixelWgradTileFor(b: Backend, s: SubpixelShape): SubpixelWgradTile {
  const fit = (want: number, channels: number) =>
    Math.min(want, 2 ** Math.ceil(Math.log2(channels)));
  return { oc: fit(b.isCpuRasterizer ? 8 : 2, s.outC), ic: fit(b.isCpuRasterizer ? 8 : 1, s.inC) };
}

/** dw of {@link subpixelConv}: x [batch, inC, H, W] (the source), dy [batch, outC, 2H, 2W]. */
export function subpixelConvBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  s: SubpixelShape,
  tileOverride?: SubpixelWgradTile,
): void {
  const tile = tileOverride ?? subpixelWgradTileFor(b, s);
  const quadsW = s.W / 4;
  runWgradLanes(
    b,
    x,
    dy,
    dw,
    { ...s, quadsW, rowGroups: Math.ceil(s.H / (tile.rows ?? 1)), tilesPerRowGroup: quadsW },
    tile,
    (workgroup, ocLanes) => subpixelWgradKernel(tile, workgroup, ocLanes),
  );
}

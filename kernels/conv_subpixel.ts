/**
 * Launchers of the sub-pixel kernels (kernels/wgsl/conv_subpixel.ts): a 3x3 conv (stride 1,
 * padding 1) on a 2x nearest upsampling of x, computed at x's resolution with 2x2 filters per
 * output parity: 4 multiply-adds per output instead of 9. Shapes are the source map's; its width
 * must be a multiple of 4.
 */

import type { Backend } from "./backend.ts";
import { convUboPackKernel, UBO_WINDOW_VEC4 } from "./wgsl/conv_ubo.ts";
import {
  SUBPIXEL_TAPS,
  subpixelBoxBackwardInputKernel,
  subpixelConvBackwardInputKernel,
  subpixelConvKernel,
  subpixelPackKernel,
  type SubpixelTile,
  subpixelWgradBoxKernel,
  subpixelWgradKernel,
  type SubpixelWgradTile,
} from "./wgsl/conv_subpixel.ts";
import {
  channelBlock,
  type ChannelStatistics,
  dispatchWindowed,
  packWindows,
  runWgradLanes,
} from "./conv_ubo.ts";

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
 * Register tile (source rows x quads) of the forward. CPU rasterizers: 8 x 1, at most the map's
 * height (256 vec4 accumulators; measured against 2 x 1, 4 x 1, 2 x 2 and 4 x 2 on the paper's
 * 128->64 layer at batch 64: 358 against 405-428 ms; on the demo's layers within a few percent of
 * the best; 16- and 32-channel blocks 8-50% slower); GPUs 1 x 1 (not measured).
 */
export function subpixelTileFor(b: Backend, s: { H: number }): SubpixelTile {
  return { rows: Math.min(b.isCpuRasterizer ? 8 : 1, s.H), quads: 1 };
}

/**
 * Register tile of the backward to the input: the 9-tap box form on every adapter (9 multiply-adds
 * per source value and channel pair against 16), 8 x 1 on CPU rasterizers as the forward, 1 x 1 on
 * GPUs (not measured).
 */
export function subpixelBackwardTileFor(b: Backend, s: { H: number }): SubpixelTile {
  return { ...subpixelTileFor(b, s), box: true };
}

/**
 * Channels of dx per workgroup in the box backward to the input: 32 on CPU rasterizers (the box
 * sums of each dy row are shared by more channels: at batch 64 on the paper's 512->256 @8 and
 * 128->64 @32 layers 343 and 307 ms against 447 and 352 at 16, 482 and 539 at 8; the 16-tap form
 * took 629 and 564), elsewhere `uboBlock` (the ubo kernels' block for these channels).
 */
export function subpixelBackwardBlockFor(b: Backend, channels: number, uboBlock: number): number {
  return b.isCpuRasterizer ? channelBlock(32, channels, 4) : uboBlock;
}

/**
 * y = conv3x3(upsample2x(x), w) + bias, w [outC, inC, 3, 3]; with `statistics` also y's
 * batch-norm statistics partials (kernels/conv_ubo.ts ChannelStatistics), when they fit.
 */
export function subpixelConv(
  b: Backend,
  x: GPUBuffer,
  w: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: SubpixelShape,
  ocBlock: number,
  tileOverride?: SubpixelTile,
  statistics = false,
): ChannelStatistics | null {
  return runSubpixel(b, x, w, bias, y, s, ocBlock, tileOverride, false, statistics);
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
  statistics = false,
): ChannelStatistics | null {
  const tile = tileOverride ?? (backward ? subpixelBackwardTileFor(b, s) : subpixelTileFor(b, s));
  // The box backward takes the plain 3x3 filters, packed as the ubo backward packs them.
  const box = backward && tile.box === true;
  const pack = box ? convUboPackKernel(true, ocBlock) : subpixelPackKernel(backward, ocBlock);
  const taps = box ? 9 : SUBPIXEL_TAPS;
  const filters = packWindows(b, pack, w, s.inC, s.outC, ocBlock, taps);
  const kernelFor = (workgroup: number, stats: boolean) =>
    box
      ? subpixelBoxBackwardInputKernel(ocBlock, tile, workgroup)
      : backward
      ? subpixelConvBackwardInputKernel(ocBlock, tile, workgroup)
      : subpixelConvKernel(bias !== null, ocBlock, tile, workgroup, stats);
  const statisticsBlock = statistics && !backward ? ocBlock : 0;
  return dispatchWindowed(b, kernelFor, x, bias, y, s, tile, filters, statisticsBlock);
}

/**
 * Channel blocking of the sub-pixel weight gradient: the 9-sum box form on every adapter, on CPU
 * rasterizers 4 output x 32 input channels per lane (1152 vec4 accumulators; the box sums of a dy
 * row serve 32 input channels; at batch 64 on the paper's 512->256 @8 and 128->64 @32 layers 510
 * and 413 ms against 516-623 for 4 x 32 on 2-row tiles, 2 x 32, 2 x 64, 8 x 16 and 8 x 8, and 966
 * and 795 for the 16 sub-pixel sums at 8 x 8, round 10's choice), on GPUs 2 x 1 (not measured);
 * shrunk to a layer's channels ({@link channelBlock}). With 16 input channels or fewer per lane, CPU
 * tiles take 4 source rows, which load each input row once for more of the tile's work (round 12,
 * batch 32, the demo decoder's layers: 16->8 @32 6.4-6.7 -> 4.6-5.4 ms, 18->16 @16 5.5 -> 4.4,
 * 34->32 @4 2.6 -> 1.8; with 32 per lane more rows were 8-50% slower on the paper's layers).
 */
export function subpixelWgradTileFor(b: Backend, s: SubpixelShape): SubpixelWgradTile {
  const cpu = b.isCpuRasterizer;
  const ic = channelBlock(cpu ? 32 : 1, s.inC);
  return {
    oc: channelBlock(cpu ? 4 : 2, s.outC),
    ic,
    box: true,
    ...(cpu && ic <= 16 ? { rows: Math.min(4, s.H) } : {}),
  };
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
    {
      ...s,
      quadsW,
      rowGroups: Math.ceil(s.H / (tile.rows ?? 1)),
      tilesPerRowGroup: quadsW / (tile.quads ?? 1),
    },
    tile,
    (workgroup, ocLanes) =>
      tile.box
        ? subpixelWgradBoxKernel(tile, workgroup, ocLanes)
        : subpixelWgradKernel(tile, workgroup, ocLanes),
  );
}

/**
 * Launchers of the "ubo" conv variant: 3x3, stride 1, padding 1, width a multiple of 4. Forward
 * and backward-to-input (kernels/wgsl/conv_ubo.ts; the same kernel on dy with the filter
 * transposed and flipped), and backward-to-weight (kernels/wgsl/conv3x3_wgrad.ts), each with the
 * register tile that suits the adapter.
 */

import type { Backend, KernelSource } from "./backend.ts";
import { grid1d, Uniforms } from "./wgsl/common.ts";
import {
  type ConvActivation,
  convUboKernel,
  convUboPackKernel,
  UBO_OC_BLOCK,
  UBO_WINDOW_VEC4,
  type UboTile,
} from "./wgsl/conv_ubo.ts";
import { conv3x3WgradKernel, type WgradTile } from "./wgsl/conv3x3_wgrad.ts";
import { reduceAxis } from "./reductions.ts";
import { foldedGrid } from "./conv_ubo_any.ts";
import { cachedPack, windowSegments } from "./pack_cache.ts";

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
 * The register tile of the ubo conv for a shape. CPU rasterizers (llvmpipe: each thread is a SIMD
 * lane and register spills are cheap) run fastest with 8 rows x 2 quads per thread: 4 x 2 reached
 * 41 GFLOP/s against 13 for 1 x 1 on a 32->32 conv at 64x64 (round 5), and 8 x 2 loads each input
 * row once for twice the rows (round 12, AMD EPYC, batch 64, forward: 32->32 @64 145-159 -> 128
 * ms, 64->128 @32 288 -> 265, 128->256 @16 304 -> 225, 256->512 @8 311 -> 288; backward to the
 * input 0-11% faster; 16 x 2 as fast as 8 x 2, 8 x 4 and 8 x 1 slower). Real GPUs get 2 x 1 (64
 * accumulators, within their register files; not measured here). Rows never exceed the map's
 * height, and quads must divide the row's quads.
 */
export function uboTileFor(b: Backend, s: { H: number; W: number }): UboTile {
  const software = b.isCpuRasterizer;
  const quadsW = s.W / 4;
  const rows = Math.min(software ? 8 : 2, s.H);
  const quads = software && quadsW % 2 === 0 ? 2 : 1;
  return { rows, quads };
}

/**
 * y = conv3x3(x, w') + bias where w' is w ([outC, inC, 3, 3]), or with `transposeFlip` the
 * transposed, flipped w ([inC, outC, 3, 3] as stored: the backward-to-input filter). With
 * `statistics` it also returns y's batch-norm statistics partials ({@link ChannelStatistics}),
 * when they fit (else null). With `accumulate` the result is added to y (no bias, no activation).
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
  tileOverride?: UboTile,
  statistics = false,
  activation: ConvActivation | null = null,
  accumulate = false,
): ChannelStatistics | null {
  const tile = tileOverride ?? uboTileFor(b, s);
  const filters = packWindows(
    b,
    convUboPackKernel(transposeFlip, ocBlock),
    w,
    s.inC,
    s.outC,
    ocBlock,
    9,
  );
  // A layer narrower than one block computes only its own channels.
  const live = Math.min(s.outC, ocBlock);
  return dispatchWindowed(
    b,
    (workgroup, stats, last) =>
      convUboKernel(bias !== null, ocBlock, tile, workgroup, stats, live, last ? activation : null),
    x,
    bias,
    y,
    s,
    tile,
    filters,
    statistics ? ocBlock : 0,
    accumulate,
  );
}

export type { ConvActivation };

/**
 * Per-channel batch-norm statistics of a map, written by the conv that stored it (kernels/wgsl/
 * conv_ubo.ts storeStatistics): `partials` vec4s per channel in `buffer` (pooled; the consumer
 * releases it), each (count, shift, sum(x - shift), sum((x - shift)^2)) over a part of the map.
 */
export interface ChannelStatistics {
  buffer: GPUBuffer;
  partials: number;
}

/** Most bytes of workgroup memory the statistics' combine takes (WebGPU's guaranteed minimum). */
const STATISTICS_WORKGROUP_BYTES = 16384;

/** Filters packed into 64 KiB uniform windows (see {@link packWindows}). */
export interface PackedFilters {
  packed: GPUBuffer;
  /** Output-channel blocks, input-channel chunks, channels per chunk, floats per segment. */
  blocksC: number;
  chunks: number;
  icChunk: number;
  segFloats: number;
}

/**
 * Filters packed by a filter-pack kernel (convUboPackKernel, subpixelPackKernel: uniforms total,
 * runInC, runOutC, icChunk, blocksC, segFloats) into segments (chunk, block) of `taps` x `ocBlock`
 * floats per input channel, padded to 256 bytes, input channels chunked so a segment fits one 64
 * KiB window; cached while the weight is unwritten ({@link cachedPack}: callers must not release
 * the packed buffer).
 */
export function packWindows(
  b: Backend,
  packKernel: KernelSource,
  w: GPUBuffer,
  runInC: number,
  runOutC: number,
  ocBlock: number,
  taps: number,
): PackedFilters {
  return cachedPack(b, w, `${packKernel.key}|${runInC}|${runOutC}|${ocBlock}|${taps}`, () => {
    const segments = windowSegments(runOutC, runInC, taps, ocBlock, WINDOW_FLOATS);
    const { blocks: blocksC, chunks, loopChunk: icChunk, segFloats, total } = segments;
    // The tail keeps every 64 KiB window inside the buffer.
    const packed = b.pool.acquire(total * F32 + WINDOW_BYTES);
    const uniforms = new Uniforms(6).u32(total).u32(runInC).u32(runOutC).u32(icChunk).u32(blocksC)
      .u32(segFloats).bytes;
    return {
      filters: { packed, blocksC, chunks, icChunk, segFloats },
      pack: () => b.dispatch(packKernel, [w, packed], uniforms, grid1d(total)),
    };
  });
}

/**
 * Dispatch a conv whose filters sit in uniform windows (the ubo kernels, the sub-pixel ones): one
 * dispatch per input-channel chunk and window of output-channel blocks, threads over the register
 * tiles of `tile` (rows x quads of s.H x s.W / 4), smaller workgroups for small maps on CPU
 * rasterizers. The packed filters stay in the cache ({@link packWindows}). Kernel uniforms:
 * batch, inC, H, W, outC, quadsW, tiles, icStart, icCount, accumulate, ocBlockBase, segVec4,
 * foldX, rowGroups, colGroups.
 * With `statisticsBlock` (the kernel's channels per workgroup; 0: none) the last input-channel
 * chunk's dispatches also write y's batch-norm statistics (`kernelFor(workgroup, true, ...)`),
 * which are returned; null when they were not asked for or the workgroup's combine would not fit.
 * `kernelFor`'s third argument says whether the kernel is for the last chunk (which stores the
 * finished sums: an activation goes there). With `accumulate` the first chunk adds to y too.
 */
export function dispatchWindowed(
  b: Backend,
  kernelFor: (workgroup: number, statistics: boolean, lastChunk: boolean) => KernelSource,
  x: GPUBuffer,
  bias: GPUBuffer | null,
  y: GPUBuffer,
  s: UboConvShape,
  tile: UboTile,
  filters: PackedFilters,
  statisticsBlock = 0,
  accumulate = false,
): ChannelStatistics | null {
  const { packed, blocksC, chunks, icChunk, segFloats } = filters;
  const quadsW = s.W / 4;
  if (quadsW % tile.quads !== 0) {
    throw new Error(`conv tile: ${tile.quads} quads do not divide ${quadsW}`);
  }
  const rowGroups = Math.ceil(s.H / tile.rows);
  const colGroups = quadsW / tile.quads;
  const tiles = s.batch * rowGroups * colGroups;
  const perWindow = Math.floor(WINDOW_FLOATS / segFloats);
  // Small maps (the paper's 4x4 and 8x8 layers: 64-128 tiles) would be one or two workgroups.
  const { foldX, foldZ, workgroup } = foldedGrid(b, tiles, Math.min(perWindow, blocksC));
  const statistics = statisticsBlock > 0 &&
      workgroup * statisticsBlock * 16 <= STATISTICS_WORKGROUP_BYTES
    ? { buffer: b.pool.acquire(s.outC * foldX * foldZ * 16), partials: foldX * foldZ }
    : null;
  for (let chunk = 0; chunk < chunks; chunk++) {
    const icStart = chunk * icChunk;
    const icCount = Math.min(icChunk, s.inC - icStart);
    const last = chunk === chunks - 1 && statistics !== null;
    const kernel = kernelFor(workgroup, last, chunk === chunks - 1);
    for (let base = 0; base < blocksC; base += perWindow) {
      const blocks = Math.min(perWindow, blocksC - base);
      const offset = (chunk * blocksC + base) * segFloats * F32;
      const u = new Uniforms(15).u32(s.batch).u32(s.inC).u32(s.H).u32(s.W).u32(s.outC)
        .u32(quadsW).u32(tiles).u32(icStart).u32(icCount).u32(chunk > 0 || accumulate ? 1 : 0)
        .u32(base)
        .u32(segFloats / 4).u32(foldX).u32(rowGroups).u32(colGroups);
      const buffers = [x, { buffer: packed, offset, size: WINDOW_BYTES }];
      if (bias) buffers.push(bias);
      buffers.push(y);
      if (last) buffers.push(statistics.buffer);
      b.dispatch(kernel, buffers, u.bytes, [foldX, blocks, foldZ]);
    }
  }
  return statistics;
}

/**
 * Channels per block: the largest power of two from `want` down to `min` that pads the layer's
 * channels by at most a third (or one channel), else `min`. 37 channels at 32: blocks of 16 (48
 * computed, not 64); 20: 8 (24); 3: 4.
 */
export function channelBlock(want: number, channels: number, min = 1): number {
  for (let block = want; block > min; block /= 2) {
    if (Math.ceil(channels / block) * block - channels <= Math.max(1, channels / 3)) return block;
  }
  return min;
}

/**
 * Register blocking of the weight gradient for a shape. CPU rasterizers: 16 output x 8 input
 * channels per lane and 1 x 2 tiles (1152 vec4 accumulators; at batch 64 on the paper encoder's
 * 64->128 @32 and 256->512 @8: 255 and 304 ms against 350 and 457 for round 5's 8 x 4, 272-439 and
 * 338-466 for 32 x 4, 16 x 4, 32 x 2, 32 x 8, 16 x 16, 8 x 16 and 16 x 8 on 1 x 1 tiles). Real GPUs
 * get 2 x 1 channels and 1 x 1 tiles (18 vec4 accumulators; not measured here). Channel blocks
 * shrink to a layer's channels ({@link channelBlock}); quads must divide the row's quads.
 * On CPU rasterizers, fewer than 8 input channels make one exact block (3 image channels: 3, not
 * 4), as do fewer than 4 output channels (session 17, the decoder's 8->3 @64 at batch 32: 3.36
 * against 3.85 ms), and lanes holding 32 channel pairs or fewer walk 4-row tiles, which load each
 * input row once for more of their work (round 12, batch 32: 3->8 @64 5.3 -> 3.7 ms, 8->3 @64 6.4 -> 4.8;
 * with 16 x 8 channels 2- and 4-row tiles were 5-75% slower).
 */
export function wgradTileFor(b: Backend, s: UboConvShape): WgradTile {
  const software = b.isCpuRasterizer;
  const quadsW = s.W / 4;
  const oc = software && s.outC < 4 ? s.outC : channelBlock(software ? 16 : 2, s.outC);
  const ic = software && s.inC < 8 ? s.inC : channelBlock(software ? 8 : 1, s.inC);
  return {
    oc,
    ic,
    rows: software && oc * ic <= 32 ? Math.min(4, s.H) : 1,
    quads: software && quadsW % 2 === 0 ? 2 : 1,
  };
}

/** Floats the per-lane partial sums of one weight gradient may take (16 MiB). */
const WGRAD_PARTIAL_FLOATS = 4 << 20;
/** Most lanes (pixel ranges) per channel block. */
const WGRAD_MAX_LANES = 256;
/**
 * Fewest pixel tiles a lane walks: below it writing and summing the lane's slot costs more than its
 * sums (64 against 16: the demo autoencoder's 16-channel layers at batch 32 10-20% faster).
 */
const WGRAD_MIN_TILES_PER_LANE = 64;
/** Fewest workgroups a weight gradient dispatches with 64 lanes each (else it takes 8 each). */
const WGRAD_MIN_WORKGROUPS = 4;

/**
 * dw = conv3x3 backward to the weight (stride 1, padding 1, width % 4 == 0); see
 * kernels/wgsl/conv3x3_wgrad.ts. The pixels are split over up to 256 lanes per channel block (fewer
 * when the layer has many channels: their blocks already fill the machine, and each lane's slot
 * holds a whole dw); the slots are then summed into dw.
 */
export function uboConvBackwardWeight(
  b: Backend,
  dy: GPUBuffer,
  x: GPUBuffer,
  dw: GPUBuffer,
  s: UboConvShape,
  tileOverride?: WgradTile,
): void {
  const tile = tileOverride ?? wgradTileFor(b, s);
  const quadsW = s.W / 4;
  runWgradLanes(
    b,
    x,
    dy,
    dw,
    { ...s, quadsW, rowGroups: Math.ceil(s.H / tile.rows), tilesPerRowGroup: quadsW / tile.quads },
    tile,
    (workgroup, ocLanes) => conv3x3WgradKernel(tile, workgroup, ocLanes),
  );
}

/** The pixel walk of a lane-split weight gradient: the kernel's uniforms and tiling. */
export interface WgradWalk {
  batch: number;
  inC: number;
  outC: number;
  /** The H and quadsW uniforms of the kernel. */
  H: number;
  quadsW: number;
  /** Row groups per image; tiles each walks. */
  rowGroups: number;
  tilesPerRowGroup: number;
}

/**
 * Split a weight gradient's pixels over lanes and dispatch it (shared by conv3x3WgradKernel and
 * the sub-pixel subpixelWgradKernel): up to 256 lanes per channel block, each walking at least
 * 64 tiles, fewer when one slot (a whole dw) is large; then the slots are summed into dw.
 * `kernelFor` builds the kernel for a workgroup size and channel-lane count.
 */
export function runWgradLanes(
  b: Backend,
  x: GPUBuffer,
  dy: GPUBuffer,
  dw: GPUBuffer,
  walk: WgradWalk,
  tile: { oc: number; ic: number },
  kernelFor: (workgroup: number, ocLanes: number) => KernelSource,
): void {
  const totalGroups = walk.batch * walk.rowGroups;
  const slotSize = walk.outC * walk.inC * 9;
  const maxLanes = Math.min(
    WGRAD_MAX_LANES,
    totalGroups,
    Math.floor((totalGroups * walk.tilesPerRowGroup) / WGRAD_MIN_TILES_PER_LANE),
  );
  let lanes = 1;
  while (
    lanes * 2 <= maxLanes &&
    lanes * 2 * slotSize <= WGRAD_PARTIAL_FLOATS
  ) lanes *= 2;
  const rowGroupsPerLane = Math.ceil(totalGroups / lanes);
  lanes = Math.ceil(totalGroups / rowGroupsPerLane);
  // Two workgroup sizes only (8 was the fastest of 8-32 for the few lanes of small maps on
  // llvmpipe). Fewer than 8 lanes (layers with many channels): the 8 threads of a workgroup share
  // them with up to 8 output-channel blocks, so every SIMD lane works (with one block per
  // workgroup, 1 to 7 of 8 did: at batch 64 the paper autoencoder's 512->512 weight gradient took
  // 3.8 s at 5 GFLOP/s, now 0.65 s at 30, like its other layers). Workgroups of 64 only when
  // there are enough of them to share out: one workgroup runs on one core (the demo
  // autoencoder's 8->16 layer at batch 32 made one, 6.3 ms; eight of 8 lanes, 3.8-4.1 ms).
  const ocBlocks = Math.ceil(walk.outC / tile.oc);
  const wideWorkgroups = Math.ceil(lanes / 64) * ocBlocks * Math.ceil(walk.inC / tile.ic);
  const workgroup = lanes >= 64 && wideWorkgroups >= WGRAD_MIN_WORKGROUPS ? 64 : 8;
  const ocLanes = lanes >= 8 ? 1 : Math.min(8, 2 ** Math.floor(Math.log2(ocBlocks)));
  const target = lanes === 1 ? dw : b.pool.acquire(lanes * slotSize * F32);
  b.dispatch(
    kernelFor(workgroup, ocLanes),
    [x, dy, target],
    new Uniforms(8).u32(walk.batch).u32(walk.inC).u32(walk.outC).u32(walk.H).u32(walk.quadsW)
      .u32(walk.rowGroups).u32(lanes).u32(rowGroupsPerLane).bytes,
    [
      Math.ceil(lanes / (workgroup / ocLanes)),
      Math.ceil(ocBlocks / ocLanes),
      Math.ceil(walk.inC / tile.ic),
    ],
  );
  if (lanes > 1) {
    reduceAxis(b, target, dw, 1, lanes, slotSize);
    b.pool.release(target);
  }
}

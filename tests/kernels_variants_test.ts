/**
 * Every conv variant, forced through the launchers' `variant` option, against float64 references
 * on odd shapes (channel counts not multiples of 4 or 8, spatial sizes not tile multiples, input
 * channels past one uniform window, at most 4 blocked channels): forward, backward to the input,
 * backward to the weight. ("gemm" runs everywhere; its tiles stage through workgroup memory.)
 * The references of the backward passes are the exact sums (dx = sum dy * w, dw = sum dy * x).
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { uboConv } from "../kernels/conv_ubo.ts";
import {
  GEMM_SWEEP_TILES,
  gemmBackwardInput,
  gemmBackwardWeight,
  gemmForward,
  parseGemmTile,
} from "../kernels/conv_gemm.ts";
import { type GemmTile, gemmTileName } from "../kernels/wgsl/conv_gemm.ts";
import assert from "node:assert/strict";
import * as ref from "./reference.ts";
import {
  assertClose,
  convGeometry,
  convPassBuffers,
  downloadBuffer,
  randomArray,
  testDevice,
  uploadBuffer,
} from "./helpers.ts";

const backend: Backend = (await testDevice()).backend;
const download = (buffer: GPUBuffer, n: number) => downloadBuffer(backend, buffer, n);
const geometry = convGeometry;

const cases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "3->5 7x12", g: geometry(2, 3, 5, 7, 12) },
  { name: "6->13 5x4", g: geometry(3, 6, 13, 5, 4) },
  { name: "9->3 9x8", g: geometry(1, 9, 3, 9, 8) },
  // More input channels than one 64 KiB uniform window holds (227 per chunk): two chunks.
  { name: "230->9 3x4", g: geometry(1, 230, 9, 3, 4) },
  { name: "17->230 4x4", g: geometry(1, 17, 230, 4, 4) },
  // At most 4 channels in the blocked dimension: 4-channel ubo blocks (J 4), one or two chunks.
  { name: "4->4 5x8 (J 4 both ways)", g: geometry(3, 4, 4, 5, 8) },
  { name: "500->3 3x4 (J 4, 2 chunks)", g: geometry(1, 500, 3, 3, 4) },
  { name: "2->700 2x4 (J 4 back, 2 chunks)", g: geometry(1, 2, 700, 2, 4) },
  // Shapes the ubo variant does not take (falls back to direct): stride 2, width 7, 1x1.
  { name: "5->6 s2 9x8", g: geometry(2, 5, 6, 9, 8, 3, 2, 1) },
  { name: "4->5 6x7", g: geometry(2, 4, 5, 6, 7) },
  { name: "6->5 1x1 5x8", g: geometry(2, 6, 5, 5, 8, 1, 1, 0) },
  // gemm: K split over several workgroups for the weight (K = 4 * 20 * 20 = 1600) and a 7x7
  // stride-2 stem (kernel size and stride compiled in).
  { name: "5->6 20x20 (split K)", g: geometry(4, 5, 6, 20, 20) },
  { name: "3->5 7x7 s2 11x13", g: geometry(2, 3, 5, 11, 13, 7, 2, 3) },
];

const variants: ops.ConvVariant[] = ["direct", "ubo", "gemm", "gemm-wide", "gemm-flat"];

for (const variant of variants) {
  for (const { name, g } of cases) {
    Deno.test(`conv variant ${variant} ${name}`, async () => {
      const options = { variant };
      const run = convPassBuffers(backend, g, 11);
      const { x, w, bias, dy, y, dx, dw } = run;
      const { x: xSize, w: wSize, y: ySize } = run.sizes;
      const { x: xData, w: wData, bias: bData, dy: dyData } = run.data;
      ops.conv2dForward(backend, x, w, bias, y, g, options);
      ops.conv2dBackwardInput(backend, dy, w, dx, g, options);
      ops.conv2dBackwardWeight(backend, dy, x, dw, g, options);
      const [yOut, dxOut, dwOut] = await Promise.all([
        download(y, ySize),
        download(dx, xSize),
        download(dw, wSize),
      ]);
      const wShape = [g.outC, g.inC, g.kH, g.kW];
      const xShape = [g.batch, g.inC, g.inH, g.inW];
      const expected = ref.conv2d(xData, xShape, wData, wShape, bData, g.stride, g.pad).out;
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * 9), rtol: 1e-3 };
      assertClose(yOut, expected, `${variant} ${name} forward`, tolerance);
      const grads = ref.convBackward(xData, wData, dyData, g);
      assertClose(dxOut, grads.dx, `${variant} ${name} backward input`, tolerance);
      const dwTolerance = { atol: 1e-4 * Math.sqrt(ySize / g.outC), rtol: 1e-3 };
      assertClose(dwOut, grads.dw, `${variant} ${name} backward weight`, dwTolerance);
      run.release();
    });
  }
}

Deno.test("conv2dVariant reports the fallback for shapes a variant does not take", () => {
  const strided = geometry(1, 4, 4, 8, 8, 3, 2, 1);
  ops.conv2dVariant(backend, "forward", strided, { variant: "ubo" }) === "direct" ||
    (() => {
      throw new Error("stride 2 should fall back to direct");
    })();
});

// The ubo kernel's register tiles (rows x column quads per thread): llvmpipe takes 8 x 2 and real
// GPUs 2 x 1 through `uboTileFor`; each tile is forced here, forward with a bias and backward to
// the input (the transposed, flipped filter), on heights that are not tile multiples, maps one
// tile covers whole, two input-channel chunks (the second accumulates) and 4-channel blocks.
const tiles = [
  { rows: 1, quads: 1 },
  { rows: 2, quads: 1 },
  { rows: 3, quads: 2 },
  { rows: 4, quads: 2 },
  { rows: 8, quads: 2 },
  { rows: 1, quads: 2 },
];
const tileCases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "6->13 5x16", g: geometry(2, 6, 13, 5, 16) },
  { name: "3->4 9x8", g: geometry(3, 3, 4, 9, 8) },
  { name: "5->9 2x16", g: geometry(1, 5, 9, 2, 16) },
  { name: "230->9 3x16", g: geometry(1, 230, 9, 3, 16) },
];
for (const tile of tiles) {
  Deno.test(`ubo conv tile ${tile.rows}x${tile.quads} against the reference`, async () => {
    for (const { name, g } of tileCases) {
      if ((g.inW / 4) % tile.quads !== 0) continue;
      const run = convPassBuffers(backend, g, 23);
      const shape = { batch: g.batch, inC: g.inC, outC: g.outC, H: g.inH, W: g.inW };
      uboConv(backend, run.x, run.w, run.bias, run.y, shape, false, ops.uboBlockFor(g.outC), tile);
      const back = { ...shape, inC: g.outC, outC: g.inC };
      uboConv(backend, run.dy, run.w, null, run.dx, back, true, ops.uboBlockFor(g.inC), tile);
      const [yOut, dxOut] = await Promise.all([
        download(run.y, run.sizes.y),
        download(run.dx, run.sizes.x),
      ]);
      const wShape = [g.outC, g.inC, 3, 3];
      const xShape = [g.batch, g.inC, g.inH, g.inW];
      const expected = ref.conv2d(run.data.x, xShape, run.data.w, wShape, run.data.bias, 1, 1).out;
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * 9), rtol: 1e-3 };
      const label = `tile ${tile.rows}x${tile.quads} ${name}`;
      assertClose(yOut, expected, `${label} forward`, tolerance);
      const grads = ref.convBackward(run.data.x, run.data.w, run.data.dy, g);
      assertClose(dxOut, grads.dx, `${label} backward input`, tolerance);
      run.release();
    }
  });
}

// Every tiling bench/gemm_sweep.ts times on GPUs (one of them may become "gemm-wide" through
// VA_GEMM_WIDE_TILE), through the gemm launchers, on odd shapes: M and N not tile multiples, K not
// a multiple of the K step, the weight gradient's K split, a 7x7 stride-2 stem.
const sweepCases = [cases[1].g, cases[11].g, cases[12].g, geometry(1, 37, 70, 6, 5)];
for (const [name, tile] of Object.entries(GEMM_SWEEP_TILES)) {
  Deno.test(`gemm tiling ${name} against the reference`, async () => {
    for (const g of sweepCases) {
      const run = convPassBuffers(backend, g, 29);
      gemmForward(backend, run.x, run.w, run.bias, run.y, g, tile);
      gemmBackwardInput(backend, run.dy, run.w, run.dx, g, tile);
      gemmBackwardWeight(backend, run.dy, run.x, run.dw, g, tile);
      const [yOut, dxOut, dwOut] = await Promise.all([
        download(run.y, run.sizes.y),
        download(run.dx, run.sizes.x),
        download(run.dw, run.sizes.w),
      ]);
      const wShape = [g.outC, g.inC, g.kH, g.kW];
      const xShape = [g.batch, g.inC, g.inH, g.inW];
      const label = `${name} ${g.inC}->${g.outC} ${g.inH}x${g.inW} k${g.kH}`;
      const expected =
        ref.conv2d(run.data.x, xShape, run.data.w, wShape, run.data.bias, g.stride, g.pad)
          .out;
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * 9), rtol: 1e-3 };
      assertClose(yOut, expected, `${label} forward`, tolerance);
      const grads = ref.convBackward(run.data.x, run.data.w, run.data.dy, g);
      assertClose(dxOut, grads.dx, `${label} backward input`, tolerance);
      const dwTolerance = { atol: 1e-4 * Math.sqrt(run.sizes.y / g.outC), rtol: 1e-3 };
      assertClose(dwOut, grads.dw, `${label} backward weight`, dwTolerance);
      run.release();
    }
  });
}

Deno.test("parseGemmTile reads the sweep's names and refuses invalid tilings", () => {
  const normal = (t: GemmTile) => ({
    ...t,
    strided: t.strided || undefined,
    doubleBuffer: t.doubleBuffer || undefined,
  });
  for (const [name, tile] of Object.entries(GEMM_SWEEP_TILES)) {
    const parsed = parseGemmTile(name.split(" ")[0]);
    assert.ok(parsed, name);
    assert.deepEqual(normal(parsed), normal(tile));
    assert.equal(gemmTileName(tile), name.split(" ")[0]);
  }
  assert.equal(parseGemmTile("128x128x8/8x8x"), null);
  assert.equal(parseGemmTile("64x64x16/6x4"), null, "thread blocks must be vec4 multiples");
  assert.equal(parseGemmTile("64x64x3/4x4"), null, "loads must split evenly over the threads");
});

// The backward to the input adding to dx (ConvOptions.accumulate: a tensor's other gradient summed
// in the same pass), for each variant that can, on the shapes it takes: dx holds random values
// first, and must end as those plus the exact sum. Plane's small maps and the strided, 1x1 and
// 7x7 shapes of ubo-any and ubo-cols (several stride phases, one with no tap) are added here.
const accumulateCases = [
  ...cases,
  { name: "5->6 2x2", g: geometry(3, 5, 6, 2, 2) },
  { name: "9->7 4x4", g: geometry(2, 9, 7, 4, 4) },
  { name: "6->5 1x1 s2 9x7", g: geometry(2, 6, 5, 9, 7, 1, 2, 0) },
];
for (const variant of ["ubo", "plane", "ubo-any", "ubo-cols"] as const) {
  for (const { name, g } of accumulateCases) {
    const options = { variant, accumulate: true };
    if (ops.conv2dVariant(backend, "backwardInput", g, options) !== variant) continue;
    Deno.test(`conv variant ${variant} ${name}: backward to the input adds to dx`, async () => {
      assert.ok(ops.conv2dBackwardInputAccumulates(backend, g, options));
      const run = convPassBuffers(backend, g, 13);
      const before = randomArray(run.sizes.x, 17);
      const dx = uploadBuffer(backend, before);
      ops.conv2dBackwardInput(backend, run.dy, run.w, dx, g, options);
      const grads = ref.convBackward(run.data.x, run.data.w, run.data.dy, g);
      const expected = grads.dx.map((v, i) => v + before[i]);
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * 9), rtol: 1e-3 };
      assertClose(await download(dx, run.sizes.x), expected, `${variant} ${name}`, tolerance);
      backend.pool.release(dx);
      run.release();
    });
  }
}

Deno.test("conv backward to the input refuses to add to dx where the variant cannot", () => {
  const g = geometry(2, 3, 5, 7, 12);
  const options = { variant: "direct" as const, accumulate: true };
  assert.equal(ops.conv2dBackwardInputAccumulates(backend, g, options), false);
  const run = convPassBuffers(backend, g, 19);
  assert.throws(
    () => ops.conv2dBackwardInput(backend, run.dy, run.w, run.dx, g, options),
    /cannot add to dx/,
  );
  run.release();
});

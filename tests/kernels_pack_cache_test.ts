// Packed filters kept between uses (kernels/conv_ubo.ts packWindows): a conv reuses its weight's
// packed windows while the weight is unwritten, packs them again after a write (an upload, or a
// dispatch binding the weight read-write, as the optimizer's update does), and
// refreshPackedFilters packs every changed weight at once. Checked against the float64 reference
// after each kind of write, with three packs of one weight (forward, backward to the input, the
// sub-pixel forward); a weight given back to the pool takes its packs with it.

import * as assert from "node:assert/strict";
import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import {
  assertClose,
  convGeometry,
  downloadBuffer,
  randomArray,
  testDevice,
  uploadBuffer,
} from "./helpers.ts";

const device = await testDevice();
const backend = device.backend;
const ubo = { variant: "ubo" as const };

/** conv2d(x, w) of geometry g in float64 (on x upsampled 2x, nearest, when `upsampled`). */
function reference(
  x: Float32Array,
  w: Float32Array,
  g: ops.Conv2dGeometry,
  upsampled: boolean,
): Float64Array {
  const source = upsampled
    ? ref.resize(x, [g.batch, g.inC, g.inH / 2, g.inW / 2], g.inH, g.inW, 0.5, 0.5, "nearest")
    : x;
  return ref.conv2d(source, [g.batch, g.inC, g.inH, g.inW], w, [g.outC, g.inC, 3, 3], null, 1, 1)
    .out;
}

/** w [outC, inC, 3, 3] transposed and flipped: the backward-to-input filter [inC, outC, 3, 3]. */
function transposeFlip(w: Float32Array, outC: number, inC: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let o = 0; o < outC; o++) {
    for (let i = 0; i < inC; i++) {
      for (let t = 0; t < 9; t++) out[(i * outC + o) * 9 + 8 - t] = w[(o * inC + i) * 9 + t];
    }
  }
  return out;
}

Deno.test("packed filters: reused while the weight is unwritten, packed again after a write", async () => {
  const g = convGeometry(2, 5, 7, 6, 8);
  const up = convGeometry(2, 5, 7, 8, 16);
  const back = convGeometry(2, 7, 5, 6, 8);
  const xData = randomArray(g.batch * g.inC * g.inH * g.inW, 1);
  const xUpData = randomArray(up.batch * up.inC * (up.inH / 2) * (up.inW / 2), 2);
  const dyData = randomArray(g.batch * g.outC * g.outH * g.outW, 3);
  let wData = randomArray(g.outC * g.inC * 9, 4);
  const x = uploadBuffer(backend, xData);
  const xUp = uploadBuffer(backend, xUpData);
  const dy = uploadBuffer(backend, dyData);
  const w = uploadBuffer(backend, wData);
  const y = backend.pool.acquire(dyData.length * 4);
  const yUp = backend.pool.acquire(up.batch * up.outC * up.outH * up.outW * 4);
  const dx = backend.pool.acquire(xData.length * 4);
  const check = async (label: string, dispatches: number) => {
    const before = backend.stats().dispatches;
    ops.conv2dForward(backend, x, w, null, y, g, ubo);
    ops.upsampleConv2dForward(backend, xUp, w, null, yUp, up, ubo);
    ops.conv2dBackwardInput(backend, dy, w, dx, g, ubo);
    assert.equal(backend.stats().dispatches - before, dispatches, `${label}: dispatches`);
    const tol = { atol: 1e-4, rtol: 1e-4 };
    const read = async (buffer: GPUBuffer, n: number) =>
      (await downloadBuffer(backend, buffer, buffer.size / 4)).subarray(0, n);
    assertClose(
      await read(y, dyData.length),
      reference(xData, wData, g, false),
      `${label}: forward`,
      tol,
    );
    assertClose(
      await read(yUp, up.batch * up.outC * up.outH * up.outW),
      reference(xUpData, wData, up, true),
      `${label}: sub-pixel forward`,
      tol,
    );
    assertClose(
      await read(dx, xData.length),
      reference(dyData, transposeFlip(wData, g.outC, g.inC), back, false),
      `${label}: backward to the input`,
      tol,
    );
  };
  // Three convs, each packing once (one dispatch each for the pack and the conv here).
  await check("first use", 6);
  await check("the weight unwritten: no packs", 3);
  wData = randomArray(wData.length, 5);
  backend.write(w, wData);
  await check("after an upload: packed again", 6);
  // A kernel binding the weight read-write (w = 2 v - 0.5), as the optimizer's update does; then
  // every changed weight packed at once.
  const v = uploadBuffer(backend, randomArray(wData.length, 7));
  ops.affine(backend, v, w, wData.length, 2, -0.5);
  wData = (await downloadBuffer(backend, v, wData.length)).map((e) => Math.fround(2 * e - 0.5));
  backend.pool.release(v);
  const before = backend.stats().dispatches;
  ops.refreshPackedFilters(backend);
  assert.equal(backend.stats().dispatches - before, 3, "refreshPackedFilters: the three packs");
  ops.refreshPackedFilters(backend);
  assert.equal(backend.stats().dispatches - before, 3, "nothing left to refresh");
  await check("after a refresh", 3);
  for (const buffer of [x, xUp, dy, y, yUp, dx]) backend.pool.release(buffer);
  // The weight goes back to the pool: its three packs go with it.
  const inUse = backend.stats().bytesInUse;
  backend.pool.release(w);
  assert.ok(backend.stats().bytesInUse < inUse - w.size, "the packs were released with the weight");
  backend.flush();
});

// The general ubo variant (strides, 1x1 and 7x7 kernels: kernels/conv_ubo_any.ts) keeps its packs
// the same way.
Deno.test("packed filters of the ubo-any variant: reused, packed again after a write", async () => {
  const g = convGeometry(2, 5, 6, 9, 8, 3, 2, 1);
  const xData = randomArray(g.batch * g.inC * g.inH * g.inW, 11);
  let wData = randomArray(g.outC * g.inC * 9, 12);
  const x = uploadBuffer(backend, xData);
  const w = uploadBuffer(backend, wData);
  const n = g.batch * g.outC * g.outH * g.outW;
  const y = backend.pool.acquire(n * 4);
  const check = async (label: string, dispatches: number) => {
    const before = backend.stats().dispatches;
    ops.conv2dForward(backend, x, w, null, y, g, { variant: "ubo-any" });
    assert.equal(backend.stats().dispatches - before, dispatches, `${label}: dispatches`);
    const expected = ref.conv2d(xData, [2, 5, 9, 8], wData, [6, 5, 3, 3], null, 2, 1).out;
    const out = (await downloadBuffer(backend, y, y.size / 4)).subarray(0, n);
    assertClose(out, expected, label, { atol: 1e-4, rtol: 1e-4 });
  };
  await check("first use", 2);
  await check("the weight unwritten", 1);
  wData = randomArray(wData.length, 13);
  backend.write(w, wData);
  await check("after an upload", 2);
  for (const buffer of [x, w, y]) backend.pool.release(buffer);
  backend.flush();
});

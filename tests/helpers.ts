/** Shared test utilities: one device for the whole run, seeded data, tolerant comparisons. */

import { Device } from "../mod.ts";
import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import type { Conv2dGeometry } from "../kernels/ops.ts";
import * as ref from "./reference.ts";

let shared: Promise<Device> | null = null;

/** The test device (created once; the same adapter for every test file in a run). */
export function testDevice(): Promise<Device> {
  shared ??= Device.create();
  return shared;
}

/** Seeded uniform values in [low, high). */
export function randomArray(n: number, seed: number, low = -1, high = 1): Float32Array {
  let state = (seed * 2654435761) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = low + (high - low) * (state / 4294967296);
  }
  return out;
}

/** Throw unless |actual - expected| <= atol + rtol * |expected| everywhere. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  { atol = 1e-4, rtol = 1e-3 }: { atol?: number; rtol?: number } = {},
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const limit = atol + rtol * Math.abs(expected[i]);
    const excess = Math.abs(actual[i] - expected[i]) - limit;
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${atol}, rtol ${rtol})`,
    );
  }
}

/**
 * Central finite differences of L(inputs) = sum(upstream * f(inputs)) with respect to the
 * elements of input `which`, in float64. Large inputs are probed at `maxProbes` evenly spread
 * elements (the others are NaN and skipped by assertClose's caller via `probedIndices`).
 */
export function numericGradient(
  f: (inputs: Float64Array[]) => ArrayLike<number>,
  inputs: ArrayLike<number>[],
  which: number,
  upstream: ArrayLike<number>,
  eps = 1e-6,
  maxProbes = 400,
): Float64Array {
  const values = inputs.map((x) => Float64Array.from(x));
  const loss = () => {
    const out = f(values);
    let s = 0;
    for (let i = 0; i < out.length; i++) s += upstream[i] * out[i];
    return s;
  };
  const grad = new Float64Array(values[which].length).fill(NaN);
  for (const i of probedIndices(grad.length, maxProbes)) {
    const original = values[which][i];
    values[which][i] = original + eps;
    const plus = loss();
    values[which][i] = original - eps;
    const minus = loss();
    values[which][i] = original;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

/** The element indices a finite-difference check probes: all, or `maxProbes` spread evenly. */
export function probedIndices(length: number, maxProbes = 400): number[] {
  if (length <= maxProbes) return Array.from({ length }, (_, i) => i);
  const step = length / maxProbes;
  return Array.from({ length: maxProbes }, (_, k) => Math.floor(k * step + step / 2));
}

/** Keep only the probed elements (where `expected` is not NaN) of both arrays. */
export function probed(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): [number[], number[]] {
  const a: number[] = [];
  const e: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isNaN(expected[i])) {
      a.push(actual[i]);
      e.push(expected[i]);
    }
  }
  return [a, e];
}

/** Upload data into a pooled buffer (for launcher-level kernel tests). */
export function uploadBuffer(backend: Backend, data: Float32Array | Uint32Array): GPUBuffer {
  const buffer = backend.pool.acquire(Math.max(4, data.length * 4));
  backend.write(buffer, data);
  return buffer;
}

/** Read n floats back from a buffer. */
export async function downloadBuffer(
  backend: Backend,
  buffer: GPUBuffer,
  n: number,
): Promise<Float32Array> {
  return new Float32Array(await backend.read(buffer, n * 4));
}

/** The geometry of a square-kernel conv of an h x w input (floor mode). */
export function convGeometry(
  batch: number,
  inC: number,
  outC: number,
  h: number,
  w: number,
  k = 3,
  stride = 1,
  pad = 1,
): Conv2dGeometry {
  return {
    batch,
    inC,
    inH: h,
    inW: w,
    outC,
    outH: Math.floor((h + 2 * pad - k) / stride) + 1,
    outW: Math.floor((w + 2 * pad - k) / stride) + 1,
    kH: k,
    kW: k,
    stride,
    pad,
  };
}

/** Inputs and outputs of one conv's three passes, for launcher-level variant tests. */
export interface ConvPassBuffers {
  sizes: { x: number; w: number; y: number };
  /** Random x, w, bias and dy (seeds seed .. seed + 3). */
  data: { x: Float32Array; w: Float32Array; bias: Float32Array; dy: Float32Array };
  x: GPUBuffer;
  w: GPUBuffer;
  bias: GPUBuffer;
  dy: GPUBuffer;
  /** Outputs, filled with 99 so stale data cannot pass for a result. */
  y: GPUBuffer;
  y2: GPUBuffer;
  dx: GPUBuffer;
  dw: GPUBuffer;
  /** Return every buffer to the pool and flush. */
  release(): void;
}

/** Upload random operands of the conv `g` and acquire its output buffers. */
export function convPassBuffers(
  backend: Backend,
  g: Conv2dGeometry,
  seed: number,
): ConvPassBuffers {
  const sizes = {
    x: g.batch * g.inC * g.inH * g.inW,
    w: g.outC * g.inC * g.kH * g.kW,
    y: g.batch * g.outC * g.outH * g.outW,
  };
  const data = {
    x: randomArray(sizes.x, seed),
    w: randomArray(sizes.w, seed + 1),
    bias: randomArray(g.outC, seed + 2),
    dy: randomArray(sizes.y, seed + 3),
  };
  const output = (n: number) => {
    const buffer = backend.pool.acquire(n * 4);
    ops.fill(backend, buffer, n, 99);
    return buffer;
  };
  const buffers = {
    x: uploadBuffer(backend, data.x),
    w: uploadBuffer(backend, data.w),
    bias: uploadBuffer(backend, data.bias),
    dy: uploadBuffer(backend, data.dy),
    y: output(sizes.y),
    y2: output(sizes.y),
    dx: output(sizes.x),
    dw: output(sizes.w),
  };
  return {
    sizes,
    data,
    ...buffers,
    release() {
      for (const buffer of Object.values(buffers)) backend.pool.release(buffer);
      backend.flush();
    },
  };
}

/**
 * A conv variant's passes on random operands of `g` ({@link convPassBuffers} with `seed`), run with
 * the launchers' `options` (a forced variant): forward with and without bias, backward to the
 * input and to the weight, each against the float64 reference; `name` labels the failures.
 */
export async function checkConvPasses(
  backend: Backend,
  g: Conv2dGeometry,
  options: ops.ConvOptions,
  seed: number,
  name: string,
): Promise<void> {
  const run = convPassBuffers(backend, g, seed);
  const { x, w, bias, dy, y, y2, dx, dw } = run;
  const { x: xSize, w: wSize, y: ySize } = run.sizes;
  const { x: xData, w: wData, bias: bData, dy: dyData } = run.data;
  ops.conv2dForward(backend, x, w, bias, y, g, options);
  ops.conv2dForward(backend, x, w, null, y2, g, options);
  ops.conv2dBackwardInput(backend, dy, w, dx, g, options);
  ops.conv2dBackwardWeight(backend, dy, x, dw, g, options);
  const [yOut, y2Out, dxOut, dwOut] = await Promise.all(
    [[y, ySize], [y2, ySize], [dx, xSize], [dw, wSize]].map(([buffer, n]) =>
      downloadBuffer(backend, buffer as GPUBuffer, n as number)
    ),
  );
  const wShape = [g.outC, g.inC, g.kH, g.kW];
  const xShape = [g.batch, g.inC, g.inH, g.inW];
  const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * g.kH * g.kW), rtol: 1e-3 };
  const expected = ref.conv2d(xData, xShape, wData, wShape, bData, g.stride, g.pad).out;
  assertClose(yOut, expected, `${name} forward`, tolerance);
  const noBias = ref.conv2d(xData, xShape, wData, wShape, null, g.stride, g.pad).out;
  assertClose(y2Out, noBias, `${name} forward without bias`, tolerance);
  const grads = ref.convBackward(xData, wData, dyData, g);
  const dxTolerance = { atol: 1e-4 * Math.sqrt(g.outC * g.kH * g.kW), rtol: 1e-3 };
  assertClose(dxOut, grads.dx, `${name} backward input`, dxTolerance);
  const dwTolerance = { atol: 1e-4 * Math.sqrt(ySize / g.outC), rtol: 1e-3 };
  assertClose(dwOut, grads.dw, `${name} backward weight`, dwTolerance);
  run.release();
}

/**
 * The memory-bound kernel variants, forced through the launchers' `variant` options, against
 * float64 references: batch norm ("per-channel" and "chunked": statistics with running-stat
 * update, normalize, backward sums, backward input; vec4 and scalar spatial sizes, several chunks
 * with a short last one, a mean far from zero, batch 1 and 37), max-pool 2x2 stride 2 ("generic"
 * and "2x2": odd heights, odd quads per row, ties resolved to the first maximum) and nearest x2
 * upsampling; row copies (cat / narrow) and middle-axis sums, vec4 and scalar.
 */

import assert from "node:assert/strict";
import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import { assertClose, downloadBuffer, randomArray, testDevice, uploadBuffer } from "./helpers.ts";

const backend: Backend = (await testDevice()).backend;
const upload = (data: Float32Array | Uint32Array) => uploadBuffer(backend, data);
const download = (buffer: GPUBuffer, n: number) => downloadBuffer(backend, buffer, n);

const bnShapes: { name: string; shape: [number, number, number, number]; low?: number }[] = [
  { name: "b1 5x1x1", shape: [1, 5, 1, 1] },
  { name: "b3 5x7x9 scalar", shape: [3, 5, 7, 9] },
  { name: "b2 3x4x4 vec4", shape: [2, 3, 4, 4] },
  { name: "b37 3x48x48 vec4, 3 chunks", shape: [37, 3, 48, 48] },
  { name: "b37 2x45x45 scalar, 2 chunks", shape: [37, 2, 45, 45] },
  { name: "b37 6x2x6 vec4, mean 6", shape: [37, 6, 2, 6], low: 5 },
  { name: "b4 3x1x1100 (spatial past one workgroup)", shape: [4, 3, 1, 1100] },
];

/** Batch statistics, normalize and backward in float64 (PyTorch's training-mode formulas). */
function bnReference(
  x: Float32Array,
  dy: Float32Array,
  w: Float32Array,
  bias: Float32Array,
  [n, c, h, wd]: number[],
  eps: number,
) {
  const s = h * wd;
  const count = n * s;
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const sums = new Float64Array(2 * c);
  for (let ch = 0; ch < c; ch++) {
    let a = 0;
    for (let i = 0; i < n; i++) for (let k = 0; k < s; k++) a += x[(i * c + ch) * s + k];
    const m = a / count;
    let q = 0;
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < s; k++) q += (x[(i * c + ch) * s + k] - m) ** 2;
    }
    const v = q / count;
    mean[ch] = m;
    variance[ch] = v;
    const inv = 1 / Math.sqrt(v + eps);
    let sumDy = 0;
    let sumDyXhat = 0;
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < s; k++) {
        const e = (i * c + ch) * s + k;
        const xhat = (x[e] - m) * inv;
        y[e] = xhat * w[ch] + bias[ch];
        sumDy += dy[e];
        sumDyXhat += dy[e] * xhat;
      }
    }
    sums[ch] = sumDy;
    sums[c + ch] = sumDyXhat;
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < s; k++) {
        const e = (i * c + ch) * s + k;
        const xhat = (x[e] - m) * inv;
        dx[e] = w[ch] * inv * (dy[e] - sumDy / count - xhat * sumDyXhat / count);
      }
    }
  }
  return { mean, variance, y, dx, sums };
}

/**
 * A training batch norm's test data over `size` elements of `c` channels: x in [xLow, xHigh], dy,
 * the affine weight and bias, the running mean and variance (seeds seed .. seed + 5), uploaded,
 * and the mean, invStd and sums outputs.
 */
function bnFixture(size: number, c: number, seed: number, xLow: number, xHigh: number) {
  const data = {
    xData: randomArray(size, seed, xLow, xHigh),
    dyData: randomArray(size, seed + 1),
    wData: randomArray(c, seed + 2, 0.5, 1.5),
    bData: randomArray(c, seed + 3),
    rmData: randomArray(c, seed + 4),
    rvData: randomArray(c, seed + 5, 0.5, 1.5),
  };
  const [x, dy, weight, bias, rm, rv] = [
    data.xData,
    data.dyData,
    data.wData,
    data.bData,
    data.rmData,
    data.rvData,
  ].map(upload);
  const [mean, invStd, sums] = [c, c, 2 * c].map((k) => backend.pool.acquire(k * 4));
  return { ...data, x, dy, weight, bias, rm, rv, mean, invStd, sums };
}

for (const variant of ["chunked", "per-channel"] as const) {
  for (const { name, shape, low } of bnShapes) {
    Deno.test(`batch norm ${variant} ${name}`, async () => {
      const options = { variant };
      const [n, c, h, w] = shape;
      const spatial = h * w;
      const size = n * c * spatial;
      const eps = 1e-5;
      const f = bnFixture(size, c, 31, low ?? -2, (low ?? -2) + 2);
      const { xData, dyData, wData, bData, rmData, rvData } = f;
      const { x, dy, weight, bias, rm, rv, mean, invStd, sums } = f;
      const [y, dx] = [size, size].map((k) => backend.pool.acquire(k * 4));
      const stats = { mean, stat: invStd, fromVariance: false };
      ops.batchNormStats(
        backend,
        x,
        mean,
        invStd,
        { mean: rm, var: rv },
        n,
        c,
        spatial,
        eps,
        0.1,
        options,
      );
      ops.batchNormApply(backend, x, stats, { weight, bias }, y, size, c, spatial, eps, options);
      ops.batchNormBackwardSums(backend, dy, x, stats, sums, n, c, spatial, eps, options);
      ops.batchNormBackwardInput(
        backend,
        dy,
        x,
        stats,
        weight,
        sums,
        dx,
        n,
        c,
        spatial,
        eps,
        options,
      );
      const [meanOut, invOut, rmOut, rvOut, yOut, sumsOut, dxOut] = await Promise.all([
        download(mean, c),
        download(invStd, c),
        download(rm, c),
        download(rv, c),
        download(y, size),
        download(sums, 2 * c),
        download(dx, size),
      ]);
      const r = bnReference(xData, dyData, wData, bData, shape, eps);
      const tol = { atol: 2e-4, rtol: 1e-3 };
      assertClose(meanOut, r.mean, `${name} mean`, tol);
      assertClose(invOut, Array.from(r.variance, (v) => 1 / Math.sqrt(v + eps)), `${name} invStd`, {
        atol: 1e-3,
        rtol: 2e-3,
      });
      const count = n * spatial;
      const unbiased = Array.from(r.variance, (v) => v * count / Math.max(count - 1, 1));
      assertClose(rmOut, Array.from(rmData, (m, i) => 0.9 * m + 0.1 * r.mean[i]), "running mean");
      assertClose(rvOut, Array.from(rvData, (v, i) => 0.9 * v + 0.1 * unbiased[i]), "running var");
      assertClose(yOut, r.y, `${name} y`, { atol: 1e-3, rtol: 2e-3 });
      assertClose(sumsOut, r.sums, `${name} sums`, { atol: 1e-4 * Math.sqrt(count), rtol: 1e-3 });
      assertClose(dxOut, r.dx, `${name} dx`, { atol: 1e-3, rtol: 2e-3 });
      // Eval mode (running statistics as a variance): normalize and backward.
      const evalStats = { mean: rm, stat: rv, fromVariance: true };
      ops.batchNormApply(backend, x, evalStats, null, y, size, c, spatial, eps, options);
      ops.batchNormBackwardInput(
        backend,
        dy,
        x,
        evalStats,
        weight,
        null,
        dx,
        n,
        c,
        spatial,
        eps,
        options,
      );
      const [yEval, dxEval] = await Promise.all([download(y, size), download(dx, size)]);
      const yEvalRef = new Float64Array(size);
      const dxEvalRef = new Float64Array(size);
      for (let e = 0; e < size; e++) {
        const ch = Math.floor(e / spatial) % c;
        const inv = 1 / Math.sqrt(rvOut[ch] + eps);
        yEvalRef[e] = (xData[e] - rmOut[ch]) * inv;
        dxEvalRef[e] = dyData[e] * wData[ch] * inv;
      }
      assertClose(yEval, yEvalRef, `${name} eval y`, tol);
      assertClose(dxEval, dxEvalRef, `${name} eval dx`, tol);
      for (const buffer of [x, dy, weight, bias, rm, rv, mean, invStd, sums, y, dx]) {
        backend.pool.release(buffer);
      }
      backend.flush();
    });
  }
}

// Fused ReLU (options.relu on the apply pass, options.reluOutput on the backward passes): y =
// max(bn(x), 0), and the backward equals the plain backward of dy * (y > 0).
for (const variant of ["chunked", "per-channel"] as const) {
  for (const { name, shape } of bnShapes.slice(0, 5)) {
    Deno.test(`batch norm ${variant} fused relu ${name}`, async () => {
      const [n, c, h, w] = shape;
      const spatial = h * w;
      const size = n * c * spatial;
      const eps = 1e-5;
      const xData = randomArray(size, 41, -2, 1);
      const dyData = randomArray(size, 42);
      const wData = randomArray(c, 43, 0.5, 1.5);
      const bData = randomArray(c, 44);
      const rvData = randomArray(c, 45, 0.5, 1.5);
      const [x, dy, weight, bias, rv] = [xData, dyData, wData, bData, rvData].map(upload);
      const [mean, invStd, sums] = [c, c, 2 * c].map((k) => backend.pool.acquire(k * 4));
      const [y, dx] = [size, size].map((k) => backend.pool.acquire(k * 4));
      const stats = { mean, stat: invStd, fromVariance: false };
      ops.batchNormStats(backend, x, mean, invStd, null, n, c, spatial, eps, 0.1, { variant });
      ops.batchNormApply(backend, x, stats, { weight, bias }, y, size, c, spatial, eps, {
        variant,
        relu: true,
      });
      const back = { variant, reluOutput: y };
      ops.batchNormBackwardSums(backend, dy, x, stats, sums, n, c, spatial, eps, back);
      ops.batchNormBackwardInput(backend, dy, x, stats, weight, sums, dx, n, c, spatial, eps, back);
      const [yOut, sumsOut, dxOut] = await Promise.all([
        download(y, size),
        download(sums, 2 * c),
        download(dx, size),
      ]);
      const plain = bnReference(xData, dyData, wData, bData, shape, eps);
      const masked = dyData.map((g, e) => plain.y[e] > 0 ? g : 0);
      const r = bnReference(xData, masked, wData, bData, shape, eps);
      const count = n * spatial;
      assertClose(yOut, plain.y.map((v) => Math.max(v, 0)), `${name} relu y`, {
        atol: 1e-3,
        rtol: 2e-3,
      });
      assertClose(sumsOut, r.sums, `${name} relu sums`, {
        atol: 1e-4 * Math.sqrt(count),
        rtol: 1e-3,
      });
      assertClose(dxOut, r.dx, `${name} relu dx`, { atol: 1e-3, rtol: 2e-3 });
      // Eval mode: running mean 0 and variance rv, no affine in the apply pass.
      const zeros = upload(new Float32Array(c));
      const evalStats = { mean: zeros, stat: rv, fromVariance: true };
      ops.batchNormApply(backend, x, evalStats, null, y, size, c, spatial, eps, {
        variant,
        relu: true,
      });
      ops.batchNormBackwardInput(backend, dy, x, evalStats, weight, null, dx, n, c, spatial, eps, {
        variant,
        reluOutput: y,
      });
      const [yEval, dxEval] = await Promise.all([download(y, size), download(dx, size)]);
      const yRef = new Float64Array(size);
      const dxRef = new Float64Array(size);
      for (let e = 0; e < size; e++) {
        const ch = Math.floor(e / spatial) % c;
        const inv = 1 / Math.sqrt(rvData[ch] + eps);
        yRef[e] = Math.max(xData[e] * inv, 0);
        dxRef[e] = yRef[e] > 0 ? dyData[e] * wData[ch] * inv : 0;
      }
      assertClose(yEval, yRef, `${name} relu eval y`, { atol: 2e-4, rtol: 1e-3 });
      assertClose(dxEval, dxRef, `${name} relu eval dx`, { atol: 2e-4, rtol: 1e-3 });
      for (const buffer of [x, dy, weight, bias, rv, mean, invStd, sums, y, dx, zeros]) {
        backend.pool.release(buffer);
      }
      backend.flush();
    });
  }
}

// Widths of 1 and 3 column quads (one quad a thread) and of 2, 4 and 6 (two a thread), odd heights.
const poolShapes: [number, number, number, number][] = [
  [1, 1, 2, 4],
  [1, 3, 8, 12],
  [37, 2, 9, 8],
  [2, 5, 4, 4],
  [2, 3, 6, 16],
  [3, 2, 7, 24],
];

for (const variant of ["2x2", "generic"] as const) {
  for (const [n, c, h, w] of poolShapes) {
    Deno.test(`max-pool 2x2 ${variant} [${n},${c},${h},${w}]`, async () => {
      const options = { variant };
      const g = {
        planes: n * c,
        inH: h,
        inW: w,
        outH: Math.floor(h / 2),
        outW: Math.floor(w / 2),
        kH: 2,
        kW: 2,
        strideH: 2,
        strideW: 2,
        padH: 0,
        padW: 0,
      };
      if (ops.maxPool2dVariant(g, options) !== variant) throw new Error("variant not taken");
      const size = n * c * h * w;
      const outSize = g.planes * g.outH * g.outW;
      // Values on a coarse grid so windows have ties (the first maximum must win).
      const xData = randomArray(size, 41).map((v) => Math.round(v * 2) / 2);
      const dyData = randomArray(outSize, 42);
      const x = upload(xData);
      const dy = upload(dyData);
      const y = backend.pool.acquire(outSize * 4);
      const argmax = backend.pool.acquire(outSize * 4);
      const dx = backend.pool.acquire(size * 4);
      ops.fill(backend, dx, size, 7);
      ops.maxPool2dForward(backend, x, y, argmax, g, options);
      ops.maxPool2dBackward(backend, dy, argmax, dx, g, options);
      const [yOut, argOut, dxOut] = await Promise.all([
        download(y, outSize),
        backend.read(argmax, outSize * 4).then((b) => new Uint32Array(b)),
        download(dx, size),
      ]);
      const yRef = new Float64Array(outSize);
      const argRef = new Float64Array(outSize);
      const dxRef = new Float64Array(size);
      for (let p = 0; p < g.planes; p++) {
        for (let oh = 0; oh < g.outH; oh++) {
          for (let ow = 0; ow < g.outW; ow++) {
            let best = -Infinity;
            let at = -1;
            for (let kh = 0; kh < 2; kh++) {
              for (let kw = 0; kw < 2; kw++) {
                const a = (2 * oh + kh) * w + 2 * ow + kw;
                const v = xData[p * h * w + a];
                if (at < 0 || v > best) [best, at] = [v, a];
              }
            }
            const o = (p * g.outH + oh) * g.outW + ow;
            yRef[o] = best;
            argRef[o] = at;
            dxRef[p * h * w + at] += dyData[o];
          }
        }
      }
      assertClose(yOut, yRef, "max-pool y", { atol: 0, rtol: 0 });
      assertClose(argOut, argRef, "max-pool argmax", { atol: 0, rtol: 0 });
      assertClose(dxOut, dxRef, "max-pool dx", { atol: 0, rtol: 0 });
      for (const buffer of [x, dy, y, argmax, dx]) backend.pool.release(buffer);
      backend.flush();
    });
  }
}

const upsampleShapes: [number, number, number, number][] = [
  [1, 1, 1, 4],
  [1, 3, 4, 8],
  [37, 2, 3, 4],
  [2, 1, 5, 12],
];

for (const variant of ["2x2", "generic"] as const) {
  for (const [n, c, h, w] of upsampleShapes) {
    Deno.test(`nearest x2 upsampling ${variant} [${n},${c},${h},${w}]`, async () => {
      const options = { variant };
      const g = {
        planes: n * c,
        inH: h,
        inW: w,
        outH: 2 * h,
        outW: 2 * w,
        scaleH: 0.5,
        scaleW: 0.5,
      };
      if (ops.resizeVariant("nearest", g, options) !== variant) {
        throw new Error("variant not taken");
      }
      const size = n * c * h * w;
      const xData = randomArray(size, 51);
      const dyData = randomArray(4 * size, 52);
      const x = upload(xData);
      const dy = upload(dyData);
      const y = backend.pool.acquire(4 * size * 4);
      const dx = backend.pool.acquire(size * 4);
      ops.resizeForward(backend, "nearest", x, y, g, options);
      ops.resizeBackward(backend, "nearest", dy, dx, g, options);
      const [yOut, dxOut] = await Promise.all([download(y, 4 * size), download(dx, size)]);
      const yRef = new Float64Array(4 * size);
      const dxRef = new Float64Array(size);
      for (let p = 0; p < g.planes; p++) {
        for (let oh = 0; oh < 2 * h; oh++) {
          for (let ow = 0; ow < 2 * w; ow++) {
            const o = (p * 2 * h + oh) * 2 * w + ow;
            const i = (p * h + (oh >> 1)) * w + (ow >> 1);
            yRef[o] = xData[i];
            dxRef[i] += dyData[o];
          }
        }
      }
      assertClose(yOut, yRef, "upsample y", { atol: 0, rtol: 0 });
      assertClose(dxOut, dxRef, "upsample dx", { atol: 1e-6, rtol: 1e-6 });
      for (const buffer of [x, dy, y, dx]) backend.pool.release(buffer);
      backend.flush();
    });
  }
}

// Row copies (the kernel of cat, narrow and their backward): vec4 where every length, stride and
// offset is a multiple of 4, else (or forced) scalar; plain and accumulating.
for (const vec4 of [true, false]) {
  Deno.test(`copyRows ${vec4 ? "vec4" : "scalar"}: cat of [3, 8, 12] and [3, 4, 12] along dim 1`, async () => {
    const a = randomArray(3 * 8 * 12, 51);
    const c = randomArray(3 * 4 * 12, 52);
    const [ab, cb] = [a, c].map(upload);
    const out = backend.pool.acquire(3 * 12 * 12 * 4);
    ops.fill(backend, out, 3 * 12 * 12, 99);
    const options = { vec4 };
    const layout = (rows: number, offset: number) => ({
      outer: 3,
      rowLength: rows * 12,
      srcStride: rows * 12,
      srcOffset: 0,
      dstStride: 12 * 12,
      dstOffset: offset * 12,
    });
    ops.copyRows(backend, ab, out, layout(8, 0), false, options);
    ops.copyRows(backend, cb, out, layout(4, 8), false, options);
    const expected = ref.cat([{ data: a, shape: [3, 8, 12] }, { data: c, shape: [3, 4, 12] }], 1);
    assertClose(await download(out, 3 * 12 * 12), expected, "cat");
    // Accumulate the second part again (narrow's backward adds into a gradient this way).
    ops.copyRows(backend, cb, out, layout(4, 8), true, options);
    const twice = ref.cat([{ data: a, shape: [3, 8, 12] }, {
      data: c.map((v) => 2 * v),
      shape: [3, 4, 12],
    }], 1);
    assertClose(await download(out, 3 * 12 * 12), twice, "cat accumulated");
    for (const buffer of [ab, cb, out]) backend.pool.release(buffer);
    backend.flush();
  });
}

Deno.test("copyRows with odd offsets falls back to scalar: narrow [2, 7, 5] dim 1 start 3", async () => {
  const x = randomArray(2 * 7 * 5, 53);
  const xb = upload(x);
  const out = backend.pool.acquire(2 * 3 * 5 * 4);
  ops.copyRows(backend, xb, out, {
    outer: 2,
    rowLength: 15,
    srcStride: 35,
    srcOffset: 15,
    dstStride: 15,
    dstOffset: 0,
  });
  assertClose(await download(out, 30), ref.narrow(x, [2, 7, 5], 1, 3, 3), "narrow");
  backend.pool.release(xb);
  backend.pool.release(out);
  backend.flush();
});

// Middle-axis sums (conv bias gradients, losses): vec4 rows, scalar rows, squared differences,
// weighted squared differences.
for (const [outer, mid, inner] of [[5, 3, 12], [4, 7, 9], [37, 2, 1100]]) {
  for (const vec4 of [true, false]) {
    Deno.test(`reduceMiddle ${vec4 ? "vec4" : "scalar"} [${outer}, ${mid}, ${inner}]`, async () => {
      const n = outer * mid * inner;
      const x = randomArray(n, 54);
      const y = randomArray(n, 55);
      const w = randomArray(n, 56, 0, 3);
      const [xb, yb, wb] = [x, y, w].map(upload);
      const [out, out2, out3] = [0, 1, 2].map(() => backend.pool.acquire(mid * 4));
      ops.reduceMiddle(backend, xb, out, outer, mid, inner, 0.5, null, n, { vec4 });
      ops.reduceMiddle(backend, xb, out2, outer, mid, inner, 1, yb, n, { vec4 });
      ops.reduceMiddle(backend, xb, out3, outer, mid, inner, 0.25, yb, n, { vec4, weights: wb });
      const [sums, squares, weighted] = await Promise.all(
        [out, out2, out3].map((buffer) => download(buffer, mid)),
      );
      const tol = { atol: 1e-4 * Math.sqrt(n), rtol: 1e-4 };
      assertClose(sums, ref.reduceMiddle(x, outer, mid, inner, 0.5), "sum", tol);
      assertClose(squares, ref.reduceMiddle(x, outer, mid, inner, 1, y), "squared diff", tol);
      assertClose(
        weighted,
        ref.reduceMiddle(x, outer, mid, inner, 0.25, y, w),
        "weighted squared diff",
        tol,
      );
      for (const buffer of [xb, yb, wb, out, out2, out3]) backend.pool.release(buffer);
      backend.flush();
    });
  }
}

// Per-channel sums of [batch, channels, spatial] (conv bias gradients): vec4 planes and scalar
// ones (spatial 9, 7), one chunk per channel and many, a single channel.
for (
  const [batch, channels, spatial] of [[5, 3, 12], [4, 7, 9], [37, 2, 1100], [3, 1, 7], [
    64,
    5,
    256,
  ]]
) {
  for (const chunking of ["adapter", "gpu"] as const) {
    const label = chunking === "gpu" ? " gpu chunking" : "";
    Deno.test(`channelSums${label} [${batch}, ${channels}, ${spatial}]`, async () => {
      const n = batch * channels * spatial;
      const x = randomArray(n, 56);
      const xb = upload(x);
      const out = backend.pool.acquire(channels * 4);
      ops.setReductionChunking(chunking === "gpu" ? "gpu" : null);
      try {
        ops.channelSums(backend, xb, out, batch, channels, spatial, 0.5);
      } finally {
        ops.setReductionChunking(null);
      }
      const tol = { atol: 1e-4 * Math.sqrt(n), rtol: 1e-4 };
      const expected = ref.reduceMiddle(x, batch, channels, spatial, 0.5);
      assertClose(await download(out, channels), expected, "sums", tol);
      backend.pool.release(xb);
      backend.pool.release(out);
      backend.flush();
    });
  }
}

// Max-pool 3x3 stride 2 padding 1 (the ResNet stem's): the "3x3s2" backward (one thread per 2x2
// input block) and the generic one, on even and odd sizes, with ties (the first maximum wins).
for (const variant of ["3x3s2", "generic"] as const) {
  for (
    const [n, c, h, w] of [[1, 1, 3, 5], [2, 3, 8, 12], [37, 2, 9, 8], [2, 5, 7, 7], [1, 2, 1, 2]]
  ) {
    Deno.test(`max-pool 3x3 s2 p1 ${variant} [${n},${c},${h},${w}]`, async () => {
      const options = { variant };
      const outH = Math.floor((h - 1) / 2) + 1;
      const outW = Math.floor((w - 1) / 2) + 1;
      const g = {
        planes: n * c,
        inH: h,
        inW: w,
        outH,
        outW,
        kH: 3,
        kW: 3,
        strideH: 2,
        strideW: 2,
        padH: 1,
        padW: 1,
      };
      if (ops.maxPool2dVariant(g, options) !== variant) throw new Error("variant not taken");
      const size = n * c * h * w;
      const outSize = g.planes * outH * outW;
      const xData = randomArray(size, 43).map((v) => Math.round(v * 2) / 2);
      const dyData = randomArray(outSize, 44);
      const [x, dy] = [xData, dyData].map(upload);
      const y = backend.pool.acquire(outSize * 4);
      const argmax = backend.pool.acquire(outSize * 4);
      const dx = backend.pool.acquire(size * 4);
      ops.fill(backend, dx, size, 7);
      ops.maxPool2dForward(backend, x, y, argmax, g, options);
      ops.maxPool2dBackward(backend, dy, argmax, dx, g, options);
      const [yOut, dxOut] = await Promise.all([download(y, outSize), download(dx, size)]);
      const dxRef = new Float64Array(size);
      for (let p = 0; p < g.planes; p++) {
        for (let oh = 0; oh < outH; oh++) {
          for (let ow = 0; ow < outW; ow++) {
            let best = -Infinity;
            let at = -1;
            for (let kh = 0; kh < 3; kh++) {
              for (let kw = 0; kw < 3; kw++) {
                const ih = 2 * oh - 1 + kh;
                const iw = 2 * ow - 1 + kw;
                if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                const v = xData[(p * h + ih) * w + iw];
                if (at < 0 || v > best) [best, at] = [v, ih * w + iw];
              }
            }
            dxRef[p * h * w + at] += dyData[(p * outH + oh) * outW + ow];
          }
        }
      }
      const yRef = ref.maxPool2d(xData, [n, c, h, w], 3, 2, 1).out;
      assertClose(yOut, yRef, "max-pool y", { atol: 0, rtol: 0 });
      assertClose(dxOut, dxRef, "max-pool dx", { atol: 1e-6, rtol: 1e-6 });
      for (const buffer of [x, dy, y, argmax, dx]) backend.pool.release(buffer);
      backend.flush();
    });
  }
}

// Fused training passes (the per-channel finalize folded into the element pass, one workgroup per
// channel: "walked", finding the channel's sums in the same pass, as CPU rasterizers run them, with
// the workgroup size the channel's length picks or 64 threads forced ("fused-wide"), or after a
// partial pass, "two-pass") against the float64 reference, and unfused: vec4 and scalar,
// several chunks per thread (3 channels: more chunks than threads), a short last chunk, with and
// without affine parameters, running statistics and a fused ReLU.
const fusedShapes: [number, number, number, number][] = [
  [3, 5, 7, 9],
  [2, 3, 4, 4],
  [37, 3, 48, 48],
  [37, 2, 45, 45],
  [4, 70, 3, 4],
];
// "gpu": the chunking real GPUs use (many short chunks, at most 256 per channel), forced here.
for (const chunking of ["adapter", "gpu"] as const) {
  const forms = chunking === "gpu"
    ? ["fused"] as const
    : ["fused", "fused-wide", "two-pass", "unfused"] as const;
  for (const form of forms) {
    const fused = form !== "unfused";
    const walked = form !== "two-pass";
    const narrow = form === "fused-wide" ? false : undefined;
    for (const shape of fusedShapes) {
      // relu "input": the backward recomputes the ReLU mask from x; "residual": a map added before
      // the ReLU (a ResNet block's tail), its gradient written by the backward (fused passes only).
      const modes = fused ? [false, true, "input", "residual"] as const : [false, true] as const;
      for (const mode of modes) {
        const relu = mode !== false;
        const label = chunking === "gpu" ? " gpu chunking" : "";
        Deno.test(`batch norm training passes ${form} relu=${mode}${label} [${shape}]`, async () => {
          const [n, c, h, w] = shape;
          ops.setReductionChunking(chunking === "gpu" ? "gpu" : null);
          try {
            const spatial = h * w;
            const size = n * c * spatial;
            const eps = 1e-5;
            const f = bnFixture(size, c, 61, -2, 1);
            const { xData, dyData, wData, bData, rmData, rvData } = f;
            const { x, dy, weight, bias, rm, rv, mean, invStd, sums } = f;
            const [y, dx, y2] = [size, size, size].map((k) => backend.pool.acquire(k * 4));
            ops.fill(backend, dx, size, 99);
            const residualData = mode === "residual" ? randomArray(size, 67, -1, 1) : null;
            const residual = residualData ? upload(residualData) : undefined;
            const dResidual = residual ? backend.pool.acquire(size * 4) : undefined;
            const options = { fused, relu, walked, narrow, residual };
            const running = { mean: rm, var: rv };
            ops.batchNormForwardTraining(
              backend,
              x,
              mean,
              invStd,
              running,
              { weight, bias },
              y,
              n,
              c,
              spatial,
              eps,
              0.1,
              options,
            );
            // No affine parameters and no running statistics: the plain normalization.
            ops.batchNormForwardTraining(
              backend,
              x,
              mean,
              invStd,
              null,
              null,
              y2,
              n,
              c,
              spatial,
              eps,
              0.1,
              options,
            );
            ops.batchNormBackwardTraining(
              backend,
              dy,
              x,
              mean,
              invStd,
              weight,
              sums,
              dx,
              n,
              c,
              spatial,
              eps,
              mode === "input" ? { fused, walked, narrow, reluFromInput: { bias } } : {
                fused,
                walked,
                narrow,
                reluOutput: relu ? y : undefined,
                residualGradient: dResidual,
              },
            );
            const [meanOut, invOut, rmOut, rvOut, yOut, y2Out, sumsOut, dxOut] = await Promise.all([
              download(mean, c),
              download(invStd, c),
              download(rm, c),
              download(rv, c),
              download(y, size),
              download(y2, size),
              download(sums, 2 * c),
              download(dx, size),
            ]);
            const plain = bnReference(xData, dyData, wData, bData, shape, eps);
            // The ReLU's input: the normalized x, plus the residual in that mode.
            const summed = residualData ? plain.y.map((v, e) => v + residualData[e]) : plain.y;
            const masked = relu ? dyData.map((g, e) => summed[e] > 0 ? g : 0) : dyData;
            const r = bnReference(xData, masked, wData, bData, shape, eps);
            const count = n * spatial;
            const tol = { atol: 2e-4, rtol: 1e-3 };
            assertClose(meanOut, r.mean, "mean", tol);
            assertClose(invOut, Array.from(r.variance, (v) => 1 / Math.sqrt(v + eps)), "invStd", {
              atol: 1e-3,
              rtol: 2e-3,
            });
            const unbiased = Array.from(r.variance, (v) => v * count / Math.max(count - 1, 1));
            assertClose(
              rmOut,
              Array.from(rmData, (m, i) => 0.9 * m + 0.1 * r.mean[i]),
              "running mean",
            );
            assertClose(
              rvOut,
              Array.from(rvData, (v, i) => 0.9 * v + 0.1 * unbiased[i]),
              "running var",
            );
            const yRef = relu ? summed.map((v) => Math.max(v, 0)) : plain.y;
            assertClose(yOut, yRef, "y", { atol: 1e-3, rtol: 2e-3 });
            const y2Ref = xData.map((v, e) => {
              const ch = Math.floor(e / spatial) % c;
              const z = (v - r.mean[ch]) / Math.sqrt(r.variance[ch] + eps) +
                (residualData ? residualData[e] : 0);
              return relu ? Math.max(z, 0) : z;
            });
            assertClose(y2Out, y2Ref, "y without affine", { atol: 1e-3, rtol: 2e-3 });
            assertClose(sumsOut, r.sums, "sums", { atol: 1e-4 * Math.sqrt(count), rtol: 1e-3 });
            assertClose(dxOut, r.dx, "dx", { atol: 1e-3, rtol: 2e-3 });
            if (dResidual) {
              // Exactly the upstream gradient where the block's output is positive, else zero.
              assert.deepEqual(
                await download(dResidual, size),
                Float32Array.from(masked),
                "the residual's gradient",
              );
            }
            if (mode === "input") {
              // The recomputed mask is the forward's exactly: the same dx as reading it from y, with
              // and without affine parameters (y2's statistics are the same batch's).
              const dx2 = backend.pool.acquire(size * 4);
              const run = (w: GPUBuffer | null, out: GPUBuffer, back: ops.BatchNormOptions) =>
                ops.batchNormBackwardTraining(
                  backend,
                  dy,
                  x,
                  mean,
                  invStd,
                  w,
                  sums,
                  out,
                  n,
                  c,
                  spatial,
                  eps,
                  { fused, walked, narrow, ...back },
                );
              run(weight, dx2, { reluOutput: y });
              assert.deepEqual(await download(dx2, size), dxOut, "dx, mask read from y");
              run(null, dx, { reluFromInput: { bias: null } });
              run(null, dx2, { reluOutput: y2 });
              const [plainInput, plainOutput] = await Promise.all([
                download(dx, size),
                download(dx2, size),
              ]);
              assert.deepEqual(plainInput, plainOutput, "dx without affine, mask read from y2");
              backend.pool.release(dx2);
            }
            for (const buffer of [x, dy, weight, bias, rm, rv, mean, invStd, sums, y, dx, y2]) {
              backend.pool.release(buffer);
            }
            if (residual) backend.pool.release(residual);
            if (dResidual) backend.pool.release(dResidual);
            backend.flush();
          } finally {
            ops.setReductionChunking(null);
          }
        });
      }
    }
  }
}

// The pooled training passes (batch norm, ReLU, 2x2 max-pool) walked (the channel's sums found in
// the same pass, as on CPU rasterizers; checked against the float64 reference through
// F.batchNormReluMaxPool2d in tests/ops_test.ts) with one SIMD group or 64 threads per channel,
// and in two passes (a partial pass first): the same statistics, pooled map, sums and dx up to
// rounding.
Deno.test("pooled batch norm training passes: walked and two-pass agree", async () => {
  const [n, c, h, w] = [5, 3, 10, 16];
  const size = n * c * h * w;
  const x = upload(randomArray(size, 71, -2, 3));
  const dPooled = upload(randomArray(size / 4, 72));
  const affine = { weight: upload(randomArray(c, 73, 0.5, 1.5)), bias: upload(randomArray(c, 74)) };
  const run = async (walked: boolean, narrow?: boolean) => {
    const [mean, invStd] = [backend.pool.acquire(c * 4), backend.pool.acquire(c * 4)];
    const running = { mean: upload(randomArray(c, 75)), var: upload(randomArray(c, 76, 0.5, 1)) };
    const pooled = backend.pool.acquire(size);
    const [sums, dx] = [backend.pool.acquire(2 * c * 4), backend.pool.acquire(size * 4)];
    const options = { walked, narrow };
    ops.batchNormReluMaxPoolForwardTraining(
      backend,
      x,
      mean,
      invStd,
      running,
      affine,
      pooled,
      n,
      c,
      h,
      w,
      1e-5,
      0.1,
      options,
    );
    ops.batchNormReluMaxPoolBackwardTraining(
      backend,
      dPooled,
      x,
      mean,
      invStd,
      affine,
      sums,
      dx,
      n,
      c,
      h,
      w,
      1e-5,
      options,
    );
    const out = {
      statistics: [...await download(mean, c), ...await download(invStd, c)],
      running: [...await download(running.mean, c), ...await download(running.var, c)],
      pooled: await download(pooled, size / 4),
      sums: await download(sums, 2 * c),
      dx: await download(dx, size),
    };
    for (const buffer of [mean, invStd, running.mean, running.var, pooled, sums, dx]) {
      backend.pool.release(buffer);
    }
    return out;
  };
  const twoPass = await run(false);
  const tol = { atol: 1e-5, rtol: 1e-5 };
  for (const narrow of [true, false]) {
    const walked = await run(true, narrow);
    const form = narrow ? "walked, one SIMD group" : "walked, 64 threads";
    assertClose(walked.statistics, twoPass.statistics, `${form}: mean and invStd`, tol);
    assertClose(walked.running, twoPass.running, `${form}: running statistics`, tol);
    assertClose(walked.pooled, twoPass.pooled, `${form}: pooled map`, tol);
    assertClose(walked.sums, twoPass.sums, `${form}: sums`, { atol: 1e-4, rtol: 1e-5 });
    assertClose(walked.dx, twoPass.dx, `${form}: dx`, tol);
  }
  for (const buffer of [x, dPooled, affine.weight, affine.bias]) backend.pool.release(buffer);
  backend.flush();
});

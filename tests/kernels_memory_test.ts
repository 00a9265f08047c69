/**
 * The memory-bound kernel variants, forced through the launchers' `variant` options, against
 * float64 references: batch norm ("per-channel" and "chunked": statistics with running-stat
 * update, normalize, backward sums, backward input; vec4 and scalar spatial sizes, several chunks
 * with a short last one, a mean far from zero, batch 1 and 37), max-pool 2x2 stride 2 ("generic"
 * and "2x2": odd heights, odd quads per row, ties resolved to the first maximum) and nearest x2
 * upsampling.
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
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

for (const variant of ["chunked", "per-channel"] as const) {
  for (const { name, shape, low } of bnShapes) {
    Deno.test(`batch norm ${variant} ${name}`, async () => {
      const options = { variant };
      const [n, c, h, w] = shape;
      const spatial = h * w;
      const size = n * c * spatial;
      const eps = 1e-5;
      const xData = randomArray(size, 31, low ?? -2, (low ?? -2) + 2);
      const dyData = randomArray(size, 32);
      const wData = randomArray(c, 33, 0.5, 1.5);
      const bData = randomArray(c, 34);
      const rmData = randomArray(c, 35);
      const rvData = randomArray(c, 36, 0.5, 1.5);
      const [x, dy, weight, bias, rm, rv] = [xData, dyData, wData, bData, rmData, rvData].map(
        upload,
      );
      const [mean, invStd, sums] = [c, c, 2 * c].map((k) => backend.pool.acquire(k * 4));
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

const poolShapes: [number, number, number, number][] = [
  [1, 1, 2, 4],
  [1, 3, 8, 12],
  [37, 2, 9, 8],
  [2, 5, 4, 4],
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

// Batch-norm statistics formed in a conv's stores (kernels/wgsl/conv_ubo.ts storeStatistics): the
// ubo and sub-pixel forwards write per-workgroup partials that the fused batch-norm forwards read
// instead of a pass of their own over the map. Checked against float64 statistics of the conv's
// own output, on odd shapes (channels not a multiple of the block, heights not a multiple of the
// register tile, several workgroups, two input-channel chunks), with both fused-pass walks (one
// workgroup per channel as on CPU rasterizers, segmented as on GPUs), and on a map whose mean is
// far larger than its spread (the shifted sums must not lose the variance).

import * as assert from "node:assert/strict";
import * as ops from "../kernels/ops.ts";
import * as F from "../nn/functional.ts";
import { tidy } from "../nn/tensor.ts";
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

interface Case {
  name: string;
  /** "ubo": a 3x3 conv of x; "subpixel": a 3x3 conv of x upsampled 2x. */
  kind: "ubo" | "subpixel";
  batch: number;
  inC: number;
  outC: number;
  /** The conv's output size (the sub-pixel conv's source map is half of it). */
  H: number;
  W: number;
  /** Added to the bias; the weights are scaled by `spread`. */
  offset?: number;
  spread?: number;
}

const CASES: Case[] = [
  { name: "ubo, 7 channels, 10 rows", kind: "ubo", batch: 3, inC: 5, outC: 7, H: 10, W: 12 },
  { name: "ubo, many workgroups", kind: "ubo", batch: 5, inC: 3, outC: 9, H: 17, W: 20 },
  { name: "ubo, two input chunks", kind: "ubo", batch: 2, inC: 230, outC: 5, H: 4, W: 4 },
  {
    name: "ubo, mean 500 and spread 0.01",
    kind: "ubo",
    batch: 4,
    inC: 6,
    outC: 6,
    H: 12,
    W: 8,
    offset: 500,
    spread: 0.01,
  },
  { name: "sub-pixel, 10 channels", kind: "subpixel", batch: 3, inC: 6, outC: 10, H: 10, W: 8 },
  { name: "sub-pixel, many workgroups", kind: "subpixel", batch: 6, inC: 4, outC: 8, H: 18, W: 16 },
  {
    name: "sub-pixel, two input chunks",
    kind: "subpixel",
    batch: 2,
    inC: 130,
    outC: 5,
    H: 4,
    W: 8,
  },
];

/** Per-channel mean and biased variance of y [batch, channels, spatial], in float64. */
function channelMoments(y: Float32Array, batch: number, channels: number, spatial: number) {
  const mean = new Float64Array(channels);
  const variance = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (let n = 0; n < batch; n++) {
      for (let s = 0; s < spatial; s++) sum += y[(n * channels + c) * spatial + s];
    }
    mean[c] = sum / (batch * spatial);
    let squares = 0;
    for (let n = 0; n < batch; n++) {
      for (let s = 0; s < spatial; s++) {
        squares += (y[(n * channels + c) * spatial + s] - mean[c]) ** 2;
      }
    }
    variance[c] = squares / (batch * spatial);
  }
  return { mean, variance };
}

/** The conv of case `c` with statistics: its output and the statistics (asserted formed). */
function convWithStatistics(c: Case, seed: number) {
  const source = c.kind === "subpixel" ? { H: c.H / 2, W: c.W / 2 } : { H: c.H, W: c.W };
  const g = convGeometry(c.batch, c.inC, c.outC, c.H, c.W);
  const spread = c.spread ?? 1;
  const x = uploadBuffer(backend, randomArray(c.batch * c.inC * source.H * source.W, seed));
  const w = uploadBuffer(
    backend,
    randomArray(c.outC * c.inC * 9, seed + 1).map((v) => v * spread),
  );
  const bias = uploadBuffer(
    backend,
    randomArray(c.outC, seed + 2).map((v) => v + (c.offset ?? 0)),
  );
  const y = backend.pool.acquire(c.batch * c.outC * c.H * c.W * 4);
  const launch = c.kind === "subpixel" ? ops.upsampleConv2dForward : ops.conv2dForward;
  const statistics = launch(backend, x, w, bias, y, g, { variant: "ubo", statistics: true });
  assert.ok(statistics, `${c.name}: the conv formed no statistics`);
  const release = () => {
    for (const buffer of [x, w, bias, y, statistics.buffer]) backend.pool.release(buffer);
  };
  return { y, statistics, release };
}

for (const walk of ["cpu", "gpu"] as const) {
  for (const c of CASES) {
    Deno.test(`conv-formed batch-norm statistics (${walk} walk): ${c.name}`, async () => {
      ops.setReductionChunking(walk);
      try {
        const { y, statistics, release } = convWithStatistics(c, 11);
        const spatial = c.H * c.W;
        const yData = await downloadBuffer(backend, y, c.batch * c.outC * spatial);
        const want = channelMoments(yData, c.batch, c.outC, spatial);
        const eps = 1e-5;
        const momentum = 0.25;
        const runningMean = uploadBuffer(backend, randomArray(c.outC, 3));
        const runningVar = uploadBuffer(backend, randomArray(c.outC, 4, 0.5, 2));
        const mean = backend.pool.acquire(c.outC * 4);
        const invStd = backend.pool.acquire(c.outC * 4);
        const out = backend.pool.acquire(yData.length * 4);
        ops.batchNormForwardTraining(
          backend,
          y,
          mean,
          invStd,
          { mean: runningMean, var: runningVar },
          null,
          out,
          c.batch,
          c.outC,
          spatial,
          eps,
          momentum,
          { statistics },
        );
        const count = c.batch * spatial;
        const oldMean = randomArray(c.outC, 3);
        const oldVar = randomArray(c.outC, 4, 0.5, 2);
        const scale = Math.max(1, c.offset ?? 0);
        assertClose(await downloadBuffer(backend, mean, c.outC), want.mean, "mean", {
          atol: 1e-6 * scale,
          rtol: 1e-5,
        });
        assertClose(
          await downloadBuffer(backend, invStd, c.outC),
          Array.from(want.variance, (v) => 1 / Math.sqrt(v + eps)),
          "invStd",
          { atol: 0, rtol: 2e-4 },
        );
        assertClose(
          await downloadBuffer(backend, runningVar, c.outC),
          Array.from(
            want.variance,
            (v, i) => (1 - momentum) * oldVar[i] + momentum * v * count / (count - 1),
          ),
          "running variance",
          { atol: 1e-7, rtol: 2e-4 },
        );
        assertClose(
          await downloadBuffer(backend, runningMean, c.outC),
          Array.from(want.mean, (m, i) => (1 - momentum) * oldMean[i] + momentum * m),
          "running mean",
          { atol: 1e-6 * scale, rtol: 1e-5 },
        );
        const normalized = await downloadBuffer(backend, out, yData.length);
        const expected = yData.map((v, i) => {
          const ch = Math.floor(i / spatial) % c.outC;
          return (v - want.mean[ch]) / Math.sqrt(want.variance[ch] + eps);
        });
        // x * scale + shift (the normalize's form) rounds at |mean| * invStd's scale.
        const reach = Math.max(
          ...want.mean.map((m, i) => Math.abs(m) / Math.sqrt(want.variance[i])),
        );
        assertClose(normalized, expected, "normalized map", {
          atol: 2e-3 + 3e-7 * reach,
          rtol: 2e-3,
        });
        for (const buffer of [runningMean, runningVar, mean, invStd, out]) {
          backend.pool.release(buffer);
        }
        release();
      } finally {
        ops.setReductionChunking(null);
      }
    });
  }

  Deno.test(`conv-formed statistics feed the pooled batch norm (${walk} walk)`, async () => {
    ops.setReductionChunking(walk);
    try {
      const c: Case = { name: "pooled", kind: "ubo", batch: 3, inC: 4, outC: 6, H: 10, W: 16 };
      const { y, statistics, release } = convWithStatistics(c, 21);
      const spatial = c.H * c.W;
      const yData = await downloadBuffer(backend, y, c.batch * c.outC * spatial);
      const want = channelMoments(yData, c.batch, c.outC, spatial);
      const mean = backend.pool.acquire(c.outC * 4);
      const invStd = backend.pool.acquire(c.outC * 4);
      const pooled = backend.pool.acquire(yData.length);
      ops.batchNormReluMaxPoolForwardTraining(
        backend,
        y,
        mean,
        invStd,
        null,
        null,
        pooled,
        c.batch,
        c.outC,
        c.H,
        c.W,
        1e-5,
        0.1,
        { statistics },
      );
      assertClose(await downloadBuffer(backend, mean, c.outC), want.mean, "mean", {
        atol: 1e-6,
        rtol: 1e-5,
      });
      assertClose(
        await downloadBuffer(backend, invStd, c.outC),
        Array.from(want.variance, (v) => 1 / Math.sqrt(v + 1e-5)),
        "invStd",
        { atol: 0, rtol: 2e-4 },
      );
      for (const buffer of [mean, invStd, pooled]) backend.pool.release(buffer);
      release();
    } finally {
      ops.setReductionChunking(null);
    }
  });
}

// Through nn: a conv whose output feeds a training batch norm hands it the statistics it formed;
// the result matches the same conv and batch norm without them (the batch norm's own passes).
Deno.test("F.conv2d into F.batchNorm2d: the conv's statistics match the batch norm's own", async () => {
  const x = device.tensor(randomArray(3 * 5 * 10 * 12, 31), [3, 5, 10, 12]);
  const w = device.tensor(randomArray(7 * 5 * 9, 32), [7, 5, 3, 3]);
  const b = device.tensor(randomArray(7, 33), [7]);
  const run = async (outputFeedsBatchNorm: boolean) => {
    const runningMean = device.zeros([7]);
    const runningVar = device.ones([7]);
    const y = tidy(() => {
      const conv = F.conv2d(x, w, b, { padding: 1, outputFeedsBatchNorm });
      if (ops.conv2dVariant(backend, "forward", { ...convGeometry(3, 5, 7, 10, 12) }) === "ubo") {
        // The conv formed statistics exactly when it was told it feeds a batch norm.
        const attached = conv.storage.takeStatistics();
        assert.equal(attached !== null, outputFeedsBatchNorm);
        if (attached) conv.storage.attachStatistics(attached);
      }
      return F.batchNorm2d(conv, runningMean, runningVar, null, null, { training: true });
    });
    const out = {
      y: await y.toArray(),
      running: [...await runningMean.toArray(), ...await runningVar.toArray()],
    };
    for (const t of [y, runningMean, runningVar]) t.dispose();
    return out;
  };
  const formed = await run(true);
  const own = await run(false);
  assertClose(formed.y, own.y, "normalized map", { atol: 1e-5, rtol: 1e-5 });
  assertClose(formed.running, own.running, "running statistics", { atol: 1e-6, rtol: 1e-6 });
  for (const t of [x, w, b]) t.dispose();
});

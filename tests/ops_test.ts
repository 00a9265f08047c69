/**
 * Every functional op against its float64 reference: the GPU forward on random inputs with odd
 * shapes (sizes and channel counts that are not multiples of 4 or of any tile), and the GPU
 * backward against central finite differences of the reference forward.
 */

import assert from "node:assert/strict";
import { F, type Tensor } from "../mod.ts";
import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import { assertClose, numericGradient, probed, randomArray, testDevice } from "./helpers.ts";

const device = await testDevice();

interface OpInput {
  shape: number[];
  grad?: boolean;
  low?: number;
  high?: number;
}

/**
 * Run `gpu` on random inputs, compare its output with `reference`, then backpropagate a random
 * upstream gradient and compare every input gradient with finite differences of `reference`.
 */
async function checkOp(
  name: string,
  inputs: OpInput[],
  gpu: (t: Tensor[]) => Tensor,
  reference: (x: Float64Array[]) => ArrayLike<number>,
  tolerance: { atol?: number; rtol?: number } = {},
  seed = 1,
): Promise<void> {
  const data = inputs.map((input, i) =>
    randomArray(input.shape.reduce((a, b) => a * b, 1), seed * 31 + i, input.low, input.high)
  );
  const tensors = inputs.map((input, i) =>
    device.tensor(data[i], input.shape, { requiresGrad: input.grad ?? true })
  );
  const y = gpu(tensors);
  const expected = reference(data.map((d) => Float64Array.from(d)));
  assertClose(await y.toArray(), expected, `${name} forward`, tolerance);
  const upstream = randomArray(y.size, seed * 97 + 5);
  await y.backward(device.tensor(upstream, y.shape));
  for (let i = 0; i < inputs.length; i++) {
    if (!(inputs[i].grad ?? true)) continue;
    const numeric = numericGradient(reference, data, i, upstream);
    const grad = tensors[i].grad;
    if (!grad) throw new Error(`${name}: input ${i} got no gradient`);
    const [actual, expected] = probed(await grad.toArray(), numeric);
    assertClose(actual, expected, `${name} backward (input ${i})`, {
      atol: 3e-4,
      rtol: 1e-3,
      ...tolerance,
    });
  }
  y.dispose();
  for (const t of tensors) t.dispose();
}

const convCases = [
  { name: "3x3 s1 p1", x: [2, 3, 7, 9], w: [5, 3, 3, 3], stride: 1, pad: 1 },
  { name: "3x3 s2 p1", x: [2, 5, 9, 7], w: [6, 5, 3, 3], stride: 2, pad: 1 },
  { name: "7x7 s2 p3", x: [2, 3, 11, 13], w: [5, 3, 7, 7], stride: 2, pad: 3 },
  { name: "1x1 s2 p0", x: [3, 6, 9, 7], w: [5, 6, 1, 1], stride: 2, pad: 0 },
  { name: "3x3 s1 p0 wide", x: [1, 2, 5, 19], w: [9, 2, 3, 3], stride: 1, pad: 0 },
];

for (const c of convCases) {
  for (const withBias of [true, false]) {
    Deno.test(`conv2d ${c.name}${withBias ? " + bias" : ""}`, async () => {
      const inputs: OpInput[] = [{ shape: c.x }, { shape: c.w }];
      if (withBias) inputs.push({ shape: [c.w[0]] });
      await checkOp(
        `conv2d ${c.name}`,
        inputs,
        ([x, w, b]) => F.conv2d(x, w, b ?? null, { stride: c.stride, padding: c.pad }),
        ([x, w, b]) => ref.conv2d(x, c.x, w, c.w, b ?? null, c.stride, c.pad).out,
      );
    });
  }
}

// A conv with its activation as one op (the ubo variant applies it in its stores): values and
// gradients against activation(conv) in float64.
for (const activation of ["sigmoid", "relu"] as const) {
  Deno.test(`conv2d + ${activation} as one op, 3x3 s1 p1 + bias`, async () => {
    const xShape = [2, 3, 6, 8];
    const wShape = [5, 3, 3, 3];
    const f = activation === "relu"
      ? (v: number) => Math.max(v, 0)
      : (v: number) => 1 / (1 + Math.exp(-v));
    await checkOp(
      `conv2d + ${activation}`,
      [{ shape: xShape }, { shape: wShape }, { shape: [5] }],
      ([x, w, b]) => F.conv2d(x, w, b, { padding: 1, activation }),
      ([x, w, b]) => Float64Array.from(ref.conv2d(x, xShape, w, wShape, b, 1, 1).out, f),
    );
  });
}

Deno.test("conv2d: an activation with outputFeedsBatchNorm is refused", () => {
  const x = device.zeros([1, 2, 4, 4]);
  const w = device.zeros([3, 2, 3, 3]);
  assert.throws(
    () => F.conv2d(x, w, null, { padding: 1, activation: "relu", outputFeedsBatchNorm: true }),
    /activation and outputFeedsBatchNorm exclude each other/,
  );
  x.dispose();
  w.dispose();
});

Deno.test("conv2d weight gradient split over a larger batch", async () => {
  // A batch large enough for the weight-gradient kernel to split it and sum the partials.
  const xShape = [37, 3, 6, 5];
  const wShape = [3, 3, 3, 3];
  await checkOp(
    "conv2d split",
    [{ shape: xShape, grad: false }, { shape: wShape }],
    ([x, w]) => F.conv2d(x, w, null, { padding: 1 }),
    ([x, w]) => ref.conv2d(x, xShape, w, wShape, null, 1, 1).out,
  );
});

// upsampleConv2d = conv2d(2x nearest upsample(x)): fused kernels on llvmpipe where the upsampled
// width is a multiple of 8 (source 3x4 -> 6x8, 2 channels past a J 4 block), the two ops in turn
// otherwise (source width 3 -> 6) and for other convs (stride 2).
const upsampleConvCases = [
  { name: "3x3 fused", x: [2, 3, 3, 4], w: [5, 3, 3, 3], stride: 1, pad: 1 },
  { name: "3x3 fused 10 in", x: [1, 10, 2, 8], w: [3, 10, 3, 3], stride: 1, pad: 1 },
  { name: "3x3 unfused width", x: [2, 3, 3, 3], w: [4, 3, 3, 3], stride: 1, pad: 1 },
  { name: "3x3 s2", x: [2, 3, 3, 4], w: [4, 3, 3, 3], stride: 2, pad: 1 },
];

for (const c of upsampleConvCases) {
  Deno.test(`upsampleConv2d ${c.name}`, async () => {
    const [n, ch, h, w] = c.x;
    await checkOp(
      `upsampleConv2d ${c.name}`,
      [{ shape: c.x }, { shape: c.w }, { shape: [c.w[0]] }],
      ([x, wt, b]) => F.upsampleConv2d(x, wt, b, { stride: c.stride, padding: c.pad }),
      ([x, wt, b]) => {
        const up = ref.resize(x, c.x, 2 * h, 2 * w, 0.5, 0.5, "nearest");
        return ref.conv2d(up, [n, ch, 2 * h, 2 * w], wt, c.w, b, c.stride, c.pad).out;
      },
    );
  });
}

/**
 * The running statistics m, v after one batch-norm call on `input` (momentum 0.1, eps 1e-5) against
 * the reference, then disposed.
 */
async function assertRunningStatistics(
  m: Tensor,
  v: Tensor,
  input: Float32Array,
  shape: number[],
  training: boolean,
  runningMean: Float32Array,
  runningVar: Float32Array,
): Promise<void> {
  const expected = ref.batchNorm(
    input,
    shape,
    null,
    null,
    training,
    runningMean,
    runningVar,
    0.1,
    1e-5,
  );
  assertClose(await m.toArray(), expected.newRunningMean, "running mean");
  assertClose(await v.toArray(), expected.newRunningVar, "running var");
  m.dispose();
  v.dispose();
}

for (const training of [true, false]) {
  for (const shape of [[3, 5, 7, 9], [4, 3, 1, 1], [6, 7]]) {
    Deno.test(`batchNorm2d ${training ? "training" : "eval"} [${shape}]`, async () => {
      const c = shape[1];
      const runningMean = randomArray(c, 7, -0.5, 0.5);
      const runningVar = randomArray(c, 8, 0.5, 1.5);
      const m = device.tensor(runningMean, [c]);
      const v = device.tensor(runningVar, [c]);
      let input: Float32Array | null = null;
      await checkOp(
        "batchNorm2d",
        [{ shape, low: -2, high: 3 }, { shape: [c], low: 0.5, high: 1.5 }, { shape: [c] }],
        ([x, w, b]) => {
          x.toArray().then((data) => input = data);
          return F.batchNorm2d(x, m, v, w, b, { training, momentum: 0.1, eps: 1e-5 });
        },
        ([x, w, b]) =>
          ref.batchNorm(x, shape, w, b, training, runningMean, runningVar, 0.1, 1e-5).out,
        { atol: 5e-4, rtol: 2e-3 },
      );
      // Running statistics: updated once, with the unbiased variance, only in training.
      await assertRunningStatistics(m, v, input!, shape, training, runningMean, runningVar);
    });
  }
}

for (const training of [true, false]) {
  for (const shape of [[3, 5, 7, 9], [2, 3, 4, 6], [6, 7]]) {
    Deno.test(`batchNorm2d + fused relu ${training ? "training" : "eval"} [${shape}]`, async () => {
      const c = shape[1];
      const runningMean = randomArray(c, 17, -0.5, 0.5);
      const runningVar = randomArray(c, 18, 0.5, 1.5);
      const m = device.tensor(runningMean, [c]);
      const v = device.tensor(runningVar, [c]);
      await checkOp(
        "batchNorm2d relu",
        [{ shape, low: -2, high: 3 }, { shape: [c], low: 0.5, high: 1.5 }, { shape: [c] }],
        ([x, w, b]) => F.batchNorm2d(x, m, v, w, b, { training, relu: true }),
        ([x, w, b]) =>
          ref.activation(
            "relu",
            ref.batchNorm(x, shape, w, b, training, runningMean, runningVar, 0.1, 1e-5).out,
          ),
        { atol: 5e-4, rtol: 2e-3 },
      );
      m.dispose();
      v.dispose();
    });
  }
}

// A ResNet block's tail, relu(batchNorm2d(x) + residual), one op: fused in training (vec4 and
// scalar maps, rank 2, the GPU chunking forced), batchNorm2d then addRelu in eval mode; gradients
// of x, the affine parameters and the residual by finite differences.
for (
  const [training, shape, chunking] of [
    [true, [3, 5, 7, 9], null],
    [true, [2, 3, 4, 6], null],
    [true, [6, 7], null],
    [true, [3, 5, 7, 9], "gpu"],
    [false, [3, 5, 7, 9], null],
  ] as const
) {
  const label = `${training ? "training" : "eval"} [${shape}]${chunking ? " gpu chunking" : ""}`;
  Deno.test(`batchNormAddRelu ${label}`, async () => {
    const c = shape[1];
    assert.equal(ops.batchNormResidualApplicable(device.backend, c), true);
    const runningMean = randomArray(c, 37, -0.5, 0.5);
    const runningVar = randomArray(c, 38, 0.5, 1.5);
    const m = device.tensor(runningMean, [c]);
    const v = device.tensor(runningVar, [c]);
    ops.setReductionChunking(chunking);
    try {
      await checkOp(
        "batchNormAddRelu",
        [{ shape: [...shape], low: -2, high: 3 }, { shape: [c], low: 0.5, high: 1.5 }, {
          shape: [c],
        }, { shape: [...shape] }],
        ([x, w, b, r]) => F.batchNormAddRelu(x, r, m, v, w, b, { training }),
        ([x, w, b, r]) => {
          const normalized =
            ref.batchNorm(x, [...shape], w, b, training, runningMean, runningVar, 0.1, 1e-5).out;
          return ref.activation("relu", normalized.map((value, e) => value + r[e]));
        },
        { atol: 5e-4, rtol: 2e-3 },
      );
    } finally {
      ops.setReductionChunking(null);
    }
    m.dispose();
    v.dispose();
  });
}

// The fused backward when only some inputs want gradients: x alone, or the residual alone.
for (const wanted of ["x", "residual"] as const) {
  Deno.test(`batchNormAddRelu training, gradient of ${wanted} only`, async () => {
    const shape = [2, 3, 4, 6];
    await checkOp(
      "batchNormAddRelu partial gradients",
      [{ shape, low: -2, high: 3, grad: wanted === "x" }, {
        shape,
        grad: wanted === "residual",
      }],
      ([x, r]) => F.batchNormAddRelu(x, r, null, null, null, null, { training: true }),
      ([x, r]) => {
        const normalized =
          ref.batchNorm(x, shape, null, null, true, [0, 0, 0], [1, 1, 1], 0.1, 1e-5)
            .out;
        return ref.activation("relu", normalized.map((value, e) => value + r[e]));
      },
      { atol: 5e-4, rtol: 2e-3 },
    );
  });
}

// The encoder block's tail as one op: fused on even heights with width % 4 == 0 (one chunk per
// channel, and several: [4, 3, 16, 32]), the three ops on other shapes and in eval mode.
for (
  const [training, shape] of [
    [true, [3, 5, 6, 12]],
    [true, [2, 3, 4, 4]],
    [true, [4, 3, 16, 32]],
    [true, [2, 3, 5, 8]],
    [true, [2, 3, 6, 6]],
    [false, [3, 5, 6, 12]],
  ] as const
) {
  const [n, c, h, w] = shape;
  const fused = training && ops.batchNormReluMaxPoolApplicable(device.backend, c, h, w);
  Deno.test(
    `batchNormReluMaxPool2d ${training ? "training" : "eval"} [${shape}]${fused ? " fused" : ""}`,
    async () => {
      assert.equal(fused, training && h % 2 === 0 && w % 4 === 0);
      const runningMean = randomArray(c, 27, -0.5, 0.5);
      const runningVar = randomArray(c, 28, 0.5, 1.5);
      const m = device.tensor(runningMean, [c]);
      const v = device.tensor(runningVar, [c]);
      let input: Float32Array | null = null;
      await checkOp(
        "batchNormReluMaxPool2d",
        [{ shape: [...shape], low: -2, high: 3 }, { shape: [c], low: -1.5, high: 1.5 }, {
          shape: [c],
        }],
        ([x, wt, b]) => {
          x.toArray().then((data) => input = data);
          return F.batchNormReluMaxPool2d(x, m, v, wt, b, { training });
        },
        ([x, wt, b]) => {
          const normalized = ref.batchNorm(
            x,
            [...shape],
            wt,
            b,
            training,
            runningMean,
            runningVar,
            0.1,
            1e-5,
          ).out;
          return ref.maxPool2d(ref.activation("relu", normalized), [n, c, h, w], 2, 2, 0).out;
        },
        { atol: 5e-4, rtol: 2e-3 },
      );
      await assertRunningStatistics(m, v, input!, [...shape], training, runningMean, runningVar);
    },
  );
}

Deno.test("batchNormReluMaxPool2d without affine parameters, fused", async () => {
  const shape = [3, 2, 8, 8];
  assert.ok(ops.batchNormReluMaxPoolApplicable(device.backend, 2, 8, 8));
  await checkOp(
    "batchNormReluMaxPool2d no affine",
    [{ shape, low: -2, high: 3 }],
    ([x]) => F.batchNormReluMaxPool2d(x, null, null, null, null, { training: true }),
    ([x]) => {
      const normalized = ref.batchNorm(x, shape, null, null, true, [0, 0], [1, 1], 0.1, 1e-5).out;
      return ref.maxPool2d(ref.activation("relu", normalized), shape, 2, 2, 0).out;
    },
    { atol: 5e-4, rtol: 2e-3 },
  );
});

// The GPU chunking of the statistics (many short chunks: 72 of 8 items per channel here against
// 18 of 32 on CPU rasterizers), forced on this adapter, through the pooled passes and their
// backward.
Deno.test("batchNormReluMaxPool2d, fused, GPU chunking", async () => {
  const shape = [9, 3, 16, 32];
  ops.setReductionChunking("gpu");
  try {
    await checkOp(
      "batchNormReluMaxPool2d gpu chunking",
      [{ shape, low: -2, high: 3 }, { shape: [3], low: -1.5, high: 1.5 }, { shape: [3] }],
      ([x, wt, b]) => F.batchNormReluMaxPool2d(x, null, null, wt, b, { training: true }),
      ([x, wt, b]) => {
        const normalized = ref.batchNorm(x, shape, wt, b, true, [0, 0, 0], [1, 1, 1], 0.1, 1e-5)
          .out;
        return ref.maxPool2d(ref.activation("relu", normalized), shape, 2, 2, 0).out;
      },
      { atol: 5e-4, rtol: 2e-3 },
    );
  } finally {
    ops.setReductionChunking(null);
  }
});

Deno.test("batchNorm2d without affine parameters", async () => {
  const shape = [2, 3, 5, 5];
  await checkOp(
    "batchNorm2d no affine",
    [{ shape }],
    ([x]) => F.batchNorm2d(x, null, null, null, null, { training: true }),
    ([x]) => ref.batchNorm(x, shape, null, null, true, [0, 0, 0], [1, 1, 1], 0.1, 1e-5).out,
    { atol: 5e-4, rtol: 2e-3 },
  );
});

for (
  const [k, stride, pad, shape] of [
    [2, 2, 0, [2, 3, 9, 7]],
    [3, 2, 1, [2, 5, 11, 9]],
    [3, 1, 1, [1, 3, 5, 6]],
  ] as const
) {
  Deno.test(`maxPool2d k${k} s${stride} p${pad} [${shape}]`, async () => {
    await checkOp(
      "maxPool2d",
      [{ shape: [...shape] }],
      ([x]) => F.maxPool2d(x, { kernelSize: k, stride, padding: pad }),
      ([x]) => ref.maxPool2d(x, shape, k, stride, pad).out,
    );
  });
}

for (const mode of ["nearest", "bilinear"] as const) {
  for (
    const c of [
      { name: "x2", shape: [2, 3, 5, 7], factor: 2 },
      { name: "x3", shape: [1, 2, 4, 3], factor: 3 },
      { name: "to 11x13", shape: [2, 3, 5, 7], size: [11, 13] as [number, number] },
      { name: "down to 3x5", shape: [1, 3, 7, 11], size: [3, 5] as [number, number] },
      {
        name: "64 -> 224 bilinear-style",
        shape: [1, 1, 16, 16],
        size: [56, 56] as [number, number],
      },
    ]
  ) {
    Deno.test(`interpolate ${mode} ${c.name}`, async () => {
      const [, , h, w] = c.shape;
      const outH = c.size ? c.size[0] : Math.floor(h * c.factor!);
      const outW = c.size ? c.size[1] : Math.floor(w * c.factor!);
      const scaleH = c.size ? h / outH : 1 / c.factor!;
      const scaleW = c.size ? w / outW : 1 / c.factor!;
      await checkOp(
        `interpolate ${mode} ${c.name}`,
        [{ shape: c.shape }],
        ([x]) =>
          c.size
            ? F.interpolate(x, { size: c.size, mode })
            : F.upsample(x, { scaleFactor: c.factor!, mode }),
        ([x]) => ref.resize(x, c.shape, outH, outW, scaleH, scaleW, mode),
      );
    });
  }
}

for (
  const c of [
    { name: "3 ch, shifts within 1.5", shape: [2, 3, 5, 7], maxShift: 1.5, range: 1.4 },
    {
      name: "5 ch, shifts past the clamp and the border",
      shape: [1, 5, 9, 6],
      maxShift: 3,
      range: 4,
    },
    { name: "1 ch, sub-pixel", shape: [3, 1, 4, 11], maxShift: 0.75, range: 0.7 },
  ]
) {
  Deno.test(`warp ${c.name}`, async () => {
    const [n, , h, w] = c.shape;
    await checkOp(
      `warp ${c.name}`,
      [{ shape: c.shape }, { shape: [n, 2, h, w], low: -c.range, high: c.range }],
      ([image, flow]) => F.warp(image, flow, c.maxShift),
      ([image, flow]) => ref.warp(image, flow, c.shape, c.maxShift),
    );
  });
}

Deno.test("warp: zero flow is the identity, a whole-pixel flow a shift", async () => {
  const shape = [1, 2, 3, 5];
  const data = randomArray(30, 4);
  const image = device.tensor(data, shape);
  const zero = device.tensor(new Float32Array(30), [1, 2, 3, 5]);
  assertClose(await F.warp(image, zero, 2).toArray(), data, "identity", { atol: 0 });
  // Every pixel reads one to its right (x + 1); the last column reads the border.
  const right = device.tensor(new Float32Array(30).fill(1, 0, 15), [1, 2, 3, 5]);
  const shifted = await F.warp(image, right, 2).toArray();
  for (let p = 0; p < 2; p++) {
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 5; x++) {
        const at = (p * 3 + y) * 5 + x;
        assertClose([shifted[at]], [data[(p * 3 + y) * 5 + Math.min(x + 1, 4)]], "shift", {
          atol: 0,
        });
      }
    }
  }
});

Deno.test("warp: bad flow shapes and shifts are refused", () => {
  const image = device.tensor(new Float32Array(24), [1, 2, 3, 4]);
  const flow = device.tensor(new Float32Array(24), [1, 2, 3, 4]);
  const wrong = device.tensor(new Float32Array(36), [1, 3, 3, 4]);
  assert.throws(() => F.warp(image, wrong, 1), /flow must be \[1, 2, 3, 4\]/);
  assert.throws(() => F.warp(image, flow, -1), /maxShift -1/);
  assert.throws(() => F.warp(image, flow, NaN), /maxShift NaN/);
});

for (const op of ["relu", "sigmoid", "tanh"] as const) {
  for (const shape of [[3, 5, 7], [8]]) {
    Deno.test(`${op} [${shape}]`, async () => {
      await checkOp(
        op,
        [{ shape, low: -3, high: 3 }],
        ([x]) => F[op](x),
        ([x]) => ref.activation(op, x),
      );
    });
  }
}

Deno.test("linear with bias, batched leading dims", async () => {
  await checkOp(
    "linear",
    [{ shape: [2, 3, 7] }, { shape: [5, 7] }, { shape: [5] }],
    ([x, w, b]) => F.linear(x, w, b),
    ([x, w, b]) => ref.linear(x, 6, 7, w, 5, b),
  );
});

Deno.test("linear with bias, many rows (the bias gradient summed by workgroups)", async () => {
  await checkOp(
    "linear",
    [{ shape: [1100, 3] }, { shape: [2, 3] }, { shape: [2] }],
    ([x, w, b]) => F.linear(x, w, b),
    ([x, w, b]) => ref.linear(x, 1100, 3, w, 2, b),
  );
});

// Few outputs over a long K: the matmul splits K (11 splits of 273 here, the bias in the first)
// and adds the splits up; the backward's products are short.
Deno.test("linear over a long K (split K), with bias", async () => {
  await checkOp(
    "linear",
    [{ shape: [5, 3000] }, { shape: [3, 3000] }, { shape: [3] }],
    ([x, w, b]) => F.linear(x, w, b),
    ([x, w, b]) => ref.linear(x, 5, 3000, w, 3, b),
    { atol: 1e-3, rtol: 1e-3 },
  );
});

Deno.test("linear without bias, odd sizes", async () => {
  await checkOp(
    "linear",
    [{ shape: [9, 34] }, { shape: [11, 34] }],
    ([x, w]) => F.linear(x, w),
    ([x, w]) => ref.linear(x, 9, 34, w, 11, null),
  );
});

Deno.test("adaptiveAvgPool2d to 1x1", async () => {
  await checkOp(
    "adaptiveAvgPool2d",
    [{ shape: [3, 5, 7, 3] }],
    ([x]) => F.adaptiveAvgPool2d(x, 1),
    ([x]) => ref.adaptiveAvgPool1(x, 15, 21),
  );
});

for (const op of ["add", "sub", "mul"] as const) {
  Deno.test(`${op} tensors and scalars`, async () => {
    const f = {
      add: (a: number, b: number) => a + b,
      sub: (a: number, b: number) => a - b,
      mul: (a: number, b: number) => a * b,
    }[op];
    await checkOp(
      op,
      [{ shape: [3, 7] }, { shape: [3, 7] }],
      ([a, b]) => F[op](a, b),
      ([a, b]) => Float64Array.from(a, (v, i) => f(v, b[i])),
    );
    await checkOp(
      `${op} scalar`,
      [{ shape: [5, 3] }],
      ([a]) => F[op](a, 0.75),
      ([a]) => Float64Array.from(a, (v) => f(v, 0.75)),
    );
  });
}

for (const shape of [[3, 7], [2, 3, 4, 6]]) {
  Deno.test(`addRelu (fused residual add + relu) [${shape}]`, async () => {
    await checkOp(
      "addRelu",
      [{ shape }, { shape }],
      ([a, b]) => F.addRelu(a, b),
      ([a, b]) => Float64Array.from(a, (v, i) => Math.max(v + b[i], 0)),
    );
    // Only one input requires grad.
    await checkOp(
      "addRelu one grad",
      [{ shape, grad: false }, { shape }],
      ([a, b]) => F.addRelu(a, b),
      ([a, b]) => Float64Array.from(a, (v, i) => Math.max(v + b[i], 0)),
      {},
      2,
    );
  });
}

// 8 and 4100: the backward spreads the gradient in vec4s (the broadcast expand).
for (const n of [1, 7, 8, 4099, 4100, 70001]) {
  Deno.test(`sum and mean of ${n} elements`, async () => {
    const tolerance = { atol: 1e-3, rtol: 1e-4 };
    await checkOp(
      "sum",
      [{ shape: [n] }],
      ([x]) => F.sum(x),
      ([x]) => [x.reduce((a, b) => a + b, 0)],
      tolerance,
    );
    await checkOp(
      "mean",
      [{ shape: [n] }],
      ([x]) => F.mean(x),
      ([x]) => [x.reduce((a, b) => a + b, 0) / n],
      tolerance,
    );
  });
}

// The error of a sigmoid's output: the backward goes through the sigmoid in the same pass (the
// loss's node takes the sigmoid's input); with the output also used elsewhere, the sigmoid's own
// backward adds that use's gradient. Weighted and not, scalar and vec4.
for (const [shape, weighted] of [[[3, 5, 7], false], [[2, 3, 4, 6], true]] as const) {
  Deno.test(`mseLoss of a sigmoid [${shape}]${weighted ? " weighted" : ""}`, async () => {
    const target = device.rand([...shape], 81);
    const weights = weighted ? device.rand([...shape], 82, 0, 2) : undefined;
    const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
    const [t, w] = [await target.toArray(), await weights?.toArray()];
    await checkOp(
      "mseLoss of a sigmoid",
      [{ shape: [...shape], low: -3, high: 3 }],
      ([x]) => {
        const loss = F.mseLoss(F.sigmoid(x), target, weights);
        assert.equal(loss.node?.name, "mseLoss+sigmoid");
        return loss;
      },
      ([x]) => [ref.mse(Float64Array.from(x, sigmoid), t, w)],
      { atol: 1e-7, rtol: 1e-3 },
    );
    await checkOp(
      "mseLoss of a sigmoid used twice",
      [{ shape: [...shape], low: -3, high: 3 }],
      ([x]) => {
        const y = F.sigmoid(x);
        return F.add(F.mseLoss(y, target, weights), F.mul(F.sum(y), 0.01));
      },
      ([x]) => {
        const y = Float64Array.from(x, sigmoid);
        return [ref.mse(y, t, w) + 0.01 * y.reduce((a, b) => a + b, 0)];
      },
      { atol: 1e-6, rtol: 1e-3 },
    );
    target.dispose();
    weights?.dispose();
  });
}

// Full sums in stages as on GPUs (workgroups of 4096 elements first; on CPU rasterizers serial
// runs), forced on this adapter: scalar and vec4, a short last chunk.
Deno.test("sum and squared error of 70001 and 70000 elements, GPU stages", async () => {
  ops.setReductionChunking("gpu");
  try {
    for (const n of [70001, 70000]) {
      await checkOp(
        "sum gpu stages",
        [{ shape: [n] }],
        ([x]) => F.sum(x),
        ([x]) => [x.reduce((a, b) => a + b, 0)],
        { atol: 1e-3, rtol: 1e-4 },
      );
      await checkOp(
        "mseLoss gpu stages",
        [{ shape: [n] }, { shape: [n] }],
        ([a, b]) => F.mseLoss(a, b),
        ([a, b]) => [ref.mse(a, b)],
        { atol: 1e-7, rtol: 1e-3 },
      );
    }
  } finally {
    ops.setReductionChunking(null);
  }
});

// 105 elements: the scalar backward; 144: the vec4 one; 10578 and 10320: a reduction in stages
// (on CPU rasterizers serial runs first: kernels/reductions.ts sumAll), scalar and vec4.
for (const shape of [[3, 5, 7], [2, 3, 4, 6], [2, 3, 41, 43], [2, 3, 40, 43]]) {
  Deno.test(`mseLoss [${shape}] against both arguments`, async () => {
    await checkOp(
      "mseLoss",
      [{ shape }, { shape }],
      ([a, b]) => F.mseLoss(a, b),
      ([a, b]) => [ref.mse(a, b)],
      // The gradients are ~2 / size: an absolute tolerance would pass anything on the large ones.
      { atol: 1e-7, rtol: 1e-3 },
    );
  });
}

// Small (one workgroup) and large (chunked: scalar, and vec4 when the size allows) weighted
// errors; the weights are constants.
for (const shape of [[3, 5, 7], [2, 3, 41, 43], [2, 3, 40, 43]]) {
  Deno.test(`weighted mseLoss [${shape}] against both arguments`, async () => {
    await checkOp(
      "weighted mseLoss",
      [{ shape }, { shape }, { shape, grad: false, low: 0, high: 4 }],
      ([a, b, w]) => F.mseLoss(a, b, w),
      ([a, b, w]) => [ref.mse(a, b, w)],
      // The gradients are ~2 / size: an absolute tolerance would pass anything on the large ones.
      { atol: 1e-7, rtol: 1e-3 },
    );
  });
}

Deno.test("weighted mseLoss refuses weights of another shape or that need a gradient", () => {
  const a = device.rand([2, 3], 1);
  const w = device.tensor(new Float32Array(6), [2, 3], { requiresGrad: true });
  assert.throws(() => F.mseLoss(a, a, device.rand([3, 2], 2)), /mseLoss/);
  assert.throws(() => F.mseLoss(a, a, w), /weights take no gradient/);
});

Deno.test("reshape and flatten keep data and route gradients", async () => {
  await checkOp(
    "reshape",
    [{ shape: [2, 3, 5] }],
    ([x]) => F.mul(F.reshape(x, [5, -1]), 2),
    ([x]) => Float64Array.from(x, (v) => 2 * v),
  );
  await checkOp(
    "flatten",
    [{ shape: [2, 3, 5, 1] }],
    ([x]) => F.mul(F.flatten(x, 1), 3),
    ([x]) => Float64Array.from(x, (v) => 3 * v),
  );
});

for (const dim of [0, 1, 3]) {
  Deno.test(`cat and narrow along dim ${dim}`, async () => {
    const shapes = [[2, 3, 5, 3], [2, 3, 5, 3], [2, 3, 5, 3]].map((s) => {
      const copy = [...s];
      copy[dim] += 1 + copy.length % 2;
      return copy;
    });
    shapes[1][dim] = 1;
    await checkOp(
      "cat",
      shapes.map((shape) => ({ shape })),
      (ts) => F.cat(ts, dim),
      (xs) => ref.cat(xs.map((data, i) => ({ data, shape: shapes[i] })), dim),
    );
    const shape = shapes[0];
    await checkOp(
      "narrow",
      [{ shape }],
      ([x]) => F.narrow(x, dim, 1, shape[dim] - 2),
      ([x]) => ref.narrow(x, shape, dim, 1, shape[dim] - 2),
    );
  });
}

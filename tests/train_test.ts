/**
 * A small composite network (conv-bn-relu-pool-upsample with a residual add) end to end:
 * gradients against float64 finite differences of the same composite, Adam against torch's
 * update rule, loss going down, identical numbers with one submit per step or per op, and GPU
 * memory flat over 50 steps.
 */

import assert from "node:assert/strict";
import { type Device, F, optim, type Tensor, tidy } from "../mod.ts";
import * as ref from "./reference.ts";
import { assertClose, numericGradient, probed, randomArray, testDevice } from "./helpers.ts";

const device = await testDevice();

const X_SHAPE = [3, 3, 10, 10];
const W1_SHAPE = [5, 3, 3, 3];
const W2_SHAPE = [2, 5, 3, 3];
const Y_SHAPE = [3, 2, 10, 10];

interface Net {
  w1: Tensor;
  b1: Tensor;
  gamma: Tensor;
  beta: Tensor;
  w2: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

function initialValues(): Float32Array[] {
  return [
    randomArray(5 * 3 * 9, 11, -0.4, 0.4),
    randomArray(5, 12, -0.1, 0.1),
    randomArray(5, 13, 0.8, 1.2),
    randomArray(5, 14, -0.1, 0.1),
    randomArray(2 * 5 * 9, 15, -0.3, 0.3),
  ];
}

function makeNet(d: Device): Net {
  const [w1, b1, gamma, beta, w2] = initialValues();
  const param = (data: Float32Array, shape: number[]) =>
    d.tensor(data, shape, { requiresGrad: true });
  return {
    w1: param(w1, W1_SHAPE),
    b1: param(b1, [5]),
    gamma: param(gamma, [5]),
    beta: param(beta, [5]),
    w2: param(w2, W2_SHAPE),
    runningMean: d.zeros([5]),
    runningVar: d.ones([5]),
  };
}

function parameters(net: Net): Tensor[] {
  return [net.w1, net.b1, net.gamma, net.beta, net.w2];
}

/** conv -> bn -> relu -> (maxpool -> upsample) + residual -> conv -> mse. */
function forward(net: Net, x: Tensor, target: Tensor): Tensor {
  const h = F.relu(
    F.batchNorm2d(
      F.conv2d(x, net.w1, net.b1, { padding: 1 }),
      net.runningMean,
      net.runningVar,
      net.gamma,
      net.beta,
      { training: true },
    ),
  );
  const pooled = F.upsample(F.maxPool2d(h, { kernelSize: 2 }), { scaleFactor: 2, mode: "nearest" });
  const out = F.conv2d(F.add(pooled, h), net.w2, null, { padding: 1 });
  return F.mseLoss(out, target);
}

/** The same composite in float64. */
function referenceLoss(
  [x, w1, b1, gamma, beta, w2, target]: Float64Array[],
): number {
  const conv = ref.conv2d(x, X_SHAPE, w1, W1_SHAPE, b1, 1, 1);
  const bn = ref.batchNorm(
    conv.out,
    conv.shape,
    gamma,
    beta,
    true,
    [0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1],
    0.1,
    1e-5,
  );
  const h = ref.activation("relu", bn.out);
  const pooled = ref.maxPool2d(h, conv.shape, 2, 2, 0);
  const up = ref.resize(pooled.out, pooled.shape, 10, 10, 0.5, 0.5, "nearest");
  const sum = up.map((v, i) => v + h[i]);
  const out = ref.conv2d(sum, conv.shape, w2, W2_SHAPE, null, 1, 1).out;
  return ref.mse(out, target);
}

const xData = randomArray(3 * 3 * 100, 21);
const targetData = randomArray(3 * 2 * 100, 22, -0.5, 0.5);

Deno.test("composite graph: gradients match float64 finite differences", async () => {
  const net = makeNet(device);
  const x = device.tensor(xData, X_SHAPE);
  const target = device.tensor(targetData, Y_SHAPE);
  const loss = forward(net, x, target);
  const inputs = [xData, ...initialValues(), targetData];
  assertClose(
    [await loss.item()],
    [referenceLoss(inputs.map((a) => Float64Array.from(a)))],
    "loss",
    {
      rtol: 1e-4,
    },
  );
  await loss.backward();
  const params = parameters(net);
  for (let i = 0; i < params.length; i++) {
    const numeric = numericGradient((v) => [referenceLoss(v)], inputs, i + 1, [1], 1e-6, 150);
    const [actual, expected] = probed(await params[i].grad!.toArray(), numeric);
    assertClose(actual, expected, `gradient of parameter ${i}`, { atol: 2e-4, rtol: 5e-3 });
  }
  for (const t of [...Object.values(net), x, target, loss]) t.dispose();
});

/** Train `steps` Adam steps; returns the losses and the final parameters. */
async function train(
  d: Device,
  steps: number,
  readEvery = 1,
): Promise<{ losses: number[]; params: Float32Array[] }> {
  const net = makeNet(d);
  const x = d.tensor(xData, X_SHAPE);
  const target = d.tensor(targetData, Y_SHAPE);
  const opt = new optim.Adam(parameters(net), { lr: 0.01 });
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const loss = tidy(() => forward(net, x, target));
    opt.zeroGrad();
    await loss.backward();
    opt.step();
    if (step % readEvery === 0 || step === steps - 1) losses.push(await loss.item());
    loss.dispose();
  }
  const params = await Promise.all(parameters(net).map((p) => p.toArray()));
  opt.zeroGrad();
  opt.dispose();
  for (const t of [...Object.values(net), x, target]) t.dispose();
  return { losses, params };
}

Deno.test("composite graph trains: the loss goes down with Adam", async () => {
  const { losses } = await train(device, 8);
  assert.ok(losses[7] < losses[0] * 0.9, `losses ${losses.map((l) => l.toFixed(4)).join(" ")}`);
  for (let i = 1; i < losses.length; i++) assert.ok(Number.isFinite(losses[i]));
});

Deno.test("one submit per step and one submit per op give identical numbers", async () => {
  const batched = await train(device, 3);
  device.backend.flushEveryOp = true;
  const submitsBefore = device.stats().submits;
  let perOp;
  try {
    perOp = await train(device, 3);
  } finally {
    device.backend.flushEveryOp = false;
  }
  assert.ok(device.stats().submits - submitsBefore > 100, "per-op mode really submitted per op");
  assert.deepEqual(perOp.losses, batched.losses);
  for (let i = 0; i < batched.params.length; i++) {
    assert.deepEqual(perOp.params[i], batched.params[i], `parameter ${i}`);
  }
});

Deno.test("Adam matches torch.optim.Adam's update, with weight decay", async () => {
  const n = 37;
  const p0 = randomArray(n, 31);
  const param = device.tensor(p0, [n], { requiresGrad: true });
  const opt = new optim.Adam([param], {
    lr: 0.05,
    betas: [0.8, 0.95],
    eps: 1e-6,
    weightDecay: 0.1,
  });
  let p: Float64Array = Float64Array.from(p0);
  let m: Float64Array = new Float64Array(n);
  let v: Float64Array = new Float64Array(n);
  for (let step = 1; step <= 4; step++) {
    const g = randomArray(n, 40 + step);
    param.grad?.dispose();
    param.grad = device.tensor(g, [n]);
    opt.step();
    ({ p, m, v } = ref.adamStep(p, g, m, v, step, 0.05, 0.8, 0.95, 1e-6, 0.1));
    assertClose(await param.toArray(), p, `step ${step}`, { atol: 1e-6, rtol: 1e-5 });
  }
  opt.zeroGrad();
  opt.dispose();
  param.dispose();
});

Deno.test("GPU memory in use stays flat over 50 training steps", async () => {
  const net = makeNet(device);
  const x = device.tensor(xData, X_SHAPE);
  const target = device.tensor(targetData, Y_SHAPE);
  const opt = new optim.Adam(parameters(net), { lr: 0.01 });
  const inUse: number[] = [];
  for (let step = 0; step < 50; step++) {
    const loss = tidy(() => forward(net, x, target));
    opt.zeroGrad();
    await loss.backward();
    opt.step();
    if (step % 10 === 0) await loss.item();
    loss.dispose();
    inUse.push(device.stats().bytesInUse);
  }
  const afterFirst = inUse[1];
  assert.ok(inUse.slice(1).every((b) => b === afterFirst), `bytesInUse ${inUse.join(",")}`);
  const allocated = device.stats().bytesAllocated;
  for (let step = 0; step < 5; step++) {
    const loss = tidy(() => forward(net, x, target));
    opt.zeroGrad();
    await loss.backward();
    opt.step();
    loss.dispose();
  }
  await device.sync();
  assert.equal(device.stats().bytesAllocated, allocated, "the pool reuses buffers");
  opt.zeroGrad();
  opt.dispose();
  for (const t of [...Object.values(net), x, target]) t.dispose();
});

/**
 * The tape: shared subgraphs, accumulation, grad modes, scopes, and the errors users hit; and
 * Sequential's fused BatchNorm2d + ReLU giving the unfused numbers.
 */

import assert from "node:assert/strict";
import { F, keep, noGrad, tidy } from "../mod.ts";
import { BatchNorm2d, Conv2d, MaxPool2d, ReLU, Rng, Sequential, Sigmoid } from "../nn/layers.ts";
import { assertClose, randomArray, testDevice } from "./helpers.ts";

const device = await testDevice();

Deno.test("a tensor used twice gets the sum of both gradients", async () => {
  const data = randomArray(7, 3);
  const x = device.tensor(data, [7], { requiresGrad: true });
  // y = sum(x * x + x)  =>  dy/dx = 2x + 1
  const y = F.sum(F.add(F.mul(x, x), x));
  await y.backward();
  assertClose(await x.grad!.toArray(), Array.from(data, (v) => 2 * v + 1), "grad");
  x.dispose();
  y.dispose();
});

Deno.test("a diamond graph walks the shared node once", async () => {
  // h = 3x is used by two branches that meet again: d/dx sum(h*h + 2h) = 3 * (2h + 2).
  const data = randomArray(5, 4);
  const x = device.tensor(data, [5], { requiresGrad: true });
  const h = F.mul(x, 3);
  const y = F.sum(F.add(F.mul(h, h), F.mul(h, 2)));
  await y.backward();
  assertClose(await x.grad!.toArray(), Array.from(data, (v) => 3 * (2 * 3 * v + 2)), "grad");
  for (const t of [x, h, y]) t.dispose();
});

// A conv's backward to the input may take its input's gradient summed so far and add its own in
// the same pass (PendingGradients.claim): a ResNet block's residual. Both graphs below compute the
// same function of h; with h a leaf nothing can be claimed, with h = x * 1 the conv's backward
// takes the residual's gradient from the fused batch norm (fresh memory) but not the one from
// F.add (whose backward hands the same memory to both inputs).
for (const tail of ["batchNormAddRelu", "add"] as const) {
  Deno.test(`a conv's backward adds to a pending gradient it may take (${tail})`, async () => {
    const shape = [2, 5, 4, 8];
    const hData = randomArray(2 * 5 * 4 * 8, 41);
    const wData = randomArray(5 * 5 * 9, 42);
    const upstream = device.tensor(randomArray(2 * 5 * 4 * 8, 43), shape);
    const run = async (leaf: boolean) => {
      const x = device.tensor(hData, shape, { requiresGrad: true });
      const w = device.tensor(wData, [5, 5, 3, 3], { requiresGrad: true });
      const h = leaf ? x : F.mul(x, 1);
      const c = F.conv2d(h, w, null, { padding: 1 });
      const z = tail === "add"
        ? F.add(c, h)
        : F.batchNormAddRelu(c, h, null, null, null, null, { training: true });
      await F.sum(F.mul(z, upstream)).backward();
      const grads = [await x.grad!.toArray(), await w.grad!.toArray()];
      for (const t of [x, w, h, c, z]) t.dispose();
      return grads;
    };
    const [dxLeaf, dwLeaf] = await run(true);
    const [dxNode, dwNode] = await run(false);
    assertClose(dxNode, dxLeaf, "dh", { atol: 1e-5, rtol: 1e-5 });
    assertClose(dwNode, dwLeaf, "dw", { atol: 1e-5, rtol: 1e-5 });
    upstream.dispose();
  });
}

Deno.test("leaf gradients accumulate across backward calls until zeroed", async () => {
  const x = device.tensor([1, 2, 3], [3], { requiresGrad: true });
  for (let i = 0; i < 2; i++) {
    const y = F.sum(F.mul(x, 2));
    await y.backward();
    y.dispose();
  }
  assert.deepEqual(Array.from(await x.grad!.toArray()), [4, 4, 4]);
  x.dispose();
});

Deno.test("backward through the same graph twice is an error", async () => {
  const x = device.tensor([1, 2], [2], { requiresGrad: true });
  const y = F.sum(F.relu(x));
  await y.backward();
  await assert.rejects(async () => await y.backward(), /second time/);
  x.dispose();
  y.dispose();
});

Deno.test("noGrad records nothing, and backward then says why it cannot run", async () => {
  const x = device.tensor([1, 2], [2], { requiresGrad: true });
  const y = noGrad(() => F.sum(F.mul(x, x)));
  assert.equal(y.node, null);
  assert.equal(y.requiresGrad, false);
  assert.throws(() => y.backward(), /does not require grad/);
  // Async functions keep grad off until they settle.
  const z = await noGrad(async () => {
    await Promise.resolve();
    return F.mul(x, 2);
  });
  assert.equal(z.node, null);
  assert.ok(F.mul(x, 2).node, "recording resumes after noGrad");
  for (const t of [x, y, z]) t.dispose();
});

Deno.test("backward needs a scalar or an explicit gradient of the same shape", async () => {
  const x = device.tensor([1, 2, 3], [3], { requiresGrad: true });
  const y = F.mul(x, 2);
  assert.throws(() => y.backward(), /one-element \(scalar\) tensor, got shape \[3\]/);
  assert.throws(() => y.backward(device.ones([2])), /grad shape \[2\] differs from \[3\]/);
  await y.backward(device.tensor([1, 10, 100], [3]));
  assert.deepEqual(Array.from(await x.grad!.toArray()), [2, 20, 200]);
  x.dispose();
  y.dispose();
});

Deno.test("tidy frees intermediates and keeps the result", async () => {
  await device.sync();
  // Measured before the operands: the conv keeps its weight's packed filters while the weight
  // lives (kernels/pack_cache.ts), and gives them back with it.
  const before = device.stats().bytesInUse;
  const x = device.rand([4, 3, 9, 9], 1);
  const w = device.rand([5, 3, 3, 3], 2, -1, 1, { requiresGrad: true });
  const result = tidy(() => {
    const h = F.relu(F.conv2d(x, w, null, { padding: 1 }));
    return { pooled: F.maxPool2d(h, { kernelSize: 2 }), scalar: 3 };
  });
  assert.equal(result.pooled.isDisposed, false);
  assert.deepEqual([...result.pooled.shape], [4, 5, 4, 4]);
  // Only the result (and the graph it needs for backward) is left.
  const loss = tidy(() => F.mean(result.pooled));
  await loss.backward();
  assert.ok(w.grad);
  w.grad!.dispose();
  w.grad = null;
  loss.dispose();
  result.pooled.dispose();
  x.dispose();
  w.dispose();
  await device.sync();
  assert.equal(device.stats().bytesInUse, before);
});

Deno.test("tidy frees the saved tensors of graphs nobody can reach", async () => {
  const w = device.rand([3, 3], 5, -1, 1, { requiresGrad: true });
  await device.sync();
  const before = device.stats().bytesInUse;
  tidy(() => {
    // A forward pass whose loss is dropped: its nodes saved inputs for a backward never run.
    F.sum(F.relu(F.linear(device.rand([2, 3], 6), w)));
  });
  await device.sync();
  assert.equal(device.stats().bytesInUse, before);
  w.dispose();
});

Deno.test("keep exempts a tensor from tidy", () => {
  const kept = tidy(() => {
    const a = keep(device.zeros([2]));
    device.zeros([3]);
    return a;
  });
  assert.equal(kept.isDisposed, false);
  kept.dispose();
});

Deno.test("bad input gives clear errors", () => {
  const a = device.zeros([2, 3]);
  const b = device.zeros([3, 2]);
  assert.throws(() => F.add(a, b), /add: shapes \[2, 3\] and \[3, 2\] differ/);
  assert.throws(() => F.mseLoss(a, b), /mseLoss: shapes/);
  assert.throws(() => F.conv2d(a, device.zeros([1, 2, 3, 3])), /conv2d: input must have rank 4/);
  const img = device.zeros([1, 3, 8, 8]);
  assert.throws(
    () => F.conv2d(img, device.zeros([4, 2, 3, 3])),
    /input \[1, 3, 8, 8\] has 3 channels, weight \[4, 2, 3, 3\] expects 2/,
  );
  assert.throws(() => F.conv2d(img, device.zeros([4, 3, 9, 9])), /larger than the padded input/);
  assert.throws(
    () => F.linear(a, device.zeros([4, 5])),
    /has 3 features, weight \[4, 5\] expects 5/,
  );
  assert.throws(
    () => F.batchNorm2d(device.zeros([1, 3, 1, 1]), null, null, null, null, { training: true }),
    /more than 1 value per channel/,
  );
  assert.throws(() => F.maxPool2d(img, { kernelSize: 3, padding: 2 }), /at most half/);
  assert.throws(() => F.interpolate(img, { mode: "bilinear" }), /exactly one of size/);
  assert.throws(() => F.reshape(a, [4, 2]), /\[2, 3\] \(6 elements\) cannot become \[4, 2\]/);
  assert.throws(() => F.cat([a, b], 0), /cat: shapes/);
  assert.throws(() => F.narrow(a, 1, 2, 2), /outside dim 1 of size 3/);
  assert.throws(() => F.mul(a, NaN), /not finite/);
  assert.throws(() => device.tensor([1, NaN, 3], [3]), /value 1 is NaN/);
  assert.throws(() => device.tensor([1, Infinity], [2]), /value 1 is Infinity/);
  assert.throws(() => device.tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
  assert.throws(() => device.zeros([2, -1]), /non-negative integers/);
  const gone = device.zeros([2]);
  gone.dispose();
  assert.throws(() => F.relu(gone), /used after dispose/);
  for (const t of [a, b, img]) t.dispose();
});

// With a 2x2 max-pool after the ReLU the three run as one op (BatchNorm2d.forwardReluMaxPool);
// with a 3x3 one (and without) BatchNorm2d + ReLU are fused and the pool runs on its own.
for (const pool of [2, 3, 0]) {
  Deno.test(
    `Sequential runs BatchNorm2d + ReLU${
      pool ? ` + MaxPool2d(${pool})` : ""
    } fused with the same numbers and gradients`,
    async () => {
      const xData = randomArray(3 * 2 * 6 * 8, 81);
      const run = async (fuse: boolean) => {
        const rng = new Rng(5);
        const model = new Sequential(
          new Conv2d(device, 2, 5, 3, { padding: 1, rng }),
          new BatchNorm2d(device, 5),
          new ReLU(),
          ...(pool ? [new MaxPool2d(pool)] : []),
        );
        model.fuseBatchNormRelu = fuse;
        const x = device.tensor(xData, [3, 2, 6, 8], { requiresGrad: true });
        const y = model.forward(x);
        const loss = F.sum(F.mul(y, y));
        await loss.backward();
        const bn = model.layers[1] as BatchNorm2d;
        const out = {
          y: await y.toArray(),
          dx: await x.grad!.toArray(),
          grads: await Promise.all(model.parameters().map((p) => p.grad!.toArray())),
          running: [...await bn.runningMean.toArray(), ...await bn.runningVar.toArray()],
        };
        for (const t of [x, y, loss]) t.dispose();
        for (const p of model.parameters()) p.grad?.dispose();
        model.dispose();
        return out;
      };
      const fused = await run(true);
      const plain = await run(false);
      assertClose(fused.y, plain.y, "output", { atol: 1e-6, rtol: 1e-6 });
      assertClose(fused.dx, plain.dx, "input gradient", { atol: 1e-5, rtol: 1e-5 });
      fused.grads.forEach((g, i) =>
        assertClose(g, plain.grads[i], `parameter ${i} gradient`, { atol: 1e-5, rtol: 1e-5 })
      );
      assertClose(fused.running, plain.running, "running statistics", { atol: 1e-6, rtol: 1e-6 });
    },
  );
}

// A Conv2d followed by a Sigmoid (the decoder's image) or a ReLU runs as one op; an mseLoss of the
// sigmoid's output still takes its gradient through the sigmoid in its own pass; nothing is left
// behind in the pool once the graph is gone.
for (const Activation of [Sigmoid, ReLU]) {
  Deno.test(
    `Sequential runs Conv2d + ${Activation.name} as one op with the same numbers and gradients`,
    async () => {
      const xData = randomArray(3 * 4 * 6 * 8, 83);
      const target = device.tensor(randomArray(3 * 3 * 6 * 8, 84, 0, 1), [3, 3, 6, 8]);
      await device.sync();
      const before = device.stats().bytesInUse;
      const run = async (fuse: boolean) => {
        const model = new Sequential(
          new Conv2d(device, 4, 3, 3, { padding: 1, rng: new Rng(7) }),
          new Activation(),
        );
        model.fuseConvActivation = fuse;
        const x = device.tensor(xData, [3, 4, 6, 8], { requiresGrad: true });
        let y: ArrayLike<number> = [];
        // As a training step runs it: only the loss leaves the scope (the sigmoid's node, which
        // the fused loss goes around, is freed with the scope).
        const loss = await tidy(async () => {
          const out = model.forward(x);
          y = await out.toArray();
          return F.mseLoss(out, target);
        });
        if (Activation === Sigmoid) assert.equal(loss.node?.name, "mseLoss+sigmoid");
        await loss.backward();
        const out = {
          y,
          dx: await x.grad!.toArray(),
          grads: await Promise.all(model.parameters().map((p) => p.grad!.toArray())),
        };
        for (const t of [x, x.grad!, loss]) t.dispose();
        for (const p of model.parameters()) p.grad?.dispose();
        model.dispose();
        return out;
      };
      const fused = await run(true);
      const plain = await run(false);
      await device.sync();
      assert.equal(device.stats().bytesInUse, before, "every buffer back in the pool");
      assertClose(fused.y, plain.y, "output", { atol: 1e-6, rtol: 1e-6 });
      assertClose(fused.dx, plain.dx, "input gradient", { atol: 1e-6, rtol: 1e-5 });
      fused.grads.forEach((g, i) =>
        assertClose(g, plain.grads[i], `parameter ${i} gradient`, { atol: 1e-6, rtol: 1e-5 })
      );
      target.dispose();
    },
  );
}

// A training-mode batch norm subtracts each channel's batch mean, so the conv bias before it has
// exactly zero gradient: with outputFeedsBatchNorm the backward writes zeros; summed from dy, as
// without it, the bias gradient is rounding noise. The weight gradient is the same up to rounding
// (with the hint, the conv may form the batch norm's statistics as it stores its output: the
// same statistics, summed in another order; tests/kernels_bn_statistics_test.ts).
Deno.test("a conv bias feeding a training-mode batch norm gets exactly zero gradient", async () => {
  const x = device.tensor(randomArray(4 * 3 * 6 * 8, 91), [4, 3, 6, 8]);
  const w = device.tensor(randomArray(5 * 3 * 9, 92), [5, 3, 3, 3], { requiresGrad: true });
  const b = device.tensor(randomArray(5, 93), [5], { requiresGrad: true });
  const gamma = device.tensor(randomArray(5, 94, 0.5, 1.5), [5]);
  const beta = device.tensor(randomArray(5, 95), [5]);
  const r = device.tensor(randomArray(4 * 5 * 6 * 8, 96), [4, 5, 6, 8]);
  const run = async (outputFeedsBatchNorm: boolean) => {
    const loss = tidy(() => {
      const y = F.conv2d(x, w, b, { padding: 1, outputFeedsBatchNorm });
      const z = F.batchNorm2d(y, null, null, gamma, beta, { training: true, relu: true });
      return F.sum(F.mul(z, r));
    });
    await loss.backward();
    const grads = { dw: await w.grad!.toArray(), db: await b.grad!.toArray() };
    for (const t of [loss, w.grad!, b.grad!]) t.dispose();
    w.grad = null;
    b.grad = null;
    return grads;
  };
  const hinted = await run(true);
  const summed = await run(false);
  assert.deepEqual(Array.from(hinted.db), [0, 0, 0, 0, 0]);
  const scale = Math.max(...hinted.dw.map(Math.abs));
  assert.ok(scale > 1, `weight gradient scale ${scale}`);
  assertClose(hinted.dw, summed.dw, "weight gradient", { atol: 1e-5 * scale, rtol: 1e-5 });
  for (const v of summed.db) assert.ok(Math.abs(v) < 1e-4 * scale, `summed bias gradient ${v}`);
  for (const t of [x, w, b, gamma, beta, r]) t.dispose();
});

Deno.test("Sequential: a Conv2d before a training-mode BatchNorm2d gets a zero bias gradient", async () => {
  const xData = randomArray(2 * 2 * 4 * 8, 97);
  const model = new Sequential(
    new Conv2d(device, 2, 3, 3, { padding: 1, rng: new Rng(6) }),
    new BatchNorm2d(device, 3),
    new ReLU(),
  );
  const conv = model.layers[0] as Conv2d;
  const biasGradient = async () => {
    const x = device.tensor(xData, [2, 2, 4, 8]);
    const y = model.forward(x);
    const loss = F.sum(F.mul(y, y));
    await loss.backward();
    const db = await conv.bias!.grad!.toArray();
    for (const t of [x, y, loss]) t.dispose();
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    return db;
  };
  assert.deepEqual(Array.from(await biasGradient()), [0, 0, 0]);
  // Eval mode: the running statistics are constants, the bias gradient is dy's channel sums.
  model.eval();
  const evalGradient = await biasGradient();
  assert.ok(evalGradient.some((v) => Math.abs(v) > 1e-3), `eval bias gradient ${evalGradient}`);
  model.dispose();
});

Deno.test("Device.sharedZeros: one zero buffer per size, outliving its handles", async () => {
  const a = device.sharedZeros([5]);
  const b = device.sharedZeros([1, 5]);
  assert.equal(a.buffer, b.buffer);
  assert.deepEqual(b.shape, [1, 5]);
  a.dispose();
  b.dispose();
  const c = device.sharedZeros([5]);
  assert.deepEqual(Array.from(await c.toArray()), [0, 0, 0, 0, 0]);
  const d = device.sharedZeros([6]);
  assert.notEqual(d.buffer, c.buffer);
  c.dispose();
  d.dispose();
});

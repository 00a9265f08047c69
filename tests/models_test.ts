/** The layer library and the paper's two models: shapes, counts, state dicts, training, BN modes. */

import assert from "node:assert/strict";
import { F, io, nn, noGrad, optim, tidy } from "../mod.ts";
import { randomArray, testDevice } from "./helpers.ts";
import { setPendingGradientClaims } from "../nn/tensor.ts";

const device = await testDevice();

/** Parameter count of the autoencoder by the formula, independent of the implementation. */
function autoencoderParameters(widths: readonly number[], code = 32, image = 64): number {
  const bottleneck = image / 2 ** widths.length;
  const flat = widths[widths.length - 1] * bottleneck ** 2;
  let count = 0;
  let channels = 3;
  for (const w of widths) {
    count += channels * w * 9 + w + 2 * w;
    channels = w;
  }
  count += flat * (code + 2) + code + 2; // encoder head
  count += (code + 2) * flat + flat; // decoder input
  for (const w of [...widths].reverse()) {
    count += channels * w * 9 + w + 2 * w;
    channels = w;
  }
  return count + channels * 3 * 9 + 3;
}

Deno.test("ResNet34 at full size has torchvision's 21,285,698 parameters and key names", () => {
  const model = new nn.ResNet34(device, { numOutputs: 2 });
  assert.equal(model.parameterCount(), 21_285_698);
  const keys = [...model.stateDict().keys()];
  assert.equal(keys.length, 218);
  assert.deepEqual(keys.slice(0, 7), [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "layer1.0.conv1.weight",
  ]);
  for (
    const name of [
      "layer2.0.downsample.0.weight",
      "layer2.0.downsample.1.running_var",
      "layer3.5.bn2.bias",
      "layer4.2.conv2.weight",
      "fc.weight",
      "fc.bias",
    ]
  ) assert.ok(keys.includes(name), name);
  assert.ok(!keys.includes("layer1.0.downsample.0.weight"), "layer1 keeps the identity shortcut");
  // Running statistics and counters are state, not parameters.
  assert.equal(model.parameters().length, 110);
  model.dispose();
});

Deno.test("ResNet34 variants: forward shapes at several widths and input sizes", async () => {
  for (const [width, size, outputs] of [[0.125, 64, 2], [0.25, 48, 3], [1 / 16, 33, 1]] as const) {
    const model = new nn.ResNet34(device, { width, numOutputs: outputs });
    model.eval();
    const y = noGrad(() => model.forward(device.rand([2, 3, size, size], 1)));
    assert.deepEqual([...y.shape], [2, outputs]);
    for (const v of await y.toArray()) assert.ok(Number.isFinite(v));
    y.dispose();
    model.dispose();
  }
});

Deno.test("FaceAutoencoder: parameter counts and shapes at every size", async () => {
  for (const size of ["tiny", "demo", "paper"] as const) {
    const ae = new nn.FaceAutoencoder(device, { size });
    assert.equal(ae.parameterCount(), autoencoderParameters(nn.AUTOENCODER_SIZES[size]), size);
    const x = device.rand([2, 3, 64, 64], 3);
    const out = noGrad(() => {
      const { z, v, a } = ae.encode(x);
      assert.deepEqual([[...z.shape], [...v.shape], [...a.shape]], [[2, 32], [2], [2]]);
      return ae.decode(z, v, a);
    });
    assert.deepEqual([...out.shape], [2, 3, 64, 64]);
    const pixels = await out.toArray();
    assert.ok(pixels.every((p) => p > 0 && p < 1), "sigmoid output in (0, 1)");
    out.dispose();
    x.dispose();
    ae.dispose();
  }
  assert.equal(new nn.FaceAutoencoder(device, { size: "tiny" }).parameterCount(), 61573);
  const custom = new nn.FaceAutoencoder(device, { size: [4, 6, 5], codeSize: 8, imageSize: 32 });
  assert.equal(custom.parameterCount(), autoencoderParameters([4, 6, 5], 8, 32));
  assert.throws(
    () => new nn.FaceAutoencoder(device, { size: [4, 4, 4, 4, 4, 4, 4], imageSize: 64 }),
    /not divisible/,
  );
  assert.throws(() => custom.encode(device.zeros([1, 3, 64, 64])), /expected \[N, 3, 32, 32\]/);
  custom.dispose();
});

Deno.test("state dict round trip through safetensors gives bit-identical outputs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = new nn.ResNet34(device, { width: 0.125, seed: 3 });
    // Train a step so running statistics and num_batches_tracked are not at their defaults.
    const x = device.rand([3, 3, 40, 40], 4);
    tidy(() => model.forward(x));
    model.eval();
    const before = await noGrad(() => model.forward(x)).toArray();
    const path = `${dir}/resnet.safetensors`;
    await io.writeSafetensors(path, model.stateDict());
    const copy = new nn.ResNet34(device, { width: 0.125, seed: 99 });
    const state = await io.readSafetensors(device, path);
    copy.loadStateDict(state, { strict: true });
    io.disposeStateDict(state);
    copy.eval();
    const after = await noGrad(() => copy.forward(x)).toArray();
    assert.deepEqual(after, before);
    assert.equal(copy.bn1.numBatchesTracked, 1);
    const entries = (await Deno.readDir(dir)[Symbol.asyncIterator]().next()).value;
    assert.equal(entries?.name, "resnet.safetensors", "no temp files left");
    model.dispose();
    copy.dispose();
    x.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loading another model's checkpoint names the first mismatching tensor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const small = new nn.FaceAutoencoder(device, { size: "tiny" });
    const path = `${dir}/ae.safetensors`;
    await io.writeSafetensors(path, small.stateDict());
    const demo = new nn.FaceAutoencoder(device, { size: "demo" });
    const state = await io.readSafetensors(device, path);
    const before = await demo.encoder.layers[0].stateDict().get("weight")!;
    const snapshot = await (before as { toArray(): Promise<Float32Array> }).toArray();
    assert.throws(
      () => demo.loadStateDict(state),
      /"encoder\.0\.weight" has shape \[8, 3, 3, 3\] in the checkpoint, the model expects \[16, 3, 3, 3\]/,
    );
    // Nothing was copied: the model is as it was.
    assert.deepEqual(await (before as { toArray(): Promise<Float32Array> }).toArray(), snapshot);
    const resnet = new nn.ResNet34(device, { width: 0.125 });
    assert.throws(
      () => resnet.loadStateDict(state),
      /"conv1\.weight" is missing from the checkpoint/,
    );
    const partial = resnet.loadStateDict(state, { strict: false });
    assert.ok(partial.missingKeys.includes("fc.weight"));
    assert.ok(partial.unexpectedKeys.includes("encoder.0.weight"));
    io.disposeStateDict(state);
    for (const m of [small, demo, resnet]) m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("truncated or corrupted safetensors files give clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = new nn.FaceAutoencoder(device, { size: "tiny" });
    const path = `${dir}/ae.safetensors`;
    await io.writeSafetensors(path, model.stateDict());
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(`${dir}/truncated.safetensors`, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(
      () => io.readSafetensors(device, `${dir}/truncated.safetensors`),
      /truncated\.safetensors: .*(truncated|out of range|exceed|beyond|end)/i,
    );
    const corrupt = bytes.slice();
    corrupt.fill(0x7b, 8, 40); // garbage inside the JSON header
    await Deno.writeFile(`${dir}/corrupt.safetensors`, corrupt);
    await assert.rejects(
      () => io.readSafetensors(device, `${dir}/corrupt.safetensors`),
      /corrupt\.safetensors: /,
    );
    await assert.rejects(
      () => io.readSafetensors(device, `${dir}/missing.safetensors`),
      /No such file|not found/i,
    );
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval-mode BatchNorm uses running statistics; training mode updates them", async () => {
  const bn = new nn.BatchNorm2d(device, 3);
  const x = device.tensor(randomArray(4 * 3 * 5 * 5, 9, 1, 3), [4, 3, 5, 5]);
  tidy(() => bn.forward(x));
  assert.equal(bn.numBatchesTracked, 1);
  const mean = await bn.runningMean.toArray();
  assert.ok(mean.every((m) => m > 0.15 && m < 0.25), `running mean moved 10% toward ~2: ${mean}`);
  bn.eval();
  // In eval mode a sample's output does not depend on the rest of the batch.
  const alone = noGrad(() => bn.forward(F.narrow(x, 0, 0, 1)));
  const inBatch = noGrad(() => F.narrow(bn.forward(x), 0, 0, 1));
  assert.deepEqual(await alone.toArray(), await inBatch.toArray());
  assert.equal(bn.numBatchesTracked, 1, "eval does not count batches");
  for (const t of [alone, inBatch, x]) t.dispose();
  bn.dispose();
});

Deno.test("a few Adam steps lower the autoencoder's paper loss", async () => {
  const ae = new nn.FaceAutoencoder(device, { size: "tiny", seed: 1 });
  const opt = new optim.Adam(ae.parameters(), { lr: 3e-3 });
  const n = 8;
  const imageI = device.rand([n, 3, 64, 64], 10);
  const imageJ = device.rand([n, 3, 64, 64], 11);
  const label = (seed: number) => device.tensor(randomArray(n, seed), [n]);
  const [vi, ai, vj, aj] = [label(1), label(2), label(3), label(4)];
  const losses: number[] = [];
  for (let step = 0; step < 6; step++) {
    const total = tidy(() => ae.loss(imageI, vi, ai, imageJ, vj, aj).total);
    opt.zeroGrad();
    await total.backward();
    opt.step();
    losses.push(await total.item());
    total.dispose();
  }
  assert.ok(losses[5] < losses[0], `losses ${losses}`);
  opt.zeroGrad();
  opt.dispose();
  ae.dispose();
  for (const t of [imageI, imageJ, vi, ai, vj, aj]) t.dispose();
});

// Every conv bias before a batch norm (4 encoder blocks, 4 decoder blocks, the decoder's upsample +
// conv fused) has exactly zero gradient, through Sequential ("input") and the decoder's own loop
// ("maps"); the output conv's (before the sigmoid) has not.
for (const conditioning of ["input", "maps"] as const) {
  Deno.test(`FaceAutoencoder (${conditioning}): conv biases before batch norms get zero gradients`, async () => {
    const ae = new nn.FaceAutoencoder(device, { size: "tiny", seed: 2, conditioning });
    const n = 2;
    const imageI = device.rand([n, 3, 64, 64], 12);
    const imageJ = device.rand([n, 3, 64, 64], 13);
    const label = (seed: number) => device.tensor(randomArray(n, seed), [n]);
    const [vi, ai, vj, aj] = [label(5), label(6), label(7), label(8)];
    const total = tidy(() => ae.loss(imageI, vi, ai, imageJ, vj, aj).total);
    await total.backward();
    const convs = [...ae.encoder.layers, ...ae.decoder.layers].filter((layer) =>
      layer instanceof nn.Conv2d
    ) as InstanceType<typeof nn.Conv2d>[];
    const nonzero: number[] = [];
    for (const [index, conv] of convs.entries()) {
      const values = await conv.bias!.grad!.toArray();
      if (!values.every((v) => v === 0)) nonzero.push(index);
    }
    assert.equal(convs.length, 9);
    assert.deepEqual(nonzero, [8]);
    for (const p of ae.parameters()) p.grad?.dispose();
    ae.dispose();
    for (const t of [total, imageI, imageJ, vi, ai, vj, aj]) t.dispose();
  });
}

Deno.test("a few Adam steps lower a small ResNet34's regression loss", async () => {
  const model = new nn.ResNet34(device, { width: 1 / 16, seed: 2 });
  const opt = new optim.Adam(model.parameters(), { lr: 3e-3 });
  const x = device.rand([6, 3, 32, 32], 20);
  const y = device.tensor(randomArray(12, 21, -0.8, 0.8), [6, 2]);
  const losses: number[] = [];
  for (let step = 0; step < 6; step++) {
    const loss = tidy(() => F.mseLoss(model.forward(nn.normalizeImagenet(x)), y));
    opt.zeroGrad();
    await loss.backward();
    opt.step();
    losses.push(await loss.item());
    loss.dispose();
  }
  assert.ok(losses[5] < losses[0], `losses ${losses}`);
  opt.zeroGrad();
  opt.dispose();
  model.dispose();
  x.dispose();
  y.dispose();
});

// The fused blocks (bn1 + ReLU; bn2 + residual add + ReLU as one op, F.batchNormAddRelu; the convs'
// backward adding to the residual's gradient) against the plain ops with every gradient summed by
// the engine, in training mode: the same outputs, parameter gradients and running statistics.
Deno.test("ResNet34 fused and unfused blocks agree in training", async () => {
  const x = device.rand([3, 3, 32, 32], 30);
  const y = device.tensor(randomArray(6, 31, -0.8, 0.8), [3, 2]);
  const run = async (fused: boolean) => {
    const model = new nn.ResNet34(device, { width: 1 / 16, seed: 3, fused });
    model.train();
    const out = model.forward(x);
    const loss = F.mseLoss(out, y);
    setPendingGradientClaims(fused);
    try {
      await loss.backward();
    } finally {
      setPendingGradientClaims(true);
    }
    const named = model.namedParameters();
    const grads = await Promise.all(named.map(([, p]) => p.grad!.toArray()));
    const running = [...model.stateDict()].filter(([name]) => name.includes(".running_"));
    const buffers = await Promise.all(
      running.map(([, value]) => (value as { toArray(): Promise<Float32Array> }).toArray()),
    );
    const result = { out: await out.toArray(), names: named.map(([n]) => n), grads, buffers };
    loss.dispose();
    out.dispose();
    model.dispose();
    return result;
  };
  const plain = await run(false);
  const fused = await run(true);
  // Relative to each tensor's largest value: the deep layers' gradients are small.
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
    let scale = 0;
    for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
    for (let i = 0; i < a.length; i++) {
      const tol = 1e-3 * scale + 1e-9;
      assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]} (scale ${scale})`);
    }
  };
  close(fused.out, plain.out, "output");
  plain.grads.forEach((g, i) => close(fused.grads[i], g, `grad of ${plain.names[i]}`));
  assert.ok(plain.buffers.length > 0);
  plain.buffers.forEach((b, i) => close(fused.buffers[i], b, `running statistics ${i}`));
  x.dispose();
  y.dispose();
});

Deno.test("normalizeImagenet applies (x - mean) / std per channel", async () => {
  const x = device.tensor([0, 1, 0.5, 0.25, 1, 0], [1, 3, 1, 2]);
  const y = await nn.normalizeImagenet(x).toArray();
  const expected = [0, 1, 0.5, 0.25, 1, 0].map((v, i) => {
    const c = Math.floor(i / 2);
    return (v - nn.IMAGENET_MEAN[c]) / nn.IMAGENET_STD[c];
  });
  for (let i = 0; i < 6; i++) {
    assert.ok(Math.abs(y[i] - expected[i]) < 1e-5, `${y[i]} vs ${expected[i]}`);
  }
  x.dispose();
});

/**
 * Parity with PyTorch: state dicts written by PyTorch load into the engine's models unchanged, and
 * the models then compute what PyTorch computes.
 *
 * The fixtures in tests/fixtures/ come from tests/fixtures/make_parity.py (run once by a developer
 * with torch 1.13.1 / torchvision 0.14.1; CI has no torch):
 * - parity_resnet34_w16.safetensors: a torchvision-layout ResNet34 at width 1/16 (planes
 *   4-8-16-32, fc -> 2), i.e. `nn.ResNet34(device, { width: 1 / 16, numOutputs: 2 })`;
 * - parity_autoencoder_tiny.safetensors: `nn.FaceAutoencoder(device, { size: "tiny" })`;
 * - parity_expected.json: PyTorch's state_dict() key order and shapes, and the expected outputs,
 *   computed in float64 from the float32 weights.
 * Every parameter and every BatchNorm running statistic is random, and each num_batches_tracked is
 * a distinct int64 (1000 + the layer's index), so eval mode and the int64 buffers are really
 * exercised.
 *
 * Inputs are not stored: both sides compute them from a closed form that is exact in float64 and
 * then rounded once to float32,
 *
 *     pattern(shape, a, b)[i] = float32(((i * a + b) mod 65521) / 65521)
 *
 * over the row-major flat index i, with (a, b) read from the JSON.
 *
 * The last test compares the full torchvision resnet34 (fc replaced by Linear(512, 2)); it runs
 * only where VA_TORCHVISION_RESNET34 names a folder holding resnet34_fc2.safetensors and
 * expected.json, written by `python3 tests/fixtures/make_parity.py --full DIR`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { io, nn, noGrad, type Tensor, tidy } from "../mod.ts";
import { readSafetensorsFile } from "../nn/safetensors.ts";
import { assertClose, testDevice } from "./helpers.ts";

const device = await testDevice();
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const RESNET_FILE = join(FIXTURES, "parity_resnet34_w16.safetensors");
const AUTOENCODER_FILE = join(FIXTURES, "parity_autoencoder_tiny.safetensors");

/** The JSON's description of a formula input. */
interface PatternInput {
  shape: number[];
  a: number;
  b: number;
}

/** A deterministic subset of a tensor plus whole-tensor checksums (float64 sums). */
interface Sample {
  shape: number[];
  indices: number[];
  values: number[];
  sum: number;
  abs_sum: number;
  max_abs: number;
}

/** [name, shape, dtype] of each state_dict() entry, in PyTorch's order. */
type KeyList = [string, number[], string][];

interface Expected {
  modulus: number;
  resnet34_w16: {
    width: number;
    num_outputs: number;
    state_dict: KeyList;
    eval: Record<"224" | "64", {
      input: PatternInput;
      normalize_imagenet: boolean;
      output: number[];
      torch_float32_max_abs_diff: number;
    }>;
  };
  autoencoder_tiny: {
    size: "tiny";
    code_size: number;
    image_size: number;
    state_dict: KeyList;
    eval: { input: PatternInput; z: number[]; v: number[]; a: number[]; decoded: Sample };
    train: {
      image_i: PatternInput;
      image_j: PatternInput;
      labels: Record<"valence_i" | "arousal_i" | "valence_j" | "arousal_j", number[]>;
      loss: Record<"total" | "valence" | "arousal" | "reconstruction", number>;
      generated: Sample;
      batch_norm_after: Record<
        string,
        { running_mean: number[]; running_var: number[]; num_batches_tracked: number }
      >;
      grads: Record<string, Sample>;
    };
  };
}

const expected: Expected = JSON.parse(
  await Deno.readTextFile(join(FIXTURES, "parity_expected.json")),
);

/** float32(((i * a + b) mod modulus) / modulus) for i = 0 .. size - 1: exact on both sides. */
function pattern({ shape, a, b }: PatternInput, modulus = expected.modulus): Float32Array {
  const n = shape.reduce((p, d) => p * d, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((i * a + b) % modulus) / modulus;
  return out;
}

function maxAbsDiff(actual: ArrayLike<number>, wanted: ArrayLike<number>): number {
  assert.equal(actual.length, wanted.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - wanted[i]);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst;
}

/** Assert max |actual - wanted| < limit, naming the measured difference. */
function assertMaxAbs(
  actual: ArrayLike<number>,
  wanted: ArrayLike<number>,
  limit: number,
  what: string,
): number {
  const diff = maxAbsDiff(actual, wanted);
  if (Deno.env.get("PARITY_VERBOSE")) console.log(`${what}: max abs difference ${diff}`);
  assert.ok(diff < limit, `${what}: max abs difference ${diff} >= ${limit}`);
  return diff;
}

/** Compare a tensor's values against a {@link Sample}: the subset, then the checksums. */
function assertSample(values: Float32Array, sample: Sample, atol: number, what: string): number {
  assert.equal(values.length, sample.shape.reduce((p, d) => p * d, 1), `${what}: size`);
  const picked = sample.indices.map((i) => values[i]);
  const diff = assertMaxAbs(picked, sample.values, atol, `${what} (subset)`);
  let sum = 0;
  let absSum = 0;
  for (const v of values) {
    sum += v;
    absSum += Math.abs(v);
  }
  assertClose([sum, absSum], [sample.sum, sample.abs_sum], `${what} (sum, abs sum)`, {
    atol: atol * Math.sqrt(values.length),
    rtol: 1e-5,
  });
  return diff;
}

/** The state dict's [name, shape, dtype] list in the form make_parity.py writes. */
function keyList(model: nn.Module): KeyList {
  return [...model.stateDict()].map(([name, value]) => [
    name,
    [...value.shape],
    nn.isHostTensor(value) ? (value.dtype === "I64" ? "int64" : value.dtype) : "float32",
  ]);
}

function newResNet(seed = 0): nn.ResNet34 {
  const { width, num_outputs: numOutputs } = expected.resnet34_w16;
  return new nn.ResNet34(device, { width, numOutputs, seed });
}

function newAutoencoder(seed = 0): nn.FaceAutoencoder {
  const { size, code_size: codeSize, image_size: imageSize } = expected.autoencoder_tiny;
  return new nn.FaceAutoencoder(device, { size, codeSize, imageSize, seed });
}

/** Read a safetensors file and load it strictly; the read dict is disposed. */
async function loadInto<M extends nn.Module>(model: M, path: string): Promise<M> {
  const dict = await io.readSafetensors(device, path);
  try {
    model.loadStateDict(dict, { strict: true });
  } finally {
    io.disposeStateDict(dict);
  }
  return model;
}

/** Run `fn` without the tape, free its intermediates, and read the result back. */
async function run(fn: () => Tensor): Promise<Float32Array> {
  const y = tidy(() => noGrad(fn));
  try {
    return await y.toArray();
  } finally {
    y.dispose();
  }
}

function resnetForward(model: nn.ResNet34, input: PatternInput, normalize: boolean) {
  return run(() => {
    const x = device.tensor(pattern(input), input.shape);
    return model.forward(normalize ? nn.normalizeImagenet(x) : x);
  });
}

/** Every value of `model`'s state equals the file's, bit for bit (host tensors included). */
async function assertStateEqualsFile(model: nn.Module, path: string): Promise<void> {
  const { tensors: file } = await readSafetensorsFile(path);
  const own = [...model.stateDict()];
  assert.deepEqual(own.map(([name]) => name).sort(), [...file.keys()].sort());
  const values = await Promise.all(
    own.map(([, value]) => nn.isHostTensor(value) ? value.data : value.toArray()),
  );
  own.forEach(([name, value], i) => {
    const stored = file.get(name)!;
    assert.deepEqual(stored.shape, [...value.shape], `${name} shape`);
    assert.equal(stored.dtype, nn.isHostTensor(value) ? value.dtype : "F32", `${name} dtype`);
    assert.deepEqual(values[i], stored.data, `${name} values`);
  });
}

function numBatchesTracked(model: nn.Module, name: string): bigint {
  const value = model.stateDict().get(`${name}.num_batches_tracked`);
  assert.ok(value && nn.isHostTensor(value) && value.dtype === "I64", `${name}: an I64 tensor`);
  assert.deepEqual(value.shape, []);
  return (value.data as BigInt64Array)[0];
}

// ---------------------------------------------------------------------------------------------

Deno.test("ResNet34 w/16: PyTorch's state_dict names, order and shapes; strict load", async () => {
  const model = newResNet();
  try {
    assert.deepEqual(keyList(model), expected.resnet34_w16.state_dict);
    await loadInto(model, RESNET_FILE);
    await assertStateEqualsFile(model, RESNET_FILE);
    const bns = expected.resnet34_w16.state_dict
      .filter(([name]) => name.endsWith(".num_batches_tracked"))
      .map(([name]) => name.slice(0, -".num_batches_tracked".length));
    assert.equal(bns.length, 36);
    bns.forEach((name, i) => assert.equal(numBatchesTracked(model, name), BigInt(1000 + i), name));
  } finally {
    model.dispose();
  }
});

Deno.test("ResNet34 w/16 eval: matches PyTorch at 224x224 (normalized) and 64x64", async () => {
  const model = (await loadInto(newResNet(), RESNET_FILE)).eval();
  try {
    const at224 = expected.resnet34_w16.eval["224"];
    const out224 = await resnetForward(model, at224.input, at224.normalize_imagenet);
    // The bound. Measured on llvmpipe: 5e-6 on outputs of magnitude 20, where PyTorch's
    // own float32 CPU result is 4e-6 from the float64 reference (torch_float32_max_abs_diff).
    assertMaxAbs(out224, at224.output, 1e-3, "224x224 output");
    const at64 = expected.resnet34_w16.eval["64"];
    const out64 = await resnetForward(model, at64.input, at64.normalize_imagenet);
    assertMaxAbs(out64, at64.output, 1e-5, "64x64 output");
  } finally {
    model.dispose();
  }
});

Deno.test("FaceAutoencoder tiny: state_dict names, order, shapes as PyTorch; strict load", async () => {
  const model = newAutoencoder();
  try {
    assert.deepEqual(keyList(model), expected.autoencoder_tiny.state_dict);
    await loadInto(model, AUTOENCODER_FILE);
    await assertStateEqualsFile(model, AUTOENCODER_FILE);
    const bns = Object.keys(expected.autoencoder_tiny.train.batch_norm_after);
    assert.equal(bns.length, 8);
    bns.forEach((name, i) => assert.equal(numBatchesTracked(model, name), BigInt(1000 + i), name));
  } finally {
    model.dispose();
  }
});

Deno.test("FaceAutoencoder tiny eval: encode (z, v, a) and decode match PyTorch", async () => {
  const model = (await loadInto(newAutoencoder(), AUTOENCODER_FILE)).eval();
  const want = expected.autoencoder_tiny.eval;
  const x = device.tensor(pattern(want.input), want.input.shape);
  try {
    const codes = noGrad(() => model.encode(x));
    const [z, v, a] = await Promise.all([codes.z, codes.v, codes.a].map((t) => t.toArray()));
    // |z| reaches 2.6; PyTorch's own float32 z is 2e-6 from the float64 reference.
    assertMaxAbs(z, want.z, 2e-5, "z");
    assertMaxAbs(v, want.v, 2e-5, "v");
    assertMaxAbs(a, want.a, 2e-5, "a");
    const decoded = await run(() => model.decode(codes.z, codes.v, codes.a));
    for (const t of Object.values(codes)) t.dispose();
    assertSample(decoded, want.decoded, 1e-5, "decoded");
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("FaceAutoencoder tiny train: loss, batch stats and gradients match PyTorch", async () => {
  const model = (await loadInto(newAutoencoder(), AUTOENCODER_FILE)).train();
  const want = expected.autoencoder_tiny.train;
  const label = (name: keyof typeof want.labels) => device.tensor(want.labels[name]);
  const inputs = [
    device.tensor(pattern(want.image_i), want.image_i.shape),
    label("valence_i"),
    label("arousal_i"),
    device.tensor(pattern(want.image_j), want.image_j.shape),
    label("valence_j"),
    label("arousal_j"),
  ] as const;
  try {
    const loss = model.loss(...inputs);
    const parts = await Promise.all(
      [loss.total, loss.valence, loss.arousal, loss.reconstruction].map((t) => t.item()),
    );
    const wantParts = [
      want.loss.total,
      want.loss.valence,
      want.loss.arousal,
      want.loss.reconstruction,
    ];
    assertClose(parts, wantParts, "loss (total, valence, arousal, reconstruction)", {
      atol: 1e-6,
      rtol: 1e-5,
    });
    assertSample(await loss.generated.toArray(), want.generated, 1e-5, "generated (batch stats)");

    const state = model.stateDict();
    for (const [name, bn] of Object.entries(want.batch_norm_after)) {
      const mean = state.get(`${name}.running_mean`) as Tensor;
      const variance = state.get(`${name}.running_var`) as Tensor;
      assertClose(await mean.toArray(), bn.running_mean, `${name}.running_mean`, { atol: 1e-5 });
      assertClose(await variance.toArray(), bn.running_var, `${name}.running_var`, { atol: 1e-5 });
      assert.equal(numBatchesTracked(model, name), BigInt(bn.num_batches_tracked), name);
    }

    await loss.total.backward();
    for (const t of Object.values(loss)) t.dispose();
    // Gradients span 1e-18 (conv biases before a BatchNorm: zero in exact arithmetic, float32
    // noise in practice) to 1, so each tensor's tolerance scales with its own largest gradient,
    // plus a floor from the largest gradient of all for those zeros.
    // make_parity.py picked a seed whose step keeps every live ReLU input and max-pool top-2 gap
    // at least 2e-5 from zero (want.kink_margin), so float32 noise cannot switch a branch.
    const largest = Math.max(...Object.values(want.grads).map((g) => g.max_abs));
    assert.equal(model.namedParameters().length, Object.keys(want.grads).length);
    for (const [name, param] of model.namedParameters()) {
      const g = want.grads[name];
      assert.ok(g, `${name}: PyTorch has this parameter`);
      assert.ok(param.grad, `${name}: got a gradient`);
      const atol = 1e-4 * g.max_abs + 1e-6 * largest;
      const values = await param.grad.toArray();
      assertMaxAbs(g.indices.map((i) => values[i]), g.values, atol, `grad ${name}`);
      assertClose(
        [values.reduce((s, v) => s + Math.abs(v), 0)],
        [g.abs_sum],
        `grad ${name} abs sum`,
        {
          atol: atol * values.length,
          rtol: 1e-4,
        },
      );
    }
  } finally {
    for (const t of inputs) t.dispose();
    model.dispose();
  }
});

/** Write the model's state dict, read it back into a fresh model; return both models' outputs. */
async function roundTrip<M extends nn.Module>(
  make: (seed: number) => M,
  source: string,
  forward: (model: M) => Promise<Float32Array>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "parity_" });
  const original = (await loadInto(make(0), source)).eval();
  const copy = make(7).eval();
  try {
    const path = join(dir, "copy.safetensors");
    await io.writeSafetensors(path, original.stateDict());
    await loadInto(copy, path);
    await assertStateEqualsFile(copy, source);
    assert.deepEqual(keyList(copy), keyList(original));
    const [a, b] = [await forward(original), await forward(copy)];
    assert.deepEqual(b, a, "outputs after the round trip are bit-identical");
  } finally {
    original.dispose();
    copy.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writeSafetensors of a loaded ResNet34 reads back bit-identical", async () => {
  const at64 = expected.resnet34_w16.eval["64"];
  await roundTrip(newResNet, RESNET_FILE, (m) => resnetForward(m, at64.input, false));
});

Deno.test("writeSafetensors of a loaded FaceAutoencoder reads back bit-identical", async () => {
  const input = expected.autoencoder_tiny.eval.input;
  await roundTrip(
    newAutoencoder,
    AUTOENCODER_FILE,
    (m) => run(() => m.forward(device.tensor(pattern(input), input.shape))),
  );
});

// ---------------------------------------------------------------------------------------------
// Local only: the full torchvision resnet34.

function torchvisionDir(): string | undefined {
  const name = "VA_TORCHVISION_RESNET34";
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get(name) || undefined;
}

const fullDir = torchvisionDir();

Deno.test({
  name: "full torchvision resnet34 (VA_TORCHVISION_RESNET34): eval output matches PyTorch",
  ignore: fullDir === undefined,
  async fn() {
    const dir = fullDir!;
    const want: {
      modulus: number;
      state_dict: KeyList;
      input: PatternInput;
      normalize_imagenet: boolean;
      output: number[];
      torch_float32_max_abs_diff: number;
    } = JSON.parse(await Deno.readTextFile(join(dir, "expected.json")));
    const model = new nn.ResNet34(device, { numOutputs: want.output.length / want.input.shape[0] });
    try {
      assert.deepEqual(keyList(model), want.state_dict);
      await loadInto(model, join(dir, "resnet34_fc2.safetensors"));
      model.eval();
      const out = await run(() => {
        const x = device.tensor(pattern(want.input, want.modulus), want.input.shape);
        return model.forward(want.normalize_imagenet ? nn.normalizeImagenet(x) : x);
      });
      const diff = assertMaxAbs(out, want.output, 1e-3, "full resnet34 output");
      console.log(
        `full resnet34: max abs difference ${diff.toExponential(2)} (PyTorch float32: ` +
          `${want.torch_float32_max_abs_diff.toExponential(2)}), output ${[...out].join(", ")}`,
      );
    } finally {
      model.dispose();
    }
  },
});

import assert from "node:assert/strict";
import {
  autotuneConv,
  captureConvShapes,
  convKey,
  fastestVariant,
  kernelsRevision,
  setAutotuneCachePath,
  setAutotuneEnabled,
  stillContending,
  tuneAtFirstUse,
  tunedConvVariant,
} from "../kernels/autotune.ts";
import * as F from "../nn/functional.ts";
import * as ops from "../kernels/ops.ts";
import { tidy } from "../nn/tensor.ts";
import { FirstStepTuner } from "../pipelines/training.ts";
import { randomArray, testDevice } from "./helpers.ts";

const device = await testDevice();
const backend = device.backend;
const VARIANTS = ["direct", "ubo", "ubo-any", "ubo-cols", "gemm", "gemm-wide", "gemm-flat"];

/** One conv forward + backward: [2, 5, 9, 9] -> 6 channels, 3x3, stride `stride`, padding 1. */
async function convStep(stride: number): Promise<void> {
  const x = device.tensor(randomArray(2 * 5 * 9 * 9, 1), [2, 5, 9, 9], { requiresGrad: true });
  const w = device.tensor(randomArray(6 * 5 * 9, 2), [6, 5, 3, 3], { requiresGrad: true });
  const loss = tidy(() => F.sum(F.conv2d(x, w, null, { stride, padding: 1 })));
  await loss.backward();
  await device.sync();
  for (const t of [loss, x, w]) t.dispose();
}

async function withTuner(run: (cache: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "autotune_" });
  setAutotuneEnabled(backend, true);
  setAutotuneCachePath(backend, `${dir}/autotune.json`);
  try {
    await run(`${dir}/autotune.json`);
  } finally {
    setAutotuneEnabled(backend, false);
    setAutotuneCachePath(backend, null);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("autotuner: captured shapes are timed once, cached on disk, then reused", async () => {
  await withTuner(async (cache) => {
    const stop = captureConvShapes(backend);
    await convStep(1);
    await convStep(1); // the same shape again: captured once
    await convStep(2);
    const shapes = stop();
    assert.equal(shapes.length, 2, JSON.stringify(shapes));
    assert.deepEqual(shapes.map((g) => g.stride).sort(), [1, 2]);

    const tuned = await autotuneConv(backend, shapes);
    assert.ok(tuned >= 2, `tuned ${tuned} (pass, shape) entries`);
    const saved = JSON.parse(await Deno.readTextFile(cache));
    const chosen: [string, "forward" | "backwardInput" | "backwardWeight", number, string][] = [];
    shapes.forEach((g, index) => {
      for (const pass of ["forward", "backwardInput", "backwardWeight"] as const) {
        const choice = tunedConvVariant(backend, pass, g);
        if (choice === null) continue; // a single applicable variant: nothing to tune
        assert.ok(VARIANTS.includes(choice), choice);
        assert.equal(saved.choices[convKey(pass, g)].variant, choice);
        const times = Object.values(saved.choices[convKey(pass, g)].ms) as number[];
        assert.ok(times.length >= 2 && times.every((ms) => ms > 0), JSON.stringify(times));
        chosen.push([convKey(pass, g), pass, index, choice]);
      }
    });
    assert.equal(chosen.length, tuned);
    assert.equal(await autotuneConv(backend, shapes), 0, "already tuned shapes are not re-timed");

    // Forget the choices in memory: they come back from the file.
    setAutotuneCachePath(backend, cache);
    for (const [key, pass, index, choice] of chosen) {
      assert.equal(tunedConvVariant(backend, pass, shapes[index]), choice, key);
    }
    assert.equal(saved.revision, kernelsRevision(backend));

    // A cache measured with other kernels (another revision) is ignored.
    await Deno.writeTextFile(
      cache,
      JSON.stringify({ ...saved, revision: kernelsRevision(backend) - 1 }),
    );
    setAutotuneCachePath(backend, cache);
    assert.equal(tunedConvVariant(backend, chosen[0][1], shapes[chosen[0][2]]), null);
    await Deno.writeTextFile(cache, JSON.stringify(saved));
    setAutotuneCachePath(backend, cache);

    // Disabled: no choices are used and nothing is tuned.
    setAutotuneEnabled(backend, false);
    assert.equal(tunedConvVariant(backend, "forward", shapes[0]), null);
    assert.equal(await autotuneConv(backend, shapes), 0);
  });
});

Deno.test("FirstStepTuner tunes what the first step used, once; off when disabled", async () => {
  // llvmpipe tunes at first use only when asked (VA_AUTOTUNE=1); the test task sets 0.
  const saved = Deno.env.get("VA_AUTOTUNE");
  Deno.env.set("VA_AUTOTUNE", "1");
  try {
    await firstStepTunerChecks();
  } finally {
    if (saved === undefined) Deno.env.delete("VA_AUTOTUNE");
    else Deno.env.set("VA_AUTOTUNE", saved);
  }
});

async function firstStepTunerChecks(): Promise<void> {
  await withTuner(async (cache) => {
    const tuner = new FirstStepTuner(device);
    tuner.before();
    await convStep(2);
    assert.ok(await tuner.after() > 0);
    assert.ok((await Deno.stat(cache)).isFile);
    tuner.before();
    await convStep(1);
    assert.equal(await tuner.after(), 0, "only the first step is captured");

    setAutotuneEnabled(backend, false);
    const off = new FirstStepTuner(device);
    off.before();
    await convStep(1);
    assert.equal(await off.after(), 0);
  });
}

Deno.test("tuneAtFirstUse: VA_AUTOTUNE=1 forces it, =0 stops it, default only on real GPUs", () => {
  const saved = Deno.env.get("VA_AUTOTUNE");
  setAutotuneEnabled(backend, true);
  try {
    Deno.env.set("VA_AUTOTUNE", "1");
    assert.equal(tuneAtFirstUse(backend), true);
    Deno.env.set("VA_AUTOTUNE", "0");
    assert.equal(tuneAtFirstUse(backend), false);
    Deno.env.delete("VA_AUTOTUNE");
    const cpu = /llvmpipe|lavapipe|swiftshader/i.test(backend.adapterName);
    assert.equal(tuneAtFirstUse(backend), !cpu);
  } finally {
    setAutotuneEnabled(backend, false);
    if (saved === undefined) Deno.env.delete("VA_AUTOTUNE");
    else Deno.env.set("VA_AUTOTUNE", saved);
  }
});

Deno.test("untuned defaults: gemm only on real GPUs, for deep small maps and long reductions and most layers outside the ubo family, wide for large products", () => {
  const layer = (batch: number, inC: number, outC: number, side: number) => ({
    batch,
    inC,
    outC,
    inH: side,
    inW: side,
    outH: side,
    outW: side,
    kH: 3,
    kW: 3,
    stride: 1,
    pad: 1,
  });
  // A ResNet34 layer at batch 32 ("same" padding for odd kernels).
  const resnetLayer = (inC: number, outC: number, side: number, kernel: number, stride: number) => {
    const pad = (kernel - 1) >> 1;
    const out = Math.floor((side + 2 * pad - kernel) / stride) + 1;
    return {
      batch: 32,
      inC,
      outC,
      inH: side,
      inW: side,
      outH: out,
      outW: out,
      kH: kernel,
      kW: kernel,
      stride,
      pad,
    };
  };
  type Rule = (pass: ops.ConvPass, g: ops.Conv2dGeometry) => boolean;
  const cases: [Rule, ops.ConvPass, ops.Conv2dGeometry, boolean][] = [
    // gemm: the paper autoencoder's 256->512 @8 and 64->128 @32 layers, the output layer 64->3
    // @64; the bench's 32->64 @32; the demo's 16->32 @8 at batch 32 (a short reduction).
    [ops.gemmPreferredOnGpu, "forward", layer(64, 256, 512, 8), true],
    [ops.gemmPreferredOnGpu, "forward", layer(64, 64, 128, 32), true],
    [ops.gemmPreferredOnGpu, "forward", layer(64, 32, 64, 32), false],
    [ops.gemmPreferredOnGpu, "backwardInput", layer(64, 256, 512, 8), true],
    [ops.gemmPreferredOnGpu, "backwardWeight", layer(64, 64, 128, 32), true],
    [ops.gemmPreferredOnGpu, "backwardWeight", layer(64, 64, 3, 64), false],
    [ops.gemmPreferredOnGpu, "backwardWeight", layer(32, 16, 32, 8), false],
    // gemm-wide: M fills 128 rows and the tiles fill the GPU (forward of 256->512 @8: 4 x 32
    // tiles; backward to its input: 2 x 32, too few); the weight from 2048 columns.
    [ops.gemmWidePreferredOnGpu, "forward", layer(64, 256, 512, 8), true],
    [ops.gemmWidePreferredOnGpu, "backwardInput", layer(64, 256, 512, 8), false],
    [ops.gemmWidePreferredOnGpu, "backwardInput", layer(64, 64, 128, 32), false],
    [ops.gemmWidePreferredOnGpu, "forward", layer(64, 64, 128, 32), true],
    [ops.gemmWidePreferredOnGpu, "backwardWeight", layer(64, 256, 128, 32), true],
    [ops.gemmWidePreferredOnGpu, "backwardWeight", layer(64, 64, 128, 32), false],
    // Outside the ubo family (ResNet34 at 224, batch 32): gemm but for the stem's forward and
    // backward to the input (3 input channels).
    [ops.gemmPreferredOnGpuOutsideUbo, "forward", resnetLayer(3, 64, 224, 7, 2), false],
    [ops.gemmPreferredOnGpuOutsideUbo, "backwardInput", resnetLayer(3, 64, 224, 7, 2), false],
    [ops.gemmPreferredOnGpuOutsideUbo, "backwardWeight", resnetLayer(3, 64, 224, 7, 2), true],
    [ops.gemmPreferredOnGpuOutsideUbo, "forward", resnetLayer(64, 128, 56, 3, 2), true],
    [ops.gemmPreferredOnGpuOutsideUbo, "backwardInput", resnetLayer(512, 512, 7, 3, 1), true],
    [ops.gemmPreferredOnGpuOutsideUbo, "forward", resnetLayer(128, 256, 28, 1, 2), true],
  ];
  for (const [rule, pass, g, expected] of cases) {
    assert.equal(rule(pass, g), expected, `${rule.name} ${pass} ${g.inC}->${g.outC} @${g.inH}`);
  }
  if (backend.isCpuRasterizer) {
    for (const pass of ["forward", "backwardInput", "backwardWeight"] as const) {
      assert.ok(!ops.conv2dVariant(backend, pass, layer(2, 256, 512, 8)).startsWith("gemm"));
    }
  }
});

Deno.test("fastestVariant: lowest median, failed variants left out, null when none ran", () => {
  const samples = new Map<ops.ConvVariant, number[]>([
    ["direct", [5, 1, 6]], // median 5 despite one fast outlier
    ["ubo", [3, 9, 4]], // median 4
    ["gemm", [1, 1, 1]], // fastest, but it failed in a later round
    ["ubo-any", []], // never ran
  ]);
  const failures = new Map<ops.ConvVariant, string>([["gemm", "pipeline creation failed"]]);
  assert.deepEqual(fastestVariant(samples, failures), {
    variant: "ubo",
    ms: { direct: 5, ubo: 4 },
  });
  assert.equal(fastestVariant(samples)?.variant, "gemm");
  assert.equal(fastestVariant(new Map([["ubo", [2]]]), new Map([["ubo", "lost"]])), null);
});

Deno.test("stillContending: variants within the factor of the fastest first time, failed ones out", () => {
  const samples = new Map<ops.ConvVariant, number[]>([
    ["direct", [9.5]], // 2.4x the fastest first time: not timed again
    ["ubo", [4, 9]], // fastest first time (its later times do not matter)
    ["ubo-cols", [8]], // exactly 2x: kept
    ["gemm", []], // failed in the first round
  ]);
  assert.deepEqual(stillContending(samples, 2), ["ubo", "ubo-cols"]);
  assert.deepEqual(stillContending(samples, 3), ["direct", "ubo", "ubo-cols"]);
});

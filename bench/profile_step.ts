/**
 * Profile one training step of the demo's two models: the "tiny" face autoencoder (8-16-16-32,
 * decoder conditioned with (v, a) maps, 64x64, batch 32) and ResNet34 at width 1/8 on 64x64
 * inputs (batch 32). Prints wall time per step, then each kernel family's share of one step from
 * GPU timestamps (one timestamped pass per dispatch; needs timestamp-query). `--compare` first
 * runs each model with the round-3 defaults (kernels/ops.ts setRound3Defaults: no ubo-cols
 * conv kernels, 8-channel ubo blocks only, scalar row copies, unfused batch-norm passes, generic
 * 3x3 max-pool backward, one weight-gradient dispatch per block), no bind-group cache, one Adam
 * dispatch per parameter and unfused ReLUs (Sequential, ResNet blocks), then the current.
 *
 * With `--compare` the wall times of the two configurations are first measured interleaved (step
 * by step, `--ab-steps` each, median), which is robust to the shared machine's drifting load.
 *
 * `--tune` instead profiles each model with the untuned defaults, then captures one step's conv
 * shapes, autotunes them (kernels/autotune.ts, as the training loops do at their first step; the
 * choices go to the on-disk cache) and profiles again.
 *
 *   deno run -A bench/profile_step.ts [--batch 32] [--steps 3] [--only ae|resnet] [--top 25] [--detail]
 *     (--detail: also every dispatch in recording order, with its grid)
 *     [--ae-size tiny|demo|paper] [--conditioning maps|input] [--paper-loss]
 *     [--resnet-width 0.125] [--resnet-size 64]   (the paper's regressor: --resnet-width 1 --resnet-size 224)
 *     [--compare [--ab-steps 8] | --tune]
 *
 * The autoencoder's loss weighs its reconstruction by region maps, as the demo trains it;
 * `--paper-loss` takes the paper's plain MSE instead, as bench/step.ts measures it.
 */

import { Device } from "../nn/device.ts";
import * as F from "../nn/functional.ts";
import { Adam } from "../nn/optim.ts";
import { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import { type Tensor, tidy } from "../nn/tensor.ts";
import { setRound3Defaults } from "../kernels/ops.ts";
import { autotuneConv, captureConvShapes, setAutotuneEnabled } from "../kernels/autotune.ts";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const args = {
  batch: flag("batch"),
  steps: flag("steps"),
  only: flag("only"),
  top: flag("top"),
  stepsAB: Number(flag("ab-steps") ?? 8),
  aeSize: (flag("ae-size") ?? "tiny") as "tiny" | "demo" | "paper",
  conditioning: (flag("conditioning") ?? "maps") as "input" | "maps",
  paperLoss: Deno.args.includes("--paper-loss"),
  resnetWidth: Number(flag("resnet-width") ?? 1 / 8),
  resnetSize: Number(flag("resnet-size") ?? 64),
};
const batch = Number(args.batch ?? 32);
const steps = Number(args.steps ?? 3);
const top = Number(args.top ?? 25);
const detailed = Deno.args.includes("--detail");
const device = await Device.create();
const backend = device.backend;

/** The round-3 configuration (--compare): no ubo-cols default, per-parameter Adam, unfused ReLUs. */
interface Config {
  round3: boolean;
}

async function profile(name: string, makeStep: (c: Config) => () => Promise<void>): Promise<void> {
  if (Deno.args.includes("--tune")) {
    const step = makeStep({ round3: false });
    setAutotuneEnabled(backend, false);
    await profileOnce(`${name} [untuned defaults]`, step);
    setAutotuneEnabled(backend, true);
    const stop = captureConvShapes(backend);
    await step();
    await device.sync();
    const t0 = performance.now();
    const tuned = await autotuneConv(backend, stop());
    console.log(
      `\nautotuned ${tuned} (pass, shape) entries in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
    await profileOnce(`${name} [tuned]`, step);
    return;
  }
  if (!Deno.args.includes("--compare")) {
    await profileOnce(name, makeStep({ round3: false }));
    return;
  }
  // Interleaved A/B: the machine's load drifts, so alternate the two configurations step by step
  // and report the median of each, then profile each once.
  const configs = [{ round3: true }, { round3: false }];
  const labels = [`${name} [round 3 kernels]`, name];
  const steps = configs.map((c) => {
    setRound3Defaults(c.round3);
    return makeStep(c);
  });
  const run = async (k: number) => {
    setRound3Defaults(configs[k].round3);
    backend.cacheBindGroups = !configs[k].round3;
    await steps[k]();
    await device.sync();
  };
  for (const k of [0, 1, 0, 1]) await run(k); // warm-up: pipelines, pool
  const times: number[][] = [[], []];
  for (let s = 0; s < args.stepsAB; s++) {
    for (const k of s % 2 ? [1, 0] : [0, 1]) {
      const t0 = performance.now();
      await run(k);
      times[k].push(performance.now() - t0);
    }
  }
  const median = (t: number[]) => [...t].sort((a, c) => a - c)[Math.floor(t.length / 2)];
  console.log(
    `\n${name}: interleaved over ${args.stepsAB} steps each (median wall ms/step, incl. sync): ` +
      `round 3 ${median(times[0]).toFixed(0)}, now ${median(times[1]).toFixed(0)}`,
  );
  for (const k of [0, 1]) {
    setRound3Defaults(configs[k].round3);
    backend.cacheBindGroups = !configs[k].round3;
    await profileOnce(labels[k], steps[k]);
  }
  setRound3Defaults(false);
  backend.cacheBindGroups = true;
}

async function profileOnce(name: string, step: () => Promise<void>): Promise<void> {
  await step(); // warm-up: pipelines, autotuning, pool
  await step();
  await device.sync();
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await step();
  await device.sync();
  const ms = (performance.now() - t0) / steps;
  console.log(`\n${name}: ${ms.toFixed(0)} ms/step (wall, mean of ${steps})`);
  if (!backend.canProfile) return;
  backend.startProfile(4096, detailed);
  await step();
  const rows = await backend.stopProfile();
  const families = new Map<string, { ms: number; n: number }>();
  let total = 0;
  for (const { key, ms } of rows) {
    const f = families.get(key) ?? { ms: 0, n: 0 };
    f.ms += ms;
    f.n++;
    families.set(key, f);
    total += ms;
  }
  console.log(`GPU time of one step: ${total.toFixed(1)} ms over ${rows.length} dispatches`);
  if (detailed) {
    // In recording order, each with its grid: which layer a family's time belongs to.
    for (const { key, ms } of rows) console.log(`${ms.toFixed(2).padStart(8)} ms  ${key}`);
  }
  const sorted = [...families].sort((a, b) => b[1].ms - a[1].ms).slice(0, top);
  for (const [key, f] of sorted) {
    console.log(
      `${f.ms.toFixed(1).padStart(8)} ms ${(100 * f.ms / total).toFixed(1).padStart(5)}% ` +
        `${String(f.n).padStart(4)}x  ${key}`,
    );
  }
}

if (!args.only || args.only === "ae") {
  const x = device.rand([batch, 3, 64, 64], 3);
  const v = device.rand([batch], 4);
  const a = device.rand([batch], 5);
  const w = device.rand([batch, 3, 64, 64], 6);
  const { aeSize, conditioning } = args;
  await profile(`autoencoder ${aeSize} ${conditioning} 64x64 batch ${batch}`, (config) => {
    const model = new FaceAutoencoder(device, { size: aeSize, conditioning, seed: 1 });
    model.train();
    for (const s of [model.encoder, model.decoder]) s.fuseBatchNormRelu = !config.round3;
    const opt = new Adam(model.parameters(), { lr: 1e-3, foreach: !config.round3 });
    return async () => {
      const loss = tidy((): Tensor =>
        model.loss(x, v, a, x, a, v, args.paperLoss ? {} : { reconstructionWeights: w }).total
      );
      opt.zeroGrad();
      await loss.backward();
      opt.step();
      loss.dispose();
    };
  });
}

if (!args.only || args.only === "resnet") {
  const side = args.resnetSize;
  const x = device.rand([batch, 3, side, side], 7);
  const y = device.rand([batch, 2], 8);
  const width = args.resnetWidth === 1 / 8 ? "1/8" : String(args.resnetWidth);
  await profile(`resnet34 w${width} ${side}x${side} batch ${batch}`, (config) => {
    const model = new ResNet34(device, {
      width: args.resnetWidth,
      inputSize: side,
      seed: 1,
      fused: !config.round3,
    });
    model.train();
    const opt = new Adam(model.parameters(), { lr: 1e-3, foreach: !config.round3 });
    return async () => {
      const loss = tidy(() => F.mseLoss(model.forward(x), y));
      opt.zeroGrad();
      await loss.backward();
      opt.step();
      loss.dispose();
    };
  });
}

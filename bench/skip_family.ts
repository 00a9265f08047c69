/**
 * Upper bounds of what a fusion could buy: a training step timed with one family of kernels left
 * out (its dispatches are not recorded: wrong values, the same submits otherwise), alternating
 * with the whole step in one process, so the machine's drift falls on both alike (round 19).
 * Families are kernel names without flags (the profile's names up to "["); several joined by
 * commas are left out together. `+fill:N` instead adds N one-workgroup fills to every step: the
 * marginal cost of a tiny dispatch.
 *
 *   deno run -A bench/skip_family.ts [--model demo|regressor] [--rounds 9] FAMILY[,FAMILY...] ...
 *
 * `demo`: the demo-size face autoencoder's step (bench/step.ts faceStepSession, batch 32);
 * `regressor`: the V/A regressor's (ResNet34 w1/8 @64, batch 32, bench/step.ts
 * regressorStepSession). Prints, per family, the median ms per step and the median of the
 * rounds' ratios against the whole step. The values computed without a family are wrong, and a
 * family whose absence changes the numbers' range (zeros, NaNs) can change the others' speed: read
 * the ratios as bounds, then measure the real change with bench/ab_trees.ts.
 */

import { parseArgs } from "node:util";
import { faceStepSession, regressorStepSession } from "./step.ts";
import * as ops from "../kernels/ops.ts";
import { median } from "./harness.ts";

const { values: args, positionals } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "demo" },
    rounds: { type: "string", default: "9" },
  },
  allowPositionals: true,
});
if (positionals.length === 0) {
  console.error("usage: bench/skip_family.ts [--model demo|regressor] [--rounds 9] FAMILY ...");
  Deno.exit(2);
}

let extraFills = 0;
let scratch: GPUBuffer | null = null;
const addFills = () => {
  for (let i = 0; i < extraFills; i++) ops.fill(backend, scratch!, 16, 0);
};
const session = args.model === "regressor"
  ? await regressorStepSession(false)
  : await faceStepSession("demo", false);
const device = session.device;
// The fills go before the step's own dispatches, in the same submit.
const step = async () => {
  addFills();
  await session.step();
};
const backend = device.backend;
scratch = backend.pool.acquire(64);

const record = backend.dispatch.bind(backend);
let skipped: string[] = [];
backend.dispatch = (kernel, buffers, uniforms, workgroups) => {
  if (skipped.length && skipped.includes(kernel.key.split("[")[0])) return;
  record(kernel, buffers, uniforms, workgroups);
};

/** Milliseconds per step over 5 steps, after 2 more (the pool and bind groups of this setting). */
async function time(): Promise<number> {
  for (let i = 0; i < 2; i++) await step();
  await device.sync();
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await step();
  await device.sync();
  return (performance.now() - t0) / 5;
}

const settings = ["whole step", ...positionals];
const times = new Map(settings.map((s) => [s, [] as number[]]));
for (let round = 0; round < Number(args.rounds); round++) {
  for (const setting of settings) {
    extraFills = setting.startsWith("+fill:") ? Number(setting.slice(6)) : 0;
    skipped = setting === "whole step" || extraFills ? [] : setting.split(",");
    times.get(setting)!.push(await time());
  }
}
skipped = [];
extraFills = 0;
const whole = times.get("whole step")!;
console.log(
  `${args.model} step, ${args.rounds} rounds (median ms per step; ratio: median of rounds)`,
);
for (const setting of settings) {
  const t = times.get(setting)!;
  const label = setting === "whole step" || setting.startsWith("+fill:")
    ? setting
    : `without ${setting}`;
  console.log(
    `${label.padEnd(60)} ${median(t).toFixed(1).padStart(7)} ms  ${
      median(t.map((v, i) => v / whole[i])).toFixed(3)
    }`,
  );
}
session.dispose();

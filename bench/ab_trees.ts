/**
 * Same-process A/B of two source trees (round 15): both trees' engines are imported into one Deno
 * process (each with its own device), and their timings alternate round after round, so the
 * machine's drift (a third within minutes here) falls on both alike. For a change of ours, against
 * a worktree of the commit before it:
 *
 *   git worktree add -f /tmp/base HEAD
 *   deno run -A bench/ab_trees.ts --base /tmp/base [--what conv|upconv|step|regressor] [--pass forward]
 *     [--shapes '[[batch, inC, outC, side], ...]'] [--rounds 5]
 *   git worktree remove --force /tmp/base
 *
 * `conv`: a 3x3 conv pass of each shape ([batch, inC, outC, side]; default the demo autoencoder's
 * 64x64 layers and the reference 32->32 @64 at batch 64), with the variant the tree picks (or
 * `--variant`). `upconv`: the decoder's upsample x2 + conv (side = the source's). `step`: the
 * demo-size face autoencoder's training step (bench/step.ts faceStepSession: 10 steps per round,
 * batch 32; both trees need it), with the losses after the last round printed for both (equal
 * when a change keeps the arithmetic). `regressor`: the same for the V/A regressor's step
 * (bench/step.ts regressorStepSession: ResNet34 w1/8 @64, batch 32).
 */

import { parseArgs } from "node:util";
import { median } from "./harness.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    head: { type: "string" },
    what: { type: "string", default: "conv" },
    pass: { type: "string", default: "forward" },
    variant: { type: "string" },
    shapes: { type: "string" },
    rounds: { type: "string", default: "5" },
  },
});
if (!args.base) {
  throw new Error("ab_trees: --base DIR (a worktree of the commit to compare) is needed");
}
const trees: [string, string][] = [
  ["base", new URL(args.base.replace(/\/?$/, "/"), `file://${Deno.cwd()}/`).href],
  [
    "head",
    args.head
      ? new URL(args.head.replace(/\/?$/, "/"), `file://${Deno.cwd()}/`).href
      : new URL("../", import.meta.url).href,
  ],
];
const rounds = Number(args.rounds);
const what = args.what;
const pass = args.pass;
const shapes: [number, number, number, number][] = args.shapes
  ? JSON.parse(args.shapes)
  : what === "upconv"
  ? [[32, 32, 16, 4], [32, 16, 16, 8], [32, 16, 8, 16], [32, 8, 8, 32]]
  : [[32, 3, 8, 64], [32, 8, 16, 32], [32, 16, 8, 64], [32, 8, 3, 64], [64, 32, 32, 64]];

/** One tree's timed case: run it once (warm), then `time()` gives ms per call. */
interface Case {
  label: string;
  time(): Promise<number>;
  loss?: () => Promise<number>;
}

async function casesOf(root: string): Promise<Case[]> {
  if (what === "regressor") {
    const { regressorStepSession } = await import(`${root}bench/step.ts`);
    if (!regressorStepSession) {
      throw new Error(
        `${root}: bench/step.ts has no regressorStepSession (--what regressor needs trees from round 19 on)`,
      );
    }
    const session = await regressorStepSession(false);
    return [{
      label: "V/A regressor step (ResNet34 w1/8 @64, batch 32)",
      time: () => session.time(1),
      loss: () => session.loss(),
    }];
  }
  if (what === "step") {
    // The benchmark's own session (bench/step.ts), so both trees train exactly what it times.
    const { faceStepSession } = await import(`${root}bench/step.ts`);
    if (!faceStepSession) {
      throw new Error(
        `${root}: bench/step.ts has no faceStepSession (--what step needs trees from round 15's review on)`,
      );
    }
    const session = await faceStepSession("demo", false);
    return [{
      label: "demo-size face autoencoder step",
      time: () => session.time(1),
      loss: () => session.loss(),
    }];
  }
  const { Device } = await import(`${root}nn/device.ts`);
  const device = await Device.create();
  const ops = await import(`${root}kernels/ops.ts`);
  const { convGeometry } = await import(`${root}tests/helpers.ts`);
  const b = device.backend;
  const options = args.variant ? { variant: args.variant } : {};
  return shapes.map(([n, inC, outC, side]) => {
    const out = what === "upconv" ? 2 * side : side;
    const g = convGeometry(n, inC, outC, out, out);
    const [x, w, y] = [n * inC * side * side, outC * inC * 9, n * outC * out * out].map((k) =>
      b.pool.acquire(k * 4)
    );
    const up = what === "upconv";
    const record = () =>
      pass === "forward"
        ? (up ? ops.upsampleConv2dForward : ops.conv2dForward)(b, x, w, null, y, g, options)
        : pass === "backwardInput"
        ? (up ? ops.upsampleConv2dBackwardInput : ops.conv2dBackwardInput)(b, y, w, x, g, options)
        : (up ? ops.upsampleConv2dBackwardWeight : ops.conv2dBackwardWeight)(
          b,
          y,
          x,
          w,
          g,
          options,
        );
    // About 300 ms of work per timing at ~30 GFLOP/s (sub-pixel: 4 of the 9 taps).
    const flops = 2 * n * inC * outC * 9 * out * out * (up ? 4 / 9 : 1);
    const reps = Math.max(2, Math.round(300 / (flops / 30e6)));
    return {
      label: `${what} ${pass} ${inC}->${outC} @${side} batch ${n}`,
      async time() {
        record();
        await b.sync();
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) record();
        await b.sync();
        return (performance.now() - t0) / reps;
      },
    };
  });
}

const cases = new Map<string, Case[]>();
for (const [name, root] of trees) cases.set(name, await casesOf(root));
const times = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const [name] of trees) {
    for (const c of cases.get(name)!) {
      const key = `${name}|${c.label}`;
      times.set(key, [...(times.get(key) ?? []), await c.time()]);
    }
  }
}
for (const c of cases.get("head")!) {
  const base = median(times.get(`base|${c.label}`)!), head = median(times.get(`head|${c.label}`)!);
  console.log(
    `${c.label}: base ${base.toFixed(2)} ms, head ${head.toFixed(2)} ms, head/base ${
      (head / base).toFixed(3)
    } (median of ${rounds})`,
  );
}
if (what === "step" || what === "regressor") {
  const losses = [];
  for (const [name] of trees) losses.push(`${name} ${await cases.get(name)![0].loss!()}`);
  console.log(`losses after the last round: ${losses.join(", ")}`);
}

/**
 * Where the CPU goes around a training step on a CPU rasterizer (llvmpipe), per thread, from
 * Linux's per-thread run times (/proc/self/task/<tid>/schedstat, nanoseconds):
 *
 * 1. The face autoencoder's step pipelined as training runs it (`--steps` steps, then one wait):
 *    milliseconds per step of each busy thread (llvmpipe's workers, lavapipe's queue thread, the JS
 *    thread) against the wall time: what the two cores leave idle.
 * 2. With `--replay`: one step's dispatches captured, then replayed one at a time (dispatch, wait),
 *    each thread's CPU per dispatch, the costliest first. A dispatch whose queue-thread time runs to
 *    milliseconds is being compiled again (bench/README.md round 17: lavapipe inlines uniforms that
 *    decide branches and recompiles; llvmpipe evicts compiled variants over its budget).
 *
 *   deno run -A bench/dispatch_cpu.ts [--size demo|paper|regressor] [--steps 30] [--replay] [--top 20]
 *
 * `--size regressor` takes the V/A regressor's step (ResNet34 w1/8 @64, batch 32) instead.
 *
 * Thread names are not reliable (Deno's runtime threads all show as "deno" or "tokio-runtime-w"),
 * so threads are listed by id with their share; the replay names the thread with the third-largest
 * total (after llvmpipe's two workers on a 2-core machine) as the queue thread.
 */

import { parseArgs } from "node:util";
import type { KernelSource } from "../kernels/backend.ts";
import { faceStepSession, regressorStepSession } from "./step.ts";

const { values: args } = parseArgs({
  options: {
    size: { type: "string", default: "demo" },
    steps: { type: "string", default: "30" },
    replay: { type: "boolean", default: false },
    top: { type: "string", default: "20" },
  },
});
const size = args.size === "paper" ? "paper" : args.size === "regressor" ? "regressor" : "demo";
const steps = Number(args.steps);
const top = Number(args.top);

/** Run time in nanoseconds of each thread of this process, by thread id. */
function threadTimes(): Map<string, number> {
  const times = new Map<string, number>();
  for (const entry of Deno.readDirSync("/proc/self/task")) {
    try {
      const [run] = Deno.readTextFileSync(`/proc/self/task/${entry.name}/schedstat`).split(" ");
      times.set(entry.name, Number(run));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return times;
}

/** Milliseconds each thread ran between two snapshots, busiest first. */
function busy(before: Map<string, number>, after: Map<string, number>): [string, number][] {
  return [...after].map(([tid, ns]) =>
    [tid, (ns - (before.get(tid) ?? 0)) / 1e6] as [string, number]
  )
    .filter(([, ms]) => ms > 0).sort((a, b) => b[1] - a[1]);
}

const session = size === "regressor"
  ? await regressorStepSession(false)
  : await faceStepSession(size, false);
const backend = session.device.backend;
const main = String(Deno.pid);
await session.time(1);

// 1. Pipelined steps.
const before = threadTimes();
const t0 = performance.now();
const msPerStep = await session.time(Math.max(1, Math.round(steps / session.steps)));
const wall = performance.now() - t0;
const after = threadTimes();
const blocks = Math.max(1, Math.round(steps / session.steps));
const timed = blocks * session.steps;
console.log(
  `${size === "regressor" ? "V/A regressor" : `${size}-size`} step, batch ${session.batch}: ${
    msPerStep.toFixed(1)
  } ms (fastest block); ` +
    `${timed} steps in ${wall.toFixed(0)} ms, ${(wall / timed).toFixed(1)} ms each`,
);
let total = 0;
for (const [tid, ms] of busy(before, after).slice(0, 6)) {
  total += ms;
  const label = tid === main ? " (JS)" : "";
  console.log(`  thread ${tid}${label}: ${(ms / timed).toFixed(1)} ms per step`);
}
const cores = navigator.hardwareConcurrency;
const idle = cores * wall - total;
console.log(
  `  ${cores} cores x wall = ${(cores * wall / timed).toFixed(1)} core-ms per step, busy ` +
    `${(total / timed).toFixed(1)}, idle ${(idle / timed).toFixed(1)} (${
      (100 * idle / (cores * wall)).toFixed(0)
    }%)`,
);

// 2. One step's dispatches, one at a time.
if (args.replay) {
  type Dispatch = Parameters<typeof backend.dispatch>;
  const captured: Dispatch[] = [];
  const record = backend.dispatch.bind(backend);
  backend.dispatch = (kernel, buffers, uniforms, workgroups) => {
    record(kernel, buffers, uniforms, workgroups);
    const bytes = uniforms
      ? new Uint8Array(
        uniforms.buffer.slice(uniforms.byteOffset, uniforms.byteOffset + uniforms.byteLength),
      )
      : null;
    captured.push([kernel, buffers, bytes, [...workgroups] as [number, number?, number?]]);
  };
  await session.loss();
  backend.dispatch = record;
  await backend.sync();
  const rows: { key: string; grid: string; threads: [string, number][]; wall: number }[] = [];
  // Twice, the first as a warm-up: the buffers hold the step's data, so the replay recomputes it.
  for (let pass = 0; pass < 2; pass++) {
    for (const dispatch of captured) {
      await backend.sync();
      const start = threadTimes();
      const w0 = performance.now();
      record(...dispatch);
      await backend.sync();
      const w = performance.now() - w0;
      if (pass === 1) {
        const kernel = dispatch[0] as KernelSource;
        const threads = busy(start, threadTimes()).filter(([tid]) => tid !== main);
        rows.push({ key: kernel.key, grid: JSON.stringify(dispatch[3]), threads, wall: w });
      }
    }
  }
  const totals = new Map<string, number>();
  for (const row of rows) {
    for (const [tid, ms] of row.threads) totals.set(tid, (totals.get(tid) ?? 0) + ms);
  }
  const ranked = [...totals].sort((a, b) => b[1] - a[1]).map(([tid]) => tid);
  const queue = ranked[cores] ?? ranked[ranked.length - 1];
  console.log(
    `\n${rows.length} dispatches replayed one at a time; queue thread taken to be ${queue}; ` +
      `queue-thread ms, the workers' ms, wall ms (with a wait):`,
  );
  const ms = (row: (typeof rows)[number], tid: string) =>
    row.threads.find(([t]) => t === tid)?.[1] ?? 0;
  rows.sort((a, b) => ms(b, queue) - ms(a, queue));
  for (const row of rows.slice(0, top)) {
    const workers = ranked.slice(0, cores).map((tid) => ms(row, tid).toFixed(2)).join(" ");
    console.log(
      `  ${ms(row, queue).toFixed(2).padStart(6)}  [${workers}]  ${row.wall.toFixed(1)}  ` +
        `${row.key} ${row.grid}`,
    );
  }
}
session.dispose();

/**
 * What one load costs on this adapter, in multiply-adds: each thread runs 256 iterations of 8
 * vec4 FMAs whose second operand is a register, a uniform-buffer vec4 at a workgroup-uniform
 * address, a storage vec4 at a workgroup-uniform address, or a storage vec4 at a per-lane address
 * (every FMA waits for its load, so the kernels are load-bound). Best of 3 interleaved rounds.
 *
 *   deno run -A bench/load_probe.ts
 */
import { Backend } from "../kernels/backend.ts";
import { declareBindings, kernel, Uniforms } from "../kernels/wgsl/common.ts";
import { fenceFloorMs, timeRecorded } from "./harness.ts";

const b = await Backend.create();
const floor = await fenceFloorMs(b);
const threads = 16 * 1024;
const iters = 256;
const operand: Record<string, string> = {
  register: "c",
  ubo: "u[(i * 8u + K) & 4095u]",
  "ssbo uniform": "s[(i * 8u + K) & 4095u]",
  "ssbo per-lane": "s[(i * 8u + K + lid * 67u) & 4095u]",
};
const src = b.pool.acquire(4096 * 16);
const out = b.pool.acquire(threads * 16);
const results: Record<string, number[]> = {};
for (let round = 0; round < 3; round++) {
  for (const [name, expr] of Object.entries(operand)) {
    const body = Array.from(
      { length: 8 },
      (_, k) => `acc${k} = fma(acc${k}, ${expr.replaceAll("K", `${k}u`)}, d);`,
    ).join("\n    ");
    const source = kernel(
      "loadProbe",
      { op: name.replace(" ", "_") },
      ["uniform", "read", "readWrite"],
      `${
        declareBindings(
          [["u", "uniform", "array<vec4f, 4096>"], ["s", "read", "vec4f"], [
            "o",
            "readWrite",
            "vec4f",
          ]],
          "iters: u32, scale: f32,",
        )
      }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let index = wid.x * 64u + lid;
  let c = vec4f(params.scale);
  let d = vec4f(f32(lid) * 1e-3);
  ${Array.from({ length: 8 }, (_, k) => `var acc${k} = vec4f(f32(${k}));`).join("\n  ")}
  for (var i = 0u; i < params.iters; i = i + 1u) {
    ${body}
  }
  o[index] = ${Array.from({ length: 8 }, (_, k) => `acc${k}`).join(" + ")};
}`,
    );
    const u = new Uniforms(2).u32(iters).f32(0.999).bytes;
    const t = await timeRecorded(
      b,
      () =>
        b.dispatch(source, [{ buffer: src, offset: 0, size: 65536 }, src, out], u, [
          threads / 64,
          1,
          1,
        ]),
      floor,
      { targetMs: 200, rounds: 1 },
    );
    (results[name] ??= []).push(t.ms);
  }
}
const fmas = threads * iters * 8;
for (const [name, ms] of Object.entries(results)) {
  const best = Math.min(...ms);
  const perLoad = (best - Math.min(...results.register)) / (threads * iters * 8);
  const fmaMs = Math.min(...results.register) / (threads * iters * 8);
  console.log(
    `${name.padEnd(14)} ${best.toFixed(2)} ms  ${(fmas * 8 / best / 1e6).toFixed(1)} GFLOP/s` +
      (name === "register" ? "" : `  one load ~ ${(perLoad / fmaMs).toFixed(1)} vec4 FMAs`),
  );
}
b.destroy();

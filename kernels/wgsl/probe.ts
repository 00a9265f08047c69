/**
 * Probe kernels that measure an adapter's ceilings rather than compute anything a model needs:
 * the arithmetic counterpart of the copy kernel that measures memory bandwidth.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel } from "./common.ts";

/** vec4 accumulators per thread of the FMA probe (independent chains hide the FMA latency). */
export const FMA_PROBE_CHAINS = 32;
/** Threads per workgroup of the FMA probe. */
export const FMA_PROBE_WORKGROUP = 64;

/**
 * Register-only multiply-add throughput: thread t runs FMA_PROBE_CHAINS vec4 chains
 * acc = acc * m + a for `iterations` steps, starting from acc = (t % 7 + 1) * 0.01 * (chain + 1),
 * and writes the sum of all accumulator components to out[t]. No loads inside the loop, so the
 * time is the arithmetic ceiling: 8 * FMA_PROBE_CHAINS * iterations flops per thread.
 * Uniforms: threads, iterations, m, a.
 */
export function fmaProbeKernel(): KernelSource {
  const chains = Array.from({ length: FMA_PROBE_CHAINS }, (_, k) => k);
  return kernel(
    "fmaProbe",
    {},
    ["readWrite"],
    `${declareBindings([["out", "readWrite"]], "threads: u32, iterations: u32, m: f32, a: f32,")}
@compute @workgroup_size(${FMA_PROBE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * ${FMA_PROBE_WORKGROUP}u + lid;
  if (t >= params.threads) { return; }
  let start = f32(t % 7u + 1u) * 0.01;
  let m = vec4f(params.m);
  let a = vec4f(params.a);
  ${chains.map((k) => `var acc${k} = vec4f(start * ${k + 1}.0);`).join("\n  ")}
  for (var i = 0u; i < params.iterations; i = i + 1u) {
    ${chains.map((k) => `acc${k} = fma(acc${k}, m, a);`).join("\n    ")}
  }
  var total = vec4f(0.0);
  ${chains.map((k) => `total = total + acc${k};`).join("\n  ")}
  out[t] = total.x + total.y + total.z + total.w;
}`,
  );
}

/** Reductions: sums over the outer and inner axes of [outer, mid, inner], and over one axis. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, WORKGROUP_SIZE, workgroupReduce } from "./common.ts";

/**
 * The summed term of a reduction at element e and its input bindings: x, (x - y)^2 with
 * `squaredDiff`, times w with `weighted` (a weighted squared error); vec4s with `vec4`.
 */
function summedTerm(family: string, squaredDiff: boolean, vec4: boolean, weighted: boolean) {
  if (weighted && !squaredDiff) throw new Error(`${family}: weighted needs squaredDiff`);
  const type = vec4 ? "vec4f" : "f32";
  const inputs: [string, "read", string][] = [["x", "read", type]];
  if (squaredDiff) inputs.push(["y", "read", type]);
  if (weighted) inputs.push(["w", "read", type]);
  const term = weighted
    ? "(x[e] - y[e]) * (x[e] - y[e]) * w[e]"
    : squaredDiff
    ? "(x[e] - y[e]) * (x[e] - y[e])"
    : "x[e]";
  return { inputs, term };
}

/**
 * out[m] = scale * sum over o < outer, k < inner of f(x[(o * mid + m) * inner + k]), one workgroup
 * per m (grid x * y >= mid). Flat indices >= total are skipped, so a flat array can be cut into
 * fixed-size rows with a short last row. f is x, or (x - y)^2 with `squaredDiff`, times w with
 * `weighted` (a weighted squared error). Uniforms: outer, mid, inner, total, scale. With `vec4`
 * x (and y, w) are read as vec4s and inner and total count vec4s (both multiples of 4 elements).
 */
export function reduceMiddleKernel(
  squaredDiff: boolean,
  vec4 = false,
  weighted = false,
): KernelSource {
  const { inputs, term } = summedTerm("reduceMiddleKernel", squaredDiff, vec4, weighted);
  const flags: Record<string, boolean> = vec4 ? { squaredDiff, vec4 } : { squaredDiff };
  if (weighted) flags.weighted = true;
  return kernel(
    "reduceMiddle",
    flags,
    [...inputs.map(() => "read" as const), "readWrite"],
    `${
      declareBindings(
        [...inputs, ["out", "readWrite", "f32"]],
        "outer: u32, mid: u32, inner: u32, total: u32, scale: f32,",
      )
    }
var<workgroup> partial: array<f32, ${WORKGROUP_SIZE}>;
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let m = wid.y * nwg.x + wid.x;
  var acc = ${vec4 ? "vec4f(0.0)" : "0.0"};
  if (m < params.mid) {
    let count = params.outer * params.inner;
    // (o, k) of t = o * inner + k, advanced incrementally (a division only when t crosses a row).
    var o = lid / params.inner;
    var k = lid - o * params.inner;
    for (var t = lid; t < count; t = t + ${WORKGROUP_SIZE}u) {
      let e = (o * params.mid + m) * params.inner + k;
      if (e < params.total) { acc = acc + ${term}; }
      k = k + ${WORKGROUP_SIZE}u;
      if (k >= params.inner) {
        let d = k / params.inner;
        o = o + d;
        k = k - d * params.inner;
      }
    }
  }
  partial[lid] = ${vec4 ? "dot(acc, vec4f(1.0))" : "acc"};
${workgroupReduce()}
  if (lid == 0u && m < params.mid) { out[m] = partial[0] * params.scale; }
}`,
  );
}

/**
 * partial[t] = sum of the terms of thread t's run of `runLength` consecutive elements (vec4s with
 * `vec4`): x, (x - y)^2 with `squaredDiff`, times w with `weighted`; runs past `total` end
 * early. No workgroup memory and no barrier: CPU rasterizers run a barrier as a switch of every
 * SIMD group of the workgroup, and a full reduction of 393K floats in workgroups of 4096 (6
 * barriers each) took twice the time of copying them. Uniforms: runs, runLength, total.
 */
export function sumRunsKernel(squaredDiff: boolean, vec4: boolean, weighted = false): KernelSource {
  const { inputs, term } = summedTerm("sumRunsKernel", squaredDiff, vec4, weighted);
  const flags: Record<string, boolean> = { squaredDiff, vec4 };
  if (weighted) flags.weighted = true;
  return kernel(
    "sumRuns",
    flags,
    [...inputs.map(() => "read" as const), "readWrite"],
    `${
      declareBindings(
        [...inputs, ["partial", "readWrite", "f32"]],
        "runs: u32, runLength: u32, total: u32,",
      )
    }
${linearMain()}
  if (index >= params.runs) { return; }
  let first = index * params.runLength;
  let last = min(first + params.runLength, params.total);
  var acc = ${vec4 ? "vec4f(0.0)" : "0.0"};
  for (var e = first; e < last; e = e + 1u) {
    acc = acc + ${term};
  }
  partial[index] = ${vec4 ? "dot(acc, vec4f(1.0))" : "acc"};
}`,
  );
}

/**
 * out[o * inner + k] = scale * sum over r < length of x[(o * length + r) * inner + k]: one thread
 * per output, for short reductions with many outputs (split-K partial sums, pooling).
 * Uniforms: outer, length, inner, scale.
 */
export function reduceAxisKernel(): KernelSource {
  return kernel(
    "reduceAxis",
    {},
    ["read", "readWrite"],
    `${
      declareBindings(
        [["x", "read"], ["out", "readWrite"]],
        "outer: u32, length: u32, inner: u32, scale: f32,",
      )
    }
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let index = (wid.y * nwg.x + wid.x) * ${WORKGROUP_SIZE}u + lid;
  if (index >= params.outer * params.inner) { return; }
  let o = index / params.inner;
  let k = index - o * params.inner;
  var acc = 0.0;
  var e = o * params.length * params.inner + k;
  for (var r = 0u; r < params.length; r = r + 1u) {
    acc = acc + x[e];
    e = e + params.inner;
  }
  out[index] = acc * params.scale;
}`,
  );
}

/** Reductions: sums over the outer and inner axes of [outer, mid, inner], and over one axis. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, WORKGROUP_SIZE, workgroupReduce } from "./common.ts";

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
  if (weighted && !squaredDiff) throw new Error("reduceMiddleKernel: weighted needs squaredDiff");
  const type = vec4 ? "vec4f" : "f32";
  const inputs: [string, "read", string][] = [["x", "read", type]];
  if (squaredDiff) inputs.push(["y", "read", type]);
  if (weighted) inputs.push(["w", "read", type]);
  const term = weighted
    ? "(x[e] - y[e]) * (x[e] - y[e]) * w[e]"
    : squaredDiff
    ? "(x[e] - y[e]) * (x[e] - y[e])"
    : "x[e]";
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

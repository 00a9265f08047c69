/**
 * Batch normalization over [N, C, spatial]: per-channel statistics (one workgroup per channel,
 * two passes for a stable variance), the normalize-and-scale pass, and the backward.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, WORKGROUP_SIZE, workgroupReduce } from "./common.ts";

const STATS_UNIFORMS = "batch: u32, channels: u32, spatial: u32, eps: f32, momentum: f32,";

/** Loop over the samples of channel c, accumulating `term` (uses e = flat index). */
function channelLoop(term: string, accumulators: string): string {
  return `  if (c < params.channels) {
    let count = params.batch * params.spatial;
    for (var t = lid; t < count; t = t + ${WORKGROUP_SIZE}u) {
      let n = t / params.spatial;
      let e = (n * params.channels + c) * params.spatial + (t - n * params.spatial);
      ${term}
    }
  }
${accumulators}`;
}

/**
 * Batch statistics: mean[c] and invStd[c] = 1/sqrt(biased var + eps); with `updateRunning` also
 * runningMean/runningVar updated in place with the unbiased variance (PyTorch's convention).
 * One workgroup per channel.
 */
export function batchNormStatsKernel(updateRunning: boolean): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [
    ["x", "read"],
    ["mean", "readWrite"],
    ["invStd", "readWrite"],
  ];
  if (updateRunning) bindings.push(["runningMean", "readWrite"], ["runningVar", "readWrite"]);
  return kernel(
    "batchNormStats",
    { updateRunning },
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, STATS_UNIFORMS)}
var<workgroup> partial: array<f32, ${WORKGROUP_SIZE}>;
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let c = wid.y * nwg.x + wid.x;
  let count = f32(params.batch * params.spatial);
  var acc = 0.0;
${channelLoop("acc = acc + x[e];", "  partial[lid] = acc;")}
${workgroupReduce()}
  let m = partial[0] / count;
  workgroupBarrier();
  acc = 0.0;
${channelLoop("let d = x[e] - m; acc = acc + d * d;", "  partial[lid] = acc;")}
${workgroupReduce()}
  if (lid == 0u && c < params.channels) {
    let variance = partial[0] / count;
    mean[c] = m;
    invStd[c] = inverseSqrt(variance + params.eps);
    ${
      updateRunning
        ? `let unbiased = variance * count / max(count - 1.0, 1.0);
    runningMean[c] = (1.0 - params.momentum) * runningMean[c] + params.momentum * m;
    runningVar[c] = (1.0 - params.momentum) * runningVar[c] + params.momentum * unbiased;`
        : ""
    }
  }
}`,
  );
}

/**
 * Fused ReLU (flag `relu`): the apply pass writes max(bn(x), 0); the backward kernels take that
 * output y as an extra binding right after x and use dy * (y > 0) as the upstream gradient.
 */
function reluFlag(
  flags: Record<string, boolean>,
  relu: boolean,
): Record<string, boolean> {
  return relu ? { ...flags, relu } : flags;
}

function reluOf(value: string, relu: boolean, zero: string): string {
  return relu ? `max(${value}, ${zero})` : value;
}

/**
 * Where a backward kernel finds the fused ReLU's mask: "output" reads y (the forward's result),
 * "input" recomputes x * scale + shift > 0 from x and the channel's statistics and affine
 * parameters, exactly as the forward computed y (one stream less to read, and y need not be kept).
 */
export type ReluMask = "output" | "input";

/** The upstream gradient at element `at`, masked by the fused ReLU when `relu` says how. */
function gradient(relu: boolean | ReluMask, zero: string, at = "e"): string {
  const mask = relu === true ? "output" : relu;
  if (mask === "output") return `select(${zero}, dy[${at}], y[${at}] > ${zero})`;
  if (mask === "input") {
    return `select(${zero}, dy[${at}], x[${at}] * reluScale + reluShift > ${zero})`;
  }
  return `dy[${at}]`;
}

/**
 * The per-channel scale and shift of the forward's normalize (batchNormForwardFusedKernel: scale =
 * invStd * weight, shift = bias - mean * scale, the same operations in the same order), for the
 * "input" ReLU mask. Needs c, mean, invStd (and weight, bias when affine) in scope.
 */
function reluMaskPrologue(affine: boolean): string {
  return `let reluScale = invStd[c]${affine ? " * weight[c]" : ""};
  let reluShift = ${affine ? "bias[c]" : "0.0"} - mean[c] * reluScale;`;
}

const APPLY_UNIFORMS = "n: u32, channels: u32, spatial: u32, eps: f32, count: f32,";

/** The per-channel inverse std: from invStd directly, or from a variance (eval mode). */
function invStdExpr(fromVariance: boolean): string {
  return fromVariance ? "inverseSqrt(stat[c] + params.eps)" : "stat[c]";
}

/**
 * y = (x - mean[c]) * invStd[c] * weight[c] + bias[c]. With `fromVariance` the second statistic is
 * a variance (eval mode with running stats). Threads: one per element.
 */
export function batchNormApplyKernel(
  affine: boolean,
  fromVariance: boolean,
  relu = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["x", "read"], ["mean", "read"], [
    "stat",
    "read",
  ]];
  if (affine) bindings.push(["weight", "read"], ["bias", "read"]);
  bindings.push(["y", "readWrite"]);
  return kernel(
    "batchNormApply",
    reluFlag({ affine, fromVariance }, relu),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let xhat = (x[index] - mean[c]) * ${invStdExpr(fromVariance)};
  y[index] = ${reluOf(affine ? "xhat * weight[c] + bias[c]" : "xhat", relu, "0.0")};
}`,
  );
}

/**
 * Tree reduction of two workgroup arrays of `size` f32 at once into their element 0 (every thread
 * of the workgroup must reach it: uniform control flow).
 */
function pairTreeReduce(first: string, second: string, size: number): string {
  return `  workgroupBarrier();
  for (var width = ${size / 2}u; width > 0u; width = width / 2u) {
    if (lid < width) {
      ${first}[lid] = ${first}[lid] + ${first}[lid + width];
      ${second}[lid] = ${second}[lid] + ${second}[lid + width];
    }
    workgroupBarrier();
  }`;
}

/**
 * Backward sums per channel: sums[c] = sum(dy), sums[channels + c] = sum(dy * xhat).
 * One workgroup per channel.
 */
export function batchNormBackwardSumsKernel(fromVariance: boolean, relu = false): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["dy", "read"], ["x", "read"]];
  if (relu) bindings.push(["y", "read"]);
  bindings.push(["mean", "read"], ["stat", "read"], ["sums", "readWrite"]);
  return kernel(
    "batchNormBackwardSums",
    reluFlag({ fromVariance }, relu),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, STATS_UNIFORMS)}
var<workgroup> partial: array<f32, ${WORKGROUP_SIZE}>;
var<workgroup> partialXhat: array<f32, ${WORKGROUP_SIZE}>;
@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let c = wid.y * nwg.x + wid.x;
  var sumDy = 0.0;
  var sumDyXhat = 0.0;
  var m = 0.0;
  var inv = 0.0;
  if (c < params.channels) {
    m = mean[c];
    inv = ${invStdExpr(fromVariance)};
  }
${
      channelLoop(
        `let g = ${gradient(relu, "0.0")}; sumDy = sumDy + g; ` +
          "sumDyXhat = sumDyXhat + g * (x[e] - m) * inv;",
        "  partial[lid] = sumDy;\n  partialXhat[lid] = sumDyXhat;",
      )
    }
${pairTreeReduce("partial", "partialXhat", WORKGROUP_SIZE)}
  if (lid == 0u && c < params.channels) {
    sums[c] = partial[0];
    sums[params.channels + c] = partialXhat[0];
  }
}`,
  );
}

/**
 * Backward to the input. Training: dx = w * invStd * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M),
 * since the batch statistics depend on x. Eval: dx = dy * w * invStd.
 */
export function batchNormBackwardInputKernel(
  training: boolean,
  affine: boolean,
  fromVariance: boolean,
  relu = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["dy", "read"], ["x", "read"]];
  if (relu) bindings.push(["y", "read"]);
  bindings.push(["mean", "read"], ["stat", "read"]);
  if (affine) bindings.push(["weight", "read"]);
  if (training) bindings.push(["sums", "read"]);
  bindings.push(["dx", "readWrite"]);
  const gain = affine ? "weight[c] * inv" : "inv";
  const body = training
    ? `let xhat = (x[index] - mean[c]) * inv;
  dx[index] = ${gain} * (g - sums[c] / params.count -
    xhat * sums[params.channels + c] / params.count);`
    : `dx[index] = g * ${gain};`;
  return kernel(
    "batchNormBackwardInput",
    reluFlag({ training, affine, fromVariance }, relu),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let inv = ${invStdExpr(fromVariance)};
  let g = ${gradient(relu, "0.0", "index")};
  ${body}
}`,
  );
}

// ---- "chunked" variant: per-channel reductions split over (chunk, channel) threads with vec4
// loads along the spatial axis, then a small per-channel finalize pass; vec4 element-wise passes.

/** WGSL element type and horizontal sum of the chunked kernels' vector width. */
function lane(vec4: boolean): { type: string; sum: (e: string) => string; zero: string } {
  return vec4
    ? { type: "vec4f", sum: (e) => `dot(${e}, vec4f(1.0))`, zero: "vec4f(0.0)" }
    : { type: "f32", sum: (e) => e, zero: "0.0" };
}

const CHUNK_UNIFORMS =
  "batch: u32, channels: u32, spatialV: u32, chunks: u32, chunkLength: u32, total: u32,";

/**
 * WGSL that runs `body` on each element `e` of chunk k of channel c (chunks are runs of
 * `chunkLength` elements in channel order, walked plane by plane).
 */
function chunkWalk(body: string, chunkLength = "params.chunkLength"): string {
  return `let first = k * ${chunkLength};
  let last = min(params.total, first + ${chunkLength});
  var n = first / params.spatialV;
  var s = first - n * params.spatialV;
  var plane = (n * params.channels + c) * params.spatialV;
  for (var f = first; f < last; f = f + 1u) {
    let e = plane + s;
    ${body}
    s = s + 1u;
    if (s == params.spatialV) {
      s = 0u;
      plane = plane + params.channels * params.spatialV;
    }
  }`;
}

/**
 * One thread per (chunk, channel), channel fastest: the thread walks chunk k of its channel's
 * [batch, spatialV] elements serially (no workgroup reduction: barriers are costly on CPU
 * rasterizers and the per-channel partials are few) and writes its two sums to
 * partial[(c * chunks + k) * 2 + {0, 1}] (with `sums` 1, its one sum to partial[c * chunks + k]).
 */
function chunkKernel(
  prologue: string,
  body: string,
  sums: 1 | 2 = 2,
  walk: (body: string) => string = chunkWalk,
): string {
  return `${linearMain(64)}
  if (index >= params.channels * params.chunks) { return; }
  let k = index / params.channels;
  let c = index - k * params.channels;
  ${prologue}
  ${walk(body)}
  ${
    sums === 2
      ? `let at = (c * params.chunks + k) * 2u;
  partial[at] = SUM_A;
  partial[at + 1u] = SUM_B;`
      : "partial[c * params.chunks + k] = SUM_A;"
  }
}`;
}

/**
 * Chunk partial sums of each channel, partial[c * chunks + k] = sum of x over chunk k (the conv
 * bias gradient's first pass; kernels/reductions.ts reduceAxis adds the chunks).
 */
export function channelSumPartialKernel(vec4: boolean): KernelSource {
  const l = lane(vec4);
  return kernel(
    "channelSumPartial",
    { vec4 },
    ["read", "readWrite"],
    `${declareBindings([["x", "read", l.type], ["partial", "readWrite"]], CHUNK_UNIFORMS)}
${chunkKernel(`var a = ${l.zero};`, "a = a + x[e];", 1).replace("SUM_A", l.sum("a"))}`,
  );
}

/**
 * Chunk partial sums for the batch statistics, shifted by the channel's first element K for
 * stability: partial[(c * chunks + k) * 2] = sum(x - K), [.. + 1] = sum((x - K)^2) over chunk k.
 */
export function batchNormStatsPartialKernel(vec4: boolean): KernelSource {
  const l = lane(vec4);
  const first = vec4 ? "x[c * params.spatialV].x" : "x[c * params.spatialV]";
  return kernel(
    "batchNormStatsPartial",
    { vec4 },
    ["read", "readWrite"],
    `${declareBindings([["x", "read", l.type], ["partial", "readWrite"]], CHUNK_UNIFORMS)}
${
      chunkKernel(
        `let shift = ${first};\n  var a = ${l.zero};\n  var q = ${l.zero};`,
        "let d = x[e] - shift; a = a + d; q = q + d * d;",
      ).replace("SUM_A", l.sum("a")).replace("SUM_B", l.sum("q"))
    }`,
  );
}

/**
 * Per-channel finalize of the chunked statistics: mean, invStd (and running stats) from the chunk
 * partials. Threads: one per channel. Uniforms: channels, chunks, count, eps, momentum.
 */
export function batchNormStatsFinalizeKernel(updateRunning: boolean): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [
    ["x", "read"],
    ["partial", "read"],
    ["mean", "readWrite"],
    ["invStd", "readWrite"],
  ];
  if (updateRunning) bindings.push(["runningMean", "readWrite"], ["runningVar", "readWrite"]);
  return kernel(
    "batchNormStatsFinalize",
    { updateRunning },
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        "channels: u32, chunks: u32, spatial: u32, count: f32, eps: f32, momentum: f32,",
      )
    }
${linearMain()}
  let c = index;
  if (c >= params.channels) { return; }
  var a = 0.0;
  var q = 0.0;
  for (var k = 0u; k < params.chunks; k = k + 1u) {
    let at = (c * params.chunks + k) * 2u;
    a = a + partial[at];
    q = q + partial[at + 1u];
  }
  let count = params.count;
  let m1 = a / count;
  let variance = max(q / count - m1 * m1, 0.0);
  let m = x[c * params.spatial] + m1;
  mean[c] = m;
  invStd[c] = inverseSqrt(variance + params.eps);
  ${
      updateRunning
        ? `let unbiased = variance * count / max(count - 1.0, 1.0);
  runningMean[c] = (1.0 - params.momentum) * runningMean[c] + params.momentum * m;
  runningVar[c] = (1.0 - params.momentum) * runningVar[c] + params.momentum * unbiased;`
        : ""
    }
}`,
  );
}

/**
 * Chunk partial sums for the backward: partial[(c * chunks + k) * 2] = sum(dy),
 * [.. + 1] = sum(dy * (x - mean)).
 */
export function batchNormBackwardPartialKernel(
  vec4: boolean,
  relu: boolean | ReluMask = false,
  affine = false,
): KernelSource {
  const l = lane(vec4);
  const fromInput = relu === "input";
  const bindings: [string, "read" | "readWrite", string][] = [
    ["dy", "read", l.type],
    ["x", "read", l.type],
  ];
  if (relu && !fromInput) bindings.push(["y", "read", l.type]);
  bindings.push(["mean", "read", "f32"]);
  if (fromInput) {
    bindings.push(["invStd", "read", "f32"]);
    if (affine) bindings.push(["weight", "read", "f32"], ["bias", "read", "f32"]);
  }
  bindings.push(["partial", "readWrite", "f32"]);
  return kernel(
    "batchNormBackwardPartial",
    fromInput
      ? { vec4, relu: "input", affine }
      : reluFlag({ vec4 }, relu === true || relu === "output"),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, CHUNK_UNIFORMS)}
${
      chunkKernel(
        `let m = mean[c];\n  var a = ${l.zero};\n  var q = ${l.zero};` +
          (fromInput ? `\n  ${reluMaskPrologue(affine)}` : ""),
        `let g = ${gradient(relu, l.zero)}; a = a + g; q = q + g * (x[e] - m);`,
      ).replace("SUM_A", l.sum("a")).replace("SUM_B", l.sum("q"))
    }`,
  );
}

/**
 * Per-channel finalize of the backward sums: sums[c] = sum(dy), sums[channels + c] =
 * sum(dy * (x - mean)) * invStd. Threads: one per channel. Uniforms: channels, chunks, eps.
 */
export function batchNormBackwardFinalizeKernel(fromVariance: boolean): KernelSource {
  return kernel(
    "batchNormBackwardFinalize",
    { fromVariance },
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["partial", "read"], ["stat", "read"], ["sums", "readWrite"]],
        "channels: u32, chunks: u32, eps: f32,",
      )
    }
${linearMain()}
  let c = index;
  if (c >= params.channels) { return; }
  var a = 0.0;
  var q = 0.0;
  for (var k = 0u; k < params.chunks; k = k + 1u) {
    let at = (c * params.chunks + k) * 2u;
    a = a + partial[at];
    q = q + partial[at + 1u];
  }
  sums[c] = a;
  sums[params.channels + c] = q * ${invStdExpr(fromVariance)};
}`,
  );
}

/** vec4 form of {@link batchNormApplyKernel} (spatial % 4 == 0). Uniforms: n4, channels, spatial4. */
export function batchNormApplyVec4Kernel(
  affine: boolean,
  fromVariance: boolean,
  relu = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite", string][] = [
    ["x", "read", "vec4f"],
    ["mean", "read", "f32"],
    ["stat", "read", "f32"],
  ];
  if (affine) bindings.push(["weight", "read", "f32"], ["bias", "read", "f32"]);
  bindings.push(["y", "readWrite", "vec4f"]);
  return kernel(
    "batchNormApplyVec4",
    reluFlag({ affine, fromVariance }, relu),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let scale = ${invStdExpr(fromVariance)}${affine ? " * weight[c]" : ""};
  let shift = ${affine ? "bias[c]" : "0.0"} - mean[c] * scale;
  y[index] = ${reluOf("x[index] * scale + shift", relu, "vec4f(0.0)")};
}`,
  );
}

/** vec4 form of {@link batchNormBackwardInputKernel} (spatial % 4 == 0). */
export function batchNormBackwardInputVec4Kernel(
  training: boolean,
  affine: boolean,
  fromVariance: boolean,
  relu = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite", string][] = [
    ["dy", "read", "vec4f"],
    ["x", "read", "vec4f"],
  ];
  if (relu) bindings.push(["y", "read", "vec4f"]);
  bindings.push(["mean", "read", "f32"], ["stat", "read", "f32"]);
  if (affine) bindings.push(["weight", "read", "f32"]);
  if (training) bindings.push(["sums", "read", "f32"]);
  bindings.push(["dx", "readWrite", "vec4f"]);
  const gain = affine ? "weight[c] * inv" : "inv";
  const body = training
    ? `let k1 = sums[c] / params.count;
  let k2 = sums[params.channels + c] / params.count * inv;
  dx[index] = gain * (g - k1 - (x[index] - mean[c]) * k2);`
    : `dx[index] = g * gain;`;
  return kernel(
    "batchNormBackwardInputVec4",
    reluFlag({ training, affine, fromVariance }, relu),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let inv = ${invStdExpr(fromVariance)};
  let gain = ${gain};
  let g = ${gradient(relu, "vec4f(0.0)", "index")};
  ${body}
}`,
  );
}

// ---- fused training passes: the per-channel finalize folded into the element pass ------------

/** Threads per workgroup of the fused passes (one workgroup per channel, or per segment of one). */
export const BN_FUSED_WORKGROUP = 64;

/**
 * Threads per workgroup of the "narrow" fused passes (one workgroup per channel on CPU rasterizers,
 * for channels of at most BN_NARROW_MOST elements: kernels/ops.ts): one SIMD group of llvmpipe's 8
 * lanes, whose barriers then switch no coroutines. Against 64 threads at batch 32 on llvmpipe: a
 * walked forward / backward pass on 32x32x4x4 took 160-220 us against 235-280, on 32x64x2x2 160
 * against 270-305, on 32x8x64x64 2.0-2.8 / 3.9 ms against 3.1-3.2 / 4.4-4.8; at batch 64 the
 * paper size's 64x64x64x64 took 1.4x longer (round 20).
 */
export const BN_NARROW_WORKGROUP = 8;

/**
 * One workgroup per channel c ({@link fusedHead}: every thread sums c's chunk partials), then
 * `prologue`, then each thread walks runs k = lid, lid + 64, ... of c with `body` (which sees the
 * channel's sums a and q). The default walk: the elements e, in `params.walkChunks` runs of
 * `params.walkLength` ({@link chunkWalk}); the partials are `params.chunks` per channel.
 * `segmented` (real GPUs): `params.segments` workgroups per channel, workgroup `seg` taking runs
 * seg * 64 + lid, stepping by segments * 64 (with runs of one element or item, neighbouring threads
 * touch neighbouring addresses); one workgroup per channel left a GPU with a few thousand threads
 * for the whole map.
 */
function fusedChunkKernel(
  prologue: string,
  body: string,
  walk: FusedWalk = ELEMENT_WALK,
  segmented = false,
  tiles = false,
  walked: WalkedSums | null = null,
  narrow = false,
): string {
  const workgroup = narrow && !segmented ? BN_NARROW_WORKGROUP : BN_FUSED_WORKGROUP;
  const [start, step] = segmented
    ? [`seg * ${BN_FUSED_WORKGROUP}u + lid`, `params.segments * ${BN_FUSED_WORKGROUP}u`]
    : ["lid", `${workgroup}u`];
  const head = walked
    ? walkedHead(walk, walked, workgroup)
    : segmented
    ? segmentedHead(walk.partials, tiles)
    : fusedHead(walk.partials, tiles, workgroup);
  return `${head}
  ${prologue}
  for (var k = ${start}; k < ${walk.runs}; k = k + ${step}) {
    ${walk.run(body)}
  }
}`;
}

/**
 * A fused kernel's flags: `flags`, then those of the form's `optional` flags that are true
 * (segmented walk, a conv's tile partials, the walked form), so the other forms keep their keys.
 */
function formFlags(
  flags: Record<string, string | number | boolean>,
  optional: Record<string, boolean>,
): Record<string, string | number | boolean> {
  const out = { ...flags };
  for (const [name, on] of Object.entries(optional)) if (on) out[name] = true;
  return out;
}

/** Which thread of a fused pass writes the channel's statistics or sums: one per channel. */
function channelWriter(segmented: boolean): string {
  return segmented ? "lid == 0u && seg == 0u" : "lid == 0u";
}

/** The uniform block of a fused pass: `fields`, then the segment count when `segmented`. */
function fusedUniformFields(fields: string, segmented: boolean): string {
  return segmented ? `${fields} segments: u32,` : fields;
}

/** How a fused pass walks a channel: its partials' count, its runs' count, one run's WGSL. */
interface FusedWalk {
  partials: string;
  runs: string;
  run: (body: string) => string;
}

const ELEMENT_WALK: FusedWalk = {
  partials: "params.chunks",
  runs: "params.walkChunks",
  run: (body) => chunkWalk(body, "params.walkLength"),
};

/**
 * The opening of a fused pass, up to the channel's sums a and q: one workgroup per channel c, each
 * of whose threads sums the `chunks` chunk partials of c itself, in the same order (so all hold
 * the same sums). A workgroup tree reduction took a barrier per level, which CPU rasterizers run as
 * coroutine switches of every SIMD group: with 256 channels of 8x8 at batch 64 the channel's few
 * partials cost less to read than the barriers.
 */
function fusedHead(chunks: string, tiles = false, workgroup = BN_FUSED_WORKGROUP): string {
  return `@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  if (wid.y * nwg.x + wid.x >= params.channels) { return; }
  let c = wid.y * nwg.x + wid.x;
  var a = 0.0;
  var q = 0.0;${tiles ? `\n  ${tileReference(chunks)}` : ""}
  for (var k = 0u; k < ${chunks}; k = k + 1u) {
    ${addPartial(chunks, tiles)}
  }`;
}

/**
 * How a walked fused pass finds its channel's sums itself: `prologue` (in a scope of its own)
 * declares the lane sums partA and partQ (of type `type`) and what `body` needs, and `body` adds
 * one element's or item's terms to them; they are the partial pass's terms.
 */
interface WalkedSums {
  prologue: string;
  body: string;
  type: string;
}

/**
 * The opening of a walked fused pass (CPU rasterizers): one workgroup per channel c whose threads
 * first walk the channel as the pass's body will, adding the partial pass's terms, then add their
 * sums in workgroup memory (thread 0, between two barriers), so all hold the channel's a and q;
 * the body's walk then finds the channel in the cache. One dispatch instead of two: on llvmpipe a
 * dispatch in a training step costs about 60 us besides its work, and the partial pass's threads
 * read the whole map, which the body then read again from memory.
 */
function walkedHead(walk: FusedWalk, sums: WalkedSums, workgroup = BN_FUSED_WORKGROUP): string {
  const sum = (v: string) => (sums.type === "vec4f" ? `dot(${v}, vec4f(1.0))` : v);
  return `var<workgroup> headA: array<f32, ${workgroup}>;
var<workgroup> headQ: array<f32, ${workgroup}>;
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  if (wid.y * nwg.x + wid.x >= params.channels) { return; }
  let c = wid.y * nwg.x + wid.x;
  {
    ${sums.prologue}
    for (var k = lid; k < ${walk.runs}; k = k + ${workgroup}u) {
      ${walk.run(sums.body)}
    }
    headA[lid] = ${sum("partA")};
    headQ[lid] = ${sum("partQ")};
  }
  workgroupBarrier();
  if (lid == 0u) {
    var totalA = 0.0;
    var totalQ = 0.0;
    for (var i = 0u; i < ${workgroup}u; i = i + 1u) {
      totalA = totalA + headA[i];
      totalQ = totalQ + headQ[i];
    }
    headA[0] = totalA;
    headQ[0] = totalQ;
  }
  workgroupBarrier();
  let a = headA[0];
  let q = headQ[0];`;
}

/**
 * Tile partials (written by a conv as it stores the map: kernels/wgsl/conv_ubo.ts
 * storeStatistics): vec4s (count, shift, sum(x - shift), sum((x - shift)^2)), each with its own
 * shift. Their sums are moved to the channel's first partial's shift, `reference`, which stands
 * for the channel's first element of the element partials.
 */
function tileReference(chunks: string): string {
  return `let reference = partial[c * ${chunks}].y;`;
}

/** Add partial k of channel c to a and q: element partials (pairs) or tile partials (vec4s). */
function addPartial(chunks: string, tiles: boolean): string {
  if (!tiles) {
    return `let at = (c * ${chunks} + k) * 2u;
    a = a + partial[at];
    q = q + partial[at + 1u];`;
  }
  return `let s = partial[c * ${chunks} + k];
    let d = s.y - reference;
    a = a + s.z + s.x * d;
    q = q + s.w + d * (2.0 * s.z + s.x * d);`;
}

/**
 * {@link fusedHead} for `params.segments` workgroups per channel (real GPUs): workgroup id = c *
 * segments + seg; its threads sum every 64th of the channel's chunk partials, then add their sums
 * in a workgroup tree (barriers are cheap on GPUs), so all hold the channel's sums a and q.
 */
function segmentedHead(chunks: string, tiles = false): string {
  return `var<workgroup> headA: array<f32, ${BN_FUSED_WORKGROUP}>;
var<workgroup> headQ: array<f32, ${BN_FUSED_WORKGROUP}>;
@compute @workgroup_size(${BN_FUSED_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let id = wid.y * nwg.x + wid.x;
  if (id >= params.channels * params.segments) { return; }
  let c = id / params.segments;
  let seg = id - c * params.segments;
  var a = 0.0;
  var q = 0.0;${tiles ? `\n  ${tileReference(chunks)}` : ""}
  for (var k = lid; k < ${chunks}; k = k + ${BN_FUSED_WORKGROUP}u) {
    ${addPartial(chunks, tiles)}
  }
  headA[lid] = a;
  headQ[lid] = q;
${pairTreeReduce("headA", "headQ", BN_FUSED_WORKGROUP)}
  a = headA[0];
  q = headQ[0];`;
}

/**
 * The fused passes' uniforms: the partial pass's chunking (its `chunks` partials per channel are
 * summed first), count, eps, momentum, then the element walk's own chunking (walkChunks runs of
 * walkLength elements: up to one per thread of the workgroup, so that every thread works even
 * where the partial pass cut a channel into a few chunks).
 */
const FUSED_UNIFORMS = CHUNK_UNIFORMS +
  " count: f32, eps: f32, momentum: f32, walkChunks: u32, walkLength: u32,";

/**
 * Training-mode forward after {@link batchNormStatsPartialKernel}: mean and invStd of each channel
 * from its chunk partials (written, with the running statistics when `updateRunning`, by thread 0)
 * and y = x * scale + shift (relu'd with `relu`) over the channel, in one pass. Threads: one
 * workgroup of 64 per channel. Uniforms: the chunking of the partial pass, count, eps, momentum.
 * With `tiles` the partials are the tile partials of the conv that wrote x (kernels/wgsl/
 * conv_ubo.ts storeStatistics; `chunks` of them per channel) and no partial pass ran. With
 * `residual` (bound after x) y = x * scale + shift + residual, then the ReLU: a ResNet block's
 * second batch norm, residual add and ReLU in one pass.
 */
export function batchNormForwardFusedKernel(
  vec4: boolean,
  affine: boolean,
  relu: boolean,
  updateRunning: boolean,
  segmented = false,
  tiles = false,
  walked = false,
  narrow = false,
  residual = false,
): KernelSource {
  const l = lane(vec4);
  const bindings: [string, "read" | "readWrite", string][] = [["x", "read", l.type]];
  if (residual) bindings.push(["residual", "read", l.type]);
  if (!walked) bindings.push(["partial", "read", tiles ? "vec4f" : "f32"]);
  if (affine) bindings.push(["weight", "read", "f32"], ["bias", "read", "f32"]);
  bindings.push(["y", "readWrite", l.type], ["mean", "readWrite", "f32"], [
    "invStd",
    "readWrite",
    "f32",
  ]);
  if (updateRunning) {
    bindings.push(["runningMean", "readWrite", "f32"], ["runningVar", "readWrite", "f32"]);
  }
  const first = tiles ? "reference" : vec4 ? "x[c * params.spatialV].x" : "x[c * params.spatialV]";
  return kernel(
    "batchNormForwardFused",
    formFlags({ vec4, affine, relu, updateRunning }, {
      segmented,
      tiles,
      walked,
      narrow,
      residual,
    }),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, fusedUniformFields(FUSED_UNIFORMS, segmented))}
${
      fusedChunkKernel(
        statisticsPrologue(first, affine, updateRunning, segmented),
        `y[e] = ${
          reluOf(`x[e] * scale + shift${residual ? " + residual[e]" : ""}`, relu, l.zero)
        };`,
        ELEMENT_WALK,
        segmented,
        tiles,
        walked
          ? {
            prologue:
              `let shift = ${first};\n    var partA = ${l.zero};\n    var partQ = ${l.zero};`,
            body: "let d = x[e] - shift; partA = partA + d; partQ = partQ + d * d;",
            type: l.type,
          }
          : null,
        narrow,
      )
    }`,
  );
}

/**
 * From the channel's shifted sums a and q (and the shift `first`): mean and invStd (written with
 * the running statistics by thread 0), then the normalize's scale and shift.
 */
function statisticsPrologue(
  first: string,
  affine: boolean,
  updateRunning: boolean,
  segmented: boolean,
): string {
  return `let count = params.count;
  let m1 = a / count;
  let variance = max(q / count - m1 * m1, 0.0);
  let m = ${first} + m1;
  let inv = inverseSqrt(variance + params.eps);
  if (${channelWriter(segmented)}) {
    mean[c] = m;
    invStd[c] = inv;
    ${
    updateRunning
      ? `let unbiased = variance * count / max(count - 1.0, 1.0);
    runningMean[c] = (1.0 - params.momentum) * runningMean[c] + params.momentum * m;
    runningVar[c] = (1.0 - params.momentum) * runningVar[c] + params.momentum * unbiased;`
      : ""
  }
  }
  let scale = inv${affine ? " * weight[c]" : ""};
  let shift = ${affine ? "bias[c]" : "0.0"} - m * scale;`;
}

/**
 * The fused backward's start from the channel's sums a (of dy) and q (of dy * (x - mean)): the
 * weight and bias sums written by thread 0, the gain and the dx terms k1, k2.
 */
function backwardSumsPrologue(affine: boolean, segmented: boolean): string {
  return `let m = mean[c];
  let inv = invStd[c];
  if (${channelWriter(segmented)}) {
    sums[c] = a;
    sums[params.channels + c] = q * inv;
  }
  let gain = ${affine ? "weight[c] * inv" : "inv"};
  let k1 = a / params.count;
  let k2 = q * inv / params.count * inv;`;
}

/**
 * Training-mode backward to the input after {@link batchNormBackwardPartialKernel}: the channel's
 * sums (sum dy, sum dy * xhat; written to sums[c], sums[channels + c] by thread 0, for the weight
 * and bias gradients) and dx = w * invStd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M) over the
 * channel, in one pass. With `relu`, dy is masked by y > 0 (y bound after x). Threads: one
 * workgroup of 64 per channel. Uniforms: the chunking of the partial pass, count, eps, momentum.
 * With `residualGradient` the masked dy is also written to dresidual (bound last): the gradient
 * of the residual that {@link batchNormForwardFusedKernel}'s `residual` added before the ReLU.
 */
export function batchNormBackwardFusedKernel(
  vec4: boolean,
  affine: boolean,
  relu: boolean | ReluMask,
  segmented = false,
  walked = false,
  narrow = false,
  residualGradient = false,
): KernelSource {
  const l = lane(vec4);
  const fromInput = relu === "input";
  const bindings: [string, "read" | "readWrite", string][] = [
    ["dy", "read", l.type],
    ["x", "read", l.type],
  ];
  if (relu && !fromInput) bindings.push(["y", "read", l.type]);
  bindings.push(["mean", "read", "f32"], ["invStd", "read", "f32"]);
  if (affine) bindings.push(["weight", "read", "f32"]);
  if (affine && fromInput) bindings.push(["bias", "read", "f32"]);
  if (!walked) bindings.push(["partial", "read", "f32"]);
  bindings.push(["dx", "readWrite", l.type], ["sums", "readWrite", "f32"]);
  if (residualGradient) bindings.push(["dresidual", "readWrite", l.type]);
  return kernel(
    "batchNormBackwardFused",
    formFlags(
      { vec4, affine, relu: fromInput ? "input" : relu === true || relu === "output" },
      { segmented, walked, narrow, residual: residualGradient },
    ),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, fusedUniformFields(FUSED_UNIFORMS, segmented))}
${
      fusedChunkKernel(
        backwardSumsPrologue(affine, segmented) +
          (fromInput ? `\n  ${reluMaskPrologue(affine)}` : ""),
        `let g = ${gradient(relu, l.zero)};${residualGradient ? "\n      dresidual[e] = g;" : ""}
      dx[e] = gain * (g - k1 - (x[e] - m) * k2);`,
        ELEMENT_WALK,
        segmented,
        false,
        walked
          ? {
            prologue: `let m = mean[c];\n    var partA = ${l.zero};\n    var partQ = ${l.zero};` +
              (fromInput ? `\n    ${reluMaskPrologue(affine)}` : ""),
            body: `let g = ${gradient(relu, l.zero)}; partA = partA + g; ` +
              "partQ = partQ + g * (x[e] - m);",
            type: l.type,
          }
          : null,
        narrow,
      )
    }`,
  );
}

// ---- a 2x2 max-pool folded into the fused training passes (the encoder's BN, ReLU, max-pool) ---
//
// The passes walk "items": one column quad of a pair of rows (2 x 4 inputs, two pooling windows),
// so the forward writes only the pooled map and the backward reads the pooled gradient, finding
// each window's arg-max again from x (the forward's own operations, in its order). Needs an even
// height and width % 4 == 0.

/**
 * Uniforms of the pooled passes: the item chunking (chunks of chunkLength items, total items per
 * channel: a partial pass's chunks, or a fused pass's walk), the partials' chunk count (summed
 * first by the fused passes), then count, eps, momentum.
 */
const POOLED_UNIFORMS =
  "batch: u32, channels: u32, quadsW: u32, outH: u32, chunks: u32, chunkLength: u32, total: u32, statChunks: u32, count: f32, eps: f32, momentum: f32,";

/**
 * WGSL that runs `body` on each item of chunk k of channel c; body sees top and bottom (the vec4
 * indices of the two input rows) and o (the vec2 index of the two pooled outputs).
 */
function pooledWalk(body: string): string {
  return `let first = k * params.chunkLength;
  let last = min(params.total, first + params.chunkLength);
  let perImage = params.outH * params.quadsW;
  var image = first / perImage;
  let rest = first - image * perImage;
  var row = rest / params.quadsW;
  var quad = rest - row * params.quadsW;
  for (var f = first; f < last; f = f + 1u) {
    let plane = image * params.channels + c;
    let o = (plane * params.outH + row) * params.quadsW + quad;
    let top = (2u * (plane * params.outH + row)) * params.quadsW + quad;
    let bottom = top + params.quadsW;
    ${body}
    quad = quad + 1u;
    if (quad == params.quadsW) {
      quad = 0u;
      row = row + 1u;
      if (row == params.outH) {
        row = 0u;
        image = image + 1u;
      }
    }
  }`;
}

/** A fused pooled pass's walk: the partials' count in statChunks, the item runs in chunks. */
const POOLED_WALK: FusedWalk = {
  partials: "params.statChunks",
  runs: "params.chunks",
  run: pooledWalk,
};

/**
 * The gradient of relu-then-max-pool inside one window (a, b: top row; c, d: bottom row, after the
 * ReLU) for the window's upstream g: all of g to the first maximum (maxPool2x2Forward's rule: a
 * later value wins only if strictly greater), none when that maximum is 0 (the ReLU's mask).
 */
const WINDOW_GRADIENT = `fn windowGradient(a: f32, b: f32, c: f32, d: f32, g: f32) -> vec4f {
  var best = a;
  var at = 0u;
  if (b > best) { best = b; at = 1u; }
  if (c > best) { best = c; at = 2u; }
  if (d > best) { best = d; at = 3u; }
  let v = select(0.0, g, best > 0.0);
  return vec4f(select(0.0, v, at == 0u), select(0.0, v, at == 1u), select(0.0, v, at == 2u),
               select(0.0, v, at == 3u));
}`;

/** The upstream gradient of the item's two rows (gTop, gBottom), with xTop and xBottom loaded. */
function pooledGradient(): string {
  return `let xTop = x[top];
    let xBottom = x[bottom];
    let aTop = max(xTop * reluScale + reluShift, vec4f(0.0));
    let aBottom = max(xBottom * reluScale + reluShift, vec4f(0.0));
    let g = dy[o];
    let left = windowGradient(aTop.x, aTop.y, aBottom.x, aBottom.y, g.x);
    let right = windowGradient(aTop.z, aTop.w, aBottom.z, aBottom.w, g.y);
    let gTop = vec4f(left.x, left.y, right.x, right.y);
    let gBottom = vec4f(left.z, left.w, right.z, right.w);`;
}

/**
 * maxPool2x2(relu(batchNorm(x))) in training mode, after {@link batchNormStatsPartialKernel}: the
 * statistics as in {@link batchNormForwardFusedKernel} (from the statChunks partials), then each
 * item's two pooled values; the normalized map itself is never written. Threads: one workgroup
 * of 64 per channel. Uniforms: {@link POOLED_UNIFORMS}. With `tiles`, the statChunks partials are
 * a conv's tile partials, as in {@link batchNormForwardFusedKernel}.
 */
export function batchNormReluMaxPoolForwardKernel(
  affine: boolean,
  updateRunning: boolean,
  segmented = false,
  tiles = false,
  walked = false,
  narrow = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite", string][] = [["x", "read", "vec4f"]];
  if (!walked) bindings.push(["partial", "read", tiles ? "vec4f" : "f32"]);
  if (affine) bindings.push(["weight", "read", "f32"], ["bias", "read", "f32"]);
  bindings.push(["pooled", "readWrite", "vec2f"], ["mean", "readWrite", "f32"], [
    "invStd",
    "readWrite",
    "f32",
  ]);
  if (updateRunning) {
    bindings.push(["runningMean", "readWrite", "f32"], ["runningVar", "readWrite", "f32"]);
  }
  // The statistics partials were taken with the element chunking: their shift is the channel's
  // first element, x[c * spatial / 4].x.
  const first = tiles ? "reference" : "x[c * 2u * params.outH * params.quadsW].x";
  return kernel(
    "batchNormReluMaxPoolForward",
    formFlags({ affine, updateRunning }, { segmented, tiles, walked, narrow }),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, fusedUniformFields(POOLED_UNIFORMS, segmented))}
${
      fusedChunkKernel(
        statisticsPrologue(first, affine, updateRunning, segmented),
        `let aTop = max(x[top] * scale + shift, vec4f(0.0));
    let aBottom = max(x[bottom] * scale + shift, vec4f(0.0));
    pooled[o] = vec2f(max(max(aTop.x, aTop.y), max(aBottom.x, aBottom.y)),
                      max(max(aTop.z, aTop.w), max(aBottom.z, aBottom.w)));`,
        POOLED_WALK,
        segmented,
        tiles,
        walked
          ? {
            prologue:
              `let shift = ${first};\n    var partA = vec4f(0.0);\n    var partQ = vec4f(0.0);`,
            body: `let dTop = x[top] - vec4f(shift);
    let dBottom = x[bottom] - vec4f(shift);
    partA = partA + dTop + dBottom;
    partQ = partQ + dTop * dTop + dBottom * dBottom;`,
            type: "vec4f",
          }
          : null,
        narrow,
      )
    }`,
  );
}

/** The bindings of the pooled backward passes, in order, ending with `tail`. */
function pooledBackwardBindings(
  affine: boolean,
  tail: [string, "read" | "readWrite", string][],
): [string, "read" | "readWrite", string][] {
  const bindings: [string, "read" | "readWrite", string][] = [
    ["dy", "read", "vec2f"],
    ["x", "read", "vec4f"],
    ["mean", "read", "f32"],
    ["invStd", "read", "f32"],
  ];
  if (affine) bindings.push(["weight", "read", "f32"], ["bias", "read", "f32"]);
  return [...bindings, ...tail];
}

/**
 * Chunk partials of the pooled backward: partial[(c * chunks + k) * 2] = sum(g), [.. + 1] =
 * sum(g * (x - mean)) over chunk k's items, g the gradient that the max-pool and ReLU pass back
 * to the normalized map (dy is the pooled map's gradient). One thread per (chunk, channel).
 */
export function batchNormReluMaxPoolBackwardPartialKernel(affine: boolean): KernelSource {
  const bindings = pooledBackwardBindings(affine, [["partial", "readWrite", "f32"]]);
  return kernel(
    "batchNormReluMaxPoolBackwardPartial",
    { affine },
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, POOLED_UNIFORMS)}
${WINDOW_GRADIENT}
${
      chunkKernel(
        `let m = mean[c];
  ${reluMaskPrologue(affine)}
  var a = vec4f(0.0);
  var q = vec4f(0.0);`,
        `${pooledGradient()}
    a = a + gTop + gBottom;
    q = q + gTop * (xTop - m) + gBottom * (xBottom - m);`,
        2,
        pooledWalk,
      ).replace("SUM_A", "dot(a, vec4f(1.0))").replace("SUM_B", "dot(q, vec4f(1.0))")
    }`,
  );
}

/**
 * The pooled backward to the input after {@link batchNormReluMaxPoolBackwardPartialKernel}, as
 * {@link batchNormBackwardFusedKernel} with the gradient g of the partial pass: the channel's sums
 * (to sums[c], sums[channels + c]) and dx over both rows of every item. One workgroup of 64 per
 * channel.
 */
export function batchNormReluMaxPoolBackwardFusedKernel(
  affine: boolean,
  segmented = false,
  walked = false,
  narrow = false,
): KernelSource {
  const tail: [string, "read" | "readWrite", string][] = walked ? [] : [["partial", "read", "f32"]];
  tail.push(["dx", "readWrite", "vec4f"], ["sums", "readWrite", "f32"]);
  const bindings = pooledBackwardBindings(affine, tail);
  return kernel(
    "batchNormReluMaxPoolBackwardFused",
    formFlags({ affine }, { segmented, walked, narrow }),
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, fusedUniformFields(POOLED_UNIFORMS, segmented))}
${WINDOW_GRADIENT}
${
      fusedChunkKernel(
        `${backwardSumsPrologue(affine, segmented)}
  ${reluMaskPrologue(affine)}`,
        `${pooledGradient()}
    dx[top] = gain * (gTop - k1 - (xTop - m) * k2);
    dx[bottom] = gain * (gBottom - k1 - (xBottom - m) * k2);`,
        POOLED_WALK,
        segmented,
        false,
        walked
          ? {
            prologue: `let m = mean[c];\n    ${
              reluMaskPrologue(affine)
            }\n    var partA = vec4f(0.0);\n    var partQ = vec4f(0.0);`,
            body: `${pooledGradient()}
    partA = partA + gTop + gBottom;
    partQ = partQ + gTop * (xTop - m) + gBottom * (xBottom - m);`,
            type: "vec4f",
          }
          : null,
        narrow,
      )
    }`,
  );
}

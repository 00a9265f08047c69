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

const APPLY_UNIFORMS = "n: u32, channels: u32, spatial: u32, eps: f32, count: f32,";

/** The per-channel inverse std: from invStd directly, or from a variance (eval mode). */
function invStdExpr(fromVariance: boolean): string {
  return fromVariance ? "inverseSqrt(stat[c] + params.eps)" : "stat[c]";
}

/**
 * y = (x - mean[c]) * invStd[c] * weight[c] + bias[c]. With `fromVariance` the second statistic is
 * a variance (eval mode with running stats). Threads: one per element.
 */
export function batchNormApplyKernel(affine: boolean, fromVariance: boolean): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["x", "read"], ["mean", "read"], [
    "stat",
    "read",
  ]];
  if (affine) bindings.push(["weight", "read"], ["bias", "read"]);
  bindings.push(["y", "readWrite"]);
  return kernel(
    "batchNormApply",
    { affine, fromVariance },
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let xhat = (x[index] - mean[c]) * ${invStdExpr(fromVariance)};
  y[index] = ${affine ? "xhat * weight[c] + bias[c]" : "xhat"};
}`,
  );
}

/**
 * Backward sums per channel: sums[c] = sum(dy), sums[channels + c] = sum(dy * xhat).
 * One workgroup per channel.
 */
export function batchNormBackwardSumsKernel(fromVariance: boolean): KernelSource {
  return kernel(
    "batchNormBackwardSums",
    { fromVariance },
    ["read", "read", "read", "read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read"], ["x", "read"], ["mean", "read"], ["stat", "read"], ["sums", "readWrite"]],
        STATS_UNIFORMS,
      )
    }
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
        "let g = dy[e]; sumDy = sumDy + g; sumDyXhat = sumDyXhat + g * (x[e] - m) * inv;",
        "  partial[lid] = sumDy;\n  partialXhat[lid] = sumDyXhat;",
      )
    }
  workgroupBarrier();
  for (var width = ${WORKGROUP_SIZE / 2}u; width > 0u; width = width / 2u) {
    if (lid < width) {
      partial[lid] = partial[lid] + partial[lid + width];
      partialXhat[lid] = partialXhat[lid] + partialXhat[lid + width];
    }
    workgroupBarrier();
  }
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
): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["dy", "read"], ["x", "read"], [
    "mean",
    "read",
  ], ["stat", "read"]];
  if (affine) bindings.push(["weight", "read"]);
  if (training) bindings.push(["sums", "read"]);
  bindings.push(["dx", "readWrite"]);
  const gain = affine ? "weight[c] * inv" : "inv";
  const body = training
    ? `let xhat = (x[index] - mean[c]) * inv;
  dx[index] = ${gain} * (dy[index] - sums[c] / params.count -
    xhat * sums[params.channels + c] / params.count);`
    : `dx[index] = dy[index] * ${gain};`;
  return kernel(
    "batchNormBackwardInput",
    { training, affine, fromVariance },
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, APPLY_UNIFORMS)}
${linearMain()}
  if (index >= params.n) { return; }
  let c = (index / params.spatial) % params.channels;
  let inv = ${invStdExpr(fromVariance)};
  ${body}
}`,
  );
}

/** Optimizer and loss kernels: the fused Adam update and the MSE backward. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";
import { typeAlias, unaryGradient } from "./elementwise.ts";

/**
 * One fused Adam step, in torch.optim.Adam's order of operations (L2 weight decay added to the
 * gradient, m via lerp, step size lr / (1 - beta1^t), denominator sqrt(v) / sqrt(1 - beta2^t) + eps).
 * Uniforms: n, beta1, beta2, eps, weightDecay, stepSize, biasCorrection2Sqrt.
 */
export function adamKernel(vec4: boolean): KernelSource {
  const type = vec4 ? "vec4<f32>" : "f32";
  return kernel(
    "adam",
    { vec4 },
    ["readWrite", "read", "readWrite", "readWrite"],
    `alias T = ${type};
${
      declareBindings(
        [["param", "readWrite", "T"], ["grad", "read", "T"], ["m", "readWrite", "T"], [
          "v",
          "readWrite",
          "T",
        ]],
        "n: u32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, stepSize: f32, " +
          "biasCorrection2Sqrt: f32,",
      )
    }
${linearMain()}
  if (index >= params.n) { return; }
  var p = param[index];
  var g = grad[index];
  if (params.weightDecay != 0.0) { g = g + params.weightDecay * p; }
  let mNew = m[index] + (T(1.0) - params.beta1) * (g - m[index]);
  let vNew = v[index] * params.beta2 + (T(1.0) - params.beta2) * g * g;
  m[index] = mNew;
  v[index] = vNew;
  let denom = sqrt(vNew) / params.biasCorrection2Sqrt + T(params.eps);
  param[index] = p - params.stepSize * mNew / denom;
}`,
  );
}

/** Most tensors one multi-tensor Adam dispatch updates (4 storage bindings each). */
export const ADAM_MULTI_MAX = 8;

/**
 * Adam over `count` tensors in one dispatch (the update of {@link adamKernel}): tensor k owns the
 * workgroups from start_k / 256 on (its range padded to whole workgroups, so every workgroup
 * updates one tensor and branches uniformly) and n_k elements (vec4s with `vec4`). Bindings:
 * param_k, grad_k, m_k, v_k for each k. Uniforms: beta1, beta2, eps, weightDecay, stepSize,
 * biasCorrection2Sqrt, then start_k and n_k for each k.
 */
export function adamMultiKernel(vec4: boolean, count: number): KernelSource {
  const type = vec4 ? "vec4<f32>" : "f32";
  const bindings: [string, "read" | "readWrite", string][] = [];
  const fields: string[] = [];
  for (let k = 0; k < count; k++) {
    bindings.push(
      [`param${k}`, "readWrite", "T"],
      [`grad${k}`, "read", "T"],
      [`m${k}`, "readWrite", "T"],
      [`v${k}`, "readWrite", "T"],
    );
    fields.push(`start${k}: u32, n${k}: u32,`);
  }
  const branches = Array.from({ length: count }, (_, k) => k).reverse().map((k) =>
    `if (index >= params.start${k}) {
    let i = index - params.start${k};
    if (i >= params.n${k}) { return; }
    var p = param${k}[i];
    var g = grad${k}[i];
    if (params.weightDecay != 0.0) { g = g + params.weightDecay * p; }
    let mNew = m${k}[i] + (T(1.0) - params.beta1) * (g - m${k}[i]);
    let vNew = v${k}[i] * params.beta2 + (T(1.0) - params.beta2) * g * g;
    m${k}[i] = mNew;
    v${k}[i] = vNew;
    let denom = sqrt(vNew) / params.biasCorrection2Sqrt + T(params.eps);
    param${k}[i] = p - params.stepSize * mNew / denom;
    return;
  }`
  ).join("\n  ");
  return kernel(
    "adamMulti",
    { vec4, count },
    bindings.map(([, k]) => k),
    `alias T = ${type};
${
      declareBindings(
        bindings,
        "beta1: f32, beta2: f32, eps: f32, weightDecay: f32, stepSize: f32, " +
          "biasCorrection2Sqrt: f32, " + fields.join(" "),
      )
    }
${linearMain()}
  ${branches}
}`,
  );
}

/**
 * d input = g[0] * scale * (input - target): the backward of a mean squared error; times
 * weights[i] with `weighted`. With `vec4` every array is read and written in vec4s (n counts
 * them). With `sigmoid` the input is a sigmoid's output and the result goes on through it: times
 * input * (1 - input), as the sigmoid's own backward would compute it from that gradient.
 */
export function mseBackwardKernel(weighted = false, vec4 = false, sigmoid = false): KernelSource {
  const type = vec4 ? "vec4f" : "f32";
  const inputs: [string, "read", string][] = [["input", "read", type], ["expected", "read", type]];
  if (weighted) inputs.push(["weights", "read", type]);
  const flags: Record<string, boolean> = weighted ? { weighted } : {};
  if (vec4) flags.vec4 = true;
  if (sigmoid) flags.sigmoid = true;
  return kernel(
    "mseBackward",
    flags,
    [...inputs.map(() => "read" as const), "read", "readWrite"],
    `${sigmoid ? `${typeAlias(vec4)}\n` : ""}${
      declareBindings(
        [...inputs, ["g", "read", "f32"], ["out", "readWrite", type]],
        "n: u32, scale: f32,",
      )
    }
${linearMain()}
  if (index >= params.n) { return; }
  ${sigmoid ? "let d" : "out[index]"} = g[0] * params.scale * (input[index] - expected[index])${
      weighted ? " * weights[index]" : ""
    };${sigmoid ? `\n  out[index] = ${unaryGradient("sigmoid", "d", "input[index]")};` : ""}
}`,
  );
}

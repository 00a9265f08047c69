/** Element-wise kernels: activations and their backward, binary ops, affine, fill, copy. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";

/** Activations with a forward and a backward written in terms of the output. */
export type UnaryOp = "relu" | "sigmoid" | "tanh";
/** Binary ops on two same-shape operands. */
export type BinaryOp = "add" | "sub" | "mul";

// tanh is clamped: some WGSL compilers evaluate it as (e^x - e^-x)/(e^x + e^-x), NaN for large x.
const UNARY_FORWARD: Record<UnaryOp, (v: string) => string> = {
  relu: (v) => `max(${v}, T(0.0))`,
  sigmoid: (v) => `T(1.0) / (T(1.0) + exp(-${v}))`,
  tanh: (v) => `tanh(clamp(${v}, T(-15.0), T(15.0)))`,
};

// Derivatives expressed through the forward output y, so backward needs only y.
const UNARY_BACKWARD: Record<UnaryOp, (g: string, y: string) => string> = {
  relu: (g, y) => `select(T(0.0), ${g}, ${y} > T(0.0))`,
  sigmoid: (g, y) => `${g} * ${y} * (T(1.0) - ${y})`,
  tanh: (g, y) => `${g} * (T(1.0) - ${y} * ${y})`,
};

const BINARY: Record<BinaryOp, string> = { add: "+", sub: "-", mul: "*" };

/**
 * WGSL for the gradient through activation `op` from its output y (expressions g, y of type T:
 * needs {@link typeAlias} in scope), as unaryBackwardKernel computes it.
 */
export function unaryGradient(op: UnaryOp, g: string, y: string): string {
  return UNARY_BACKWARD[op](g, y);
}

/** Element type alias: f32 or vec4<f32> (the vec4 flavour needs n % 4 == 0). */
export function typeAlias(vec4: boolean): string {
  return vec4 ? "alias T = vec4<f32>;" : "alias T = f32;";
}

/** y = op(x). Uniform: n (in elements of T). */
export function unaryKernel(op: UnaryOp, vec4: boolean): KernelSource {
  return kernel(
    "unary",
    { op, vec4 },
    ["read", "readWrite"],
    `${typeAlias(vec4)}
${declareBindings([["x", "read", "T"], ["y", "readWrite", "T"]], "n: u32,")}
${linearMain()}
  if (index >= params.n) { return; }
  let v = x[index];
  y[index] = ${UNARY_FORWARD[op]("v")};
}`,
  );
}

/** dx = g * op'(x) written through y = op(x). Uniform: n. */
export function unaryBackwardKernel(op: UnaryOp, vec4: boolean): KernelSource {
  return kernel(
    "unaryBackward",
    { op, vec4 },
    ["read", "read", "readWrite"],
    `${typeAlias(vec4)}
${declareBindings([["g", "read", "T"], ["y", "read", "T"], ["dx", "readWrite", "T"]], "n: u32,")}
${linearMain()}
  if (index >= params.n) { return; }
  let gv = g[index];
  let yv = y[index];
  dx[index] = ${unaryGradient(op, "gv", "yv")};
}`,
  );
}

/** out = a op b, same shape. Uniform: n. */
export function binaryKernel(op: BinaryOp, vec4: boolean, activation?: UnaryOp): KernelSource {
  const value = `a[index] ${BINARY[op]} b[index]`;
  return kernel(
    "binary",
    activation ? { op, vec4, activation } : { op, vec4 },
    ["read", "read", "readWrite"],
    `${typeAlias(vec4)}
${declareBindings([["a", "read", "T"], ["b", "read", "T"], ["out", "readWrite", "T"]], "n: u32,")}
${linearMain()}
  if (index >= params.n) { return; }
  out[index] = ${activation ? UNARY_FORWARD[activation](`(${value})`) : value};
}`,
  );
}

/** y = x * scale + shift. Uniforms: n, scale, shift. */
export function affineKernel(vec4: boolean): KernelSource {
  return kernel(
    "affine",
    { vec4 },
    ["read", "readWrite"],
    `${typeAlias(vec4)}
${declareBindings([["x", "read", "T"], ["y", "readWrite", "T"]], "n: u32, scale: f32, shift: f32,")}
${linearMain()}
  if (index >= params.n) { return; }
  y[index] = x[index] * params.scale + params.shift;
}`,
  );
}

/** out = value. Uniforms: n, value. */
export function fillKernel(): KernelSource {
  return kernel(
    "fill",
    {},
    ["readWrite"],
    `${declareBindings([["out", "readWrite"]], "n: u32, value: f32,")}
${linearMain()}
  if (index >= params.n) { return; }
  out[index] = params.value;
}`,
  );
}

/**
 * out[i] = g[i / inner] * scale: spreads one value per row over `inner` elements (the backward of
 * sums and means). Uniforms: n, inner, scale. `broadcast` (a full reduction's backward: one value
 * over all n) reads g[0] without the division, which CPU rasterizers run lane by lane (a mean over
 * a 32x3x64x64 batch took 5.4 ms to spread), and writes vec4s (n then counts vec4s).
 */
export function expandKernel(broadcast = false): KernelSource {
  return kernel(
    "expand",
    broadcast ? { broadcast } : {},
    ["read", "readWrite"],
    broadcast
      ? `${
        declareBindings(
          [["g", "read"], ["out", "readWrite", "vec4f"]],
          "n: u32, inner: u32, scale: f32,",
        )
      }
${linearMain()}
  if (index >= params.n) { return; }
  out[index] = vec4f(g[0] * params.scale);
}`
      : `${
        declareBindings([["g", "read"], ["out", "readWrite"]], "n: u32, inner: u32, scale: f32,")
      }
${linearMain()}
  if (index >= params.n) { return; }
  out[index] = g[index / params.inner] * params.scale;
}`,
  );
}

/**
 * Row copy between two [outer, *] layouts: dst[dstOffset + o * dstStride + j] (+)=
 * src[srcOffset + o * srcStride + j] for j < rowLength. Serves cat, narrow and their backward.
 * Uniforms: outer, rowLength, srcStride, srcOffset, dstStride, dstOffset (in vec4s with `vec4`).
 */
export function copyRowsKernel(accumulate: boolean, vec4 = false): KernelSource {
  const type = vec4 ? "vec4f" : "f32";
  return kernel(
    "copyRows",
    vec4 ? { accumulate, vec4 } : { accumulate },
    ["read", "readWrite"],
    `${
      declareBindings(
        [["src", "read", type], ["dst", "readWrite", type]],
        "outer: u32, rowLength: u32, srcStride: u32, srcOffset: u32, dstStride: u32, dstOffset: u32,",
      )
    }
${linearMain()}
  if (index >= params.outer * params.rowLength) { return; }
  let o = index / params.rowLength;
  let j = index - o * params.rowLength;
  let d = params.dstOffset + o * params.dstStride + j;
  let v = src[params.srcOffset + o * params.srcStride + j];
  ${accumulate ? "dst[d] = dst[d] + v;" : "dst[d] = v;"}
}`,
  );
}

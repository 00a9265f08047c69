/**
 * Pieces shared by the WGSL templates: the 1-D thread index over a 2-D grid, uniform packing and
 * the workgroup tree reduction.
 */

import type { BindingKind, KernelSource } from "../backend.ts";

/** Threads per workgroup of the 1-D element-wise kernels. */
export const WORKGROUP_SIZE = 256;

/** Entry point header of a 1-D kernel; `index` is the global thread index. */
export function linearMain(workgroupSize = WORKGROUP_SIZE): string {
  return `@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let index = (wid.y * nwg.x + wid.x) * ${workgroupSize}u + lid;`;
}

/** A uniform struct's fields, all u32, in order: "batch: u32, inC: u32, ...". */
export function u32Fields(names: readonly string[]): string {
  return names.map((f) => `${f}: u32,`).join(" ");
}

/**
 * WGSL declarations of storage bindings in order, e.g. `["x", "read", "f32"]` (element type), or
 * uniform operands, e.g. `["w", "uniform", "array<vec4f, 4096>"]` (whole type).
 */
export function declareBindings(
  list: readonly (readonly [name: string, kind: BindingKind, type?: string])[],
  uniformStruct?: string,
): string {
  const lines = list.map(([name, kind, type = "f32"], i) =>
    kind === "uniform"
      // A uniform operand's type is given whole (a sized array such as `array<vec4f, 4096>`).
      ? `@group(0) @binding(${i}) var<uniform> ${name}: ${type};`
      : `@group(0) @binding(${i}) var<storage, ${
        kind === "read" ? "read" : "read_write"
      }> ${name}: array<${type}>;`
  );
  if (uniformStruct) {
    lines.push(`struct Params { ${uniformStruct} }`);
    lines.push(`@group(0) @binding(${list.length}) var<uniform> params: Params;`);
  }
  return lines.join("\n");
}

/** Build a KernelSource from its parts. */
export function kernel(
  family: string,
  flags: Record<string, string | number | boolean>,
  bindings: readonly BindingKind[],
  code: string,
  uniforms = true,
): KernelSource {
  const flagText = Object.entries(flags).map(([k, v]) => `${k}=${v}`).join(",");
  return { key: flagText ? `${family}[${flagText}]` : family, code, bindings, uniforms };
}

/**
 * A kernel template that builds each specialization once. The register-tiled conv templates write
 * 50-150 KB of WGSL per call (0.2-1.1 ms of JS each) and a training step asks for its kernels every
 * step: the backend cached pipelines by key, but the text was rebuilt first (2.2 MB per demo-size
 * autoencoder step; 0.17 MB with the conv templates memoized). Arguments must be JSON values.
 */
export function memoizedTemplate<A extends unknown[]>(
  build: (...args: A) => KernelSource,
): (...args: A) => KernelSource {
  const built = new Map<string, KernelSource>();
  return (...args: A) => {
    const key = JSON.stringify(args);
    let source = built.get(key);
    if (!source) {
      source = build(...args);
      built.set(key, source);
    }
    return source;
  };
}

/**
 * Tree reduction of `partial` (workgroup array of WORKGROUP_SIZE f32) into partial[0]. Every
 * thread of the workgroup must reach it (uniform control flow).
 */
export function workgroupReduce(array = "partial"): string {
  return `  workgroupBarrier();
  for (var width = ${WORKGROUP_SIZE / 2}u; width > 0u; width = width / 2u) {
    if (lid < width) { ${array}[lid] = ${array}[lid] + ${array}[lid + width]; }
    workgroupBarrier();
  }`;
}

/** Packs 4-byte uniform fields in declaration order. */
export class Uniforms {
  readonly #view: DataView;
  #offset = 0;
  constructor(fields: number) {
    this.#view = new DataView(new ArrayBuffer(Math.max(16, Math.ceil(fields / 4) * 16)));
  }
  /** Append an unsigned 32-bit integer. */
  u32(value: number): this {
    this.#view.setUint32(this.#offset, value, true);
    this.#offset += 4;
    return this;
  }
  /** Append a signed 32-bit integer. */
  i32(value: number): this {
    this.#view.setInt32(this.#offset, value, true);
    this.#offset += 4;
    return this;
  }
  /** Append a 32-bit float. */
  f32(value: number): this {
    this.#view.setFloat32(this.#offset, value, true);
    this.#offset += 4;
    return this;
  }
  /** The packed bytes. */
  get bytes(): Uint8Array {
    return new Uint8Array(this.#view.buffer);
  }
}

/** Workgroup grid for `threads` threads of `workgroupSize`, folded into 2-D past 65535. */
export function grid1d(
  threads: number,
  workgroupSize = WORKGROUP_SIZE,
  maxPerDimension = 65535,
): [number, number] {
  const groups = Math.ceil(threads / workgroupSize);
  if (groups <= maxPerDimension) return [groups, 1];
  const x = maxPerDimension;
  return [x, Math.ceil(groups / x)];
}

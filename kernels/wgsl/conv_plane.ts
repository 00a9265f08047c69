/**
 * The "plane" conv variant: 3x3, stride 1, padding 1 convolutions on maps so small (H * W <= 16,
 * H * W % 4 == 0: the 2x2 and 4x4 maps of ResNet34's last stages on 64x64 faces) that one thread
 * holds a whole H x W plane of a channel in registers. The map's shape is compiled in, so every
 * (output pixel, input pixel, tap) triple that exists is one scalar multiply-add and the padding
 * costs nothing: on a 2x2 map each output pixel meets 4 of the 9 taps, and the row-tiled ubo kernels
 * (which need width % 4 == 0 anyway) or the column kernels spend most of their work on zeros and
 * their loads on one plane per pixel row.
 *
 * - Forward (and backward to the input, on dy with the transposed, flipped filter): each thread
 *   owns the planes of one to four samples for a block of J output channels; the filters come from the ubo
 *   variant's uniform windows (kernels/wgsl/conv_ubo.ts convUboPackKernel, shared with it), so a
 *   weight is a broadcast and each input plane (H * W / 4 vec4 loads) feeds J * (its taps)
 *   multiply-adds.
 * - Backward to the weight: each thread owns a block of J output x I input channels (J * I * 9
 *   scalar sums) and walks a range of samples, loading the J dy planes and the I x planes of each.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, memoizedTemplate } from "./common.ts";
import { UBO_WINDOW_VEC4 } from "./conv_ubo.ts";

/** Whether a map of H x W is one the plane kernels compile (a whole number of vec4s, <= 16). */
export function planeShapeSupported(H: number, W: number): boolean {
  const pixels = H * W;
  return H >= 1 && W >= 1 && pixels % 4 === 0 && pixels <= 16;
}

/** Every (output pixel, input pixel, tap) of a 3x3 stride-1 padding-1 conv on an H x W map. */
function planeTriples(H: number, W: number): { p: number; q: number; tap: number }[] {
  const triples: { p: number; q: number; tap: number }[] = [];
  for (let oh = 0; oh < H; oh++) {
    for (let ow = 0; ow < W; ow++) {
      for (let kh = 0; kh < 3; kh++) {
        for (let kw = 0; kw < 3; kw++) {
          const ih = oh + kh - 1;
          const iw = ow + kw - 1;
          if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
          triples.push({ p: oh * W + ow, q: ih * W + iw, tap: kh * 3 + kw });
        }
      }
    }
  }
  return triples;
}

const COMPONENTS = ["x", "y", "z", "w"];

/** WGSL lines loading a plane of `vectors` vec4s at quad index `at` as scalars `name{pixel}`. */
function planeLoads(buffer: string, at: string, vectors: number, name: string): string[] {
  const lines: string[] = [];
  for (let k = 0; k < vectors; k++) {
    lines.push(`let ${name}v${k} = ${buffer}[${at} + ${k}u];`);
    for (let c = 0; c < 4; c++) {
      lines.push(`let ${name}${4 * k + c} = ${name}v${k}.${COMPONENTS[c]};`);
    }
  }
  return lines;
}

/**
 * The plane forward over one input-channel chunk and a window of output-channel blocks (the ubo
 * packing: segment (chunk, block) holds [(icLocal * 9 + tap) * J + j]). Each thread computes
 * `samples` consecutive samples (each weight it loads then serves all of them). Threads: x = those
 * sample groups in groups of `workgroup`, folded over z; y = the output-channel block in the
 * window. Uniforms:
 * batch, inC, outC, icStart, icCount, accumulate, ocBlockBase, segVec4, foldX. The first chunk
 * stores (plus the bias), later chunks add to y.
 */
function buildConvPlaneKernel(
  H: number,
  W: number,
  ocBlock: number,
  bias: boolean,
  workgroup: number,
  samples = 1,
): KernelSource {
  if (!planeShapeSupported(H, W)) throw new Error(`conv plane: ${H}x${W} maps are not compiled`);
  const pixels = H * W;
  const vectors = pixels / 4;
  const vecsPerTap = ocBlock / 4;
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", "vec4f"],
    ["w", "uniform", `array<vec4f, ${UBO_WINDOW_VEC4}>`],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  bindings.push(["y", "readWrite", "vec4f"]);
  const triples = planeTriples(H, W);
  const accs: string[] = [];
  const body: string[] = [];
  for (let s = 0; s < samples; s++) {
    body.push(...planeLoads("x", `base + ${s}u * planeStride`, vectors, `x${s}_`));
  }
  for (let tap = 0; tap < 9; tap++) {
    if (!triples.some((t) => t.tap === tap)) continue;
    for (let v = 0; v < vecsPerTap; v++) {
      body.push(`let w${tap}_${v} = w[wRow + ${tap * vecsPerTap + v}u];`);
    }
  }
  const stores: string[] = [];
  for (let s = 0; s < samples; s++) {
    for (let j = 0; j < ocBlock; j++) {
      for (let p = 0; p < pixels; p++) {
        const acc = `acc${s}_${j}_${p}`;
        accs.push(`var ${acc} = 0.0;`);
        for (const t of triples.filter((t) => t.p === p)) {
          const weight = `w${t.tap}_${j >> 2}.${COMPONENTS[j & 3]}`;
          body.push(`${acc} = fma(${weight}, x${s}_${t.q}, ${acc});`);
        }
      }
    }
    for (let j = 0; j < ocBlock; j++) {
      const lines = [`let at = ((n + ${s}u) * params.outC + oc0 + ${j}u) * ${vectors}u;`];
      for (let k = 0; k < vectors; k++) {
        const value = `vec4f(${[0, 1, 2, 3].map((c) => `acc${s}_${j}_${4 * k + c}`).join(", ")})`;
        lines.push(`store(at + ${k}u, oc0 + ${j}u, ${value});`);
      }
      stores.push(
        `if (n + ${s}u < params.batch && oc0 + ${j}u < params.outC) {\n    ${
          lines.join("\n    ")
        }\n  }`,
      );
    }
  }
  return kernel(
    "convPlane",
    { H, W, j: ocBlock, bias, wg: workgroup, ...(samples > 1 ? { samples } : {}) },
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        "batch: u32, inC: u32, outC: u32, icStart: u32, icCount: u32, accumulate: u32, " +
          "ocBlockBase: u32, segVec4: u32, foldX: u32,",
      )
    }
fn store(at: u32, oc: u32, value: vec4f) {
  if (params.accumulate != 0u) {
    y[at] = y[at] + value;
  } else {
    y[at] = value${bias ? " + vec4f(b[oc])" : ""};
  }
}
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = ((wid.z * params.foldX + wid.x) * ${workgroup}u + lid) * ${samples}u;
  if (n >= params.batch) { return; }
  let planeStride = params.inC * ${vectors}u;
  let oc0 = (params.ocBlockBase + wid.y) * ${ocBlock}u;
  let seg = wid.y * params.segVec4;
  var base = (n * params.inC + params.icStart) * ${vectors}u;
  ${accs.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let wRow = seg + icLocal * ${9 * vecsPerTap}u;
    ${body.join("\n    ")}
    base = base + ${vectors}u;
  }
  ${stores.join("\n  ")}
}`,
  );
}

/**
 * The plane backward to the weight: thread t owns output-channel block t % ocBlocks, input-channel
 * block (t / ocBlocks) % icBlocks and sample range t / (ocBlocks * icBlocks) (of `perSplit`
 * samples), and writes its J x I x 9 sums to sums[((split * outC + oc) * inC + ic) * 9 + tap]
 * (the weight itself when there is one split). Uniforms: batch, inC, outC, ocBlocks, icBlocks,
 * splits, perSplit. Channels past the layer's are loaded (in bounds or robust) but never stored.
 */
function buildConvPlaneWgradKernel(
  H: number,
  W: number,
  ocBlock: number,
  icBlock: number,
  workgroup: number,
): KernelSource {
  if (!planeShapeSupported(H, W)) throw new Error(`conv plane: ${H}x${W} maps are not compiled`);
  const pixels = H * W;
  const vectors = pixels / 4;
  const triples = planeTriples(H, W);
  const reached = new Set(triples.map((t) => t.tap));
  const accs: string[] = [];
  const body: string[] = [];
  for (let j = 0; j < ocBlock; j++) {
    body.push(
      ...planeLoads("dy", `(n * params.outC + oc0 + ${j}u) * ${vectors}u`, vectors, `d${j}_`),
    );
  }
  for (let i = 0; i < icBlock; i++) {
    body.push(
      ...planeLoads("x", `(n * params.inC + ic0 + ${i}u) * ${vectors}u`, vectors, `x${i}_`),
    );
  }
  const stores: string[] = [];
  for (let j = 0; j < ocBlock; j++) {
    for (let i = 0; i < icBlock; i++) {
      const lines = [
        `let at = ((split * params.outC + oc0 + ${j}u) * params.inC + ic0 + ${i}u) * 9u;`,
      ];
      for (let tap = 0; tap < 9; tap++) {
        if (!reached.has(tap)) {
          lines.push(`sums[at + ${tap}u] = 0.0;`);
          continue;
        }
        const acc = `acc${j}_${i}_${tap}`;
        accs.push(`var ${acc} = 0.0;`);
        for (const t of triples.filter((t) => t.tap === tap)) {
          body.push(`${acc} = fma(d${j}_${t.p}, x${i}_${t.q}, ${acc});`);
        }
        lines.push(`sums[at + ${tap}u] = ${acc};`);
      }
      stores.push(
        `if (oc0 + ${j}u < params.outC && ic0 + ${i}u < params.inC) {\n    ${
          lines.join("\n    ")
        }\n  }`,
      );
    }
  }
  return kernel(
    "convPlaneWgrad",
    { H, W, j: ocBlock, i: icBlock, wg: workgroup },
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "vec4f"], ["dy", "read", "vec4f"], ["sums", "readWrite"]],
        "batch: u32, inC: u32, outC: u32, ocBlocks: u32, icBlocks: u32, splits: u32, perSplit: u32,",
      )
    }
@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * ${workgroup}u + lid;
  let ocBlockIndex = t % params.ocBlocks;
  let rest = t / params.ocBlocks;
  let icBlockIndex = rest % params.icBlocks;
  let split = rest / params.icBlocks;
  if (split >= params.splits) { return; }
  let oc0 = ocBlockIndex * ${ocBlock}u;
  let ic0 = icBlockIndex * ${icBlock}u;
  let nEnd = min(params.batch, (split + 1u) * params.perSplit);
  ${accs.join("\n  ")}
  for (var n = split * params.perSplit; n < nEnd; n = n + 1u) {
    ${body.join("\n    ")}
  }
  ${stores.join("\n  ")}
}`,
  );
}

/** {@link buildConvPlaneKernel}, each specialization built once. */
export const convPlaneKernel = memoizedTemplate(buildConvPlaneKernel);
/** {@link buildConvPlaneWgradKernel}, each specialization built once. */
export const convPlaneWgradKernel = memoizedTemplate(buildConvPlaneWgradKernel);

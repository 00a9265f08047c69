/**
 * The "ubo" conv backward-to-weight kernel (3x3, stride 1, padding 1, width % 4 == 0): a GEMM over
 * the pixels, dw[oc, ic, kh, kw] = sum over (n, oh, ow) of dy[n, oc, oh, ow] *
 * x[n, ic, oh + kh - 1, ow + kw - 1], with dy read from a uniform buffer.
 *
 * dy is first repacked (pack kernel) into [ocBlock][quad][J] vec4s: for a block of J output
 * channels, each pixel quad (4 consecutive columns of one row, quads numbered over n, oh, ow / 4)
 * holds J vec4s. A window of whole rows of quads (at most 64 KiB, at a 256-byte aligned offset) is
 * bound as a uniform operand per dispatch. Every thread of a workgroup walks the same quads in the
 * same order, so the dy loads are workgroup-uniform (one broadcast on CPU rasterizers); each thread
 * owns one (ic, kh) pair and accumulates J x 3 sums, walking its input row left to right with one
 * aligned vec4 load per quad. Partial sums over the windows accumulate in place (dispatches in one
 * pass are ordered); a few splits of each window's rows go to separate slots summed at the end.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";

/** vec4s in the declared uniform window (64 KiB, the smallest maxUniformBufferBindingSize). */
export const WGRAD_WINDOW_VEC4 = 4096;
/** Threads per workgroup of the weight-gradient kernel. */
export const WGRAD_WORKGROUP = 64;

/**
 * Pack dy [batch, outC, H, W] into [ocBlock][quadsPadded][J] vec4 (zero past outC and past the
 * real quads). Threads: one per packed vec4. Uniforms: total, outC, quads (batch * H * W / 4),
 * quadsPadded, planeQuads (H * W / 4).
 */
export function convUboWgradPackKernel(ocBlock: number): KernelSource {
  return kernel(
    "convUboWgradPack",
    { j: ocBlock },
    ["read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read", "vec4f"], ["packed", "readWrite", "vec4f"]],
        "total: u32, outC: u32, quads: u32, quadsPadded: u32, planeQuads: u32,",
      )
    }
${linearMain()}
  if (index >= params.total) { return; }
  let j = index % ${ocBlock}u;
  let t = index / ${ocBlock}u;
  let q = t % params.quadsPadded;
  let block = t / params.quadsPadded;
  let oc = block * ${ocBlock}u + j;
  var value = vec4f(0.0);
  if (q < params.quads && oc < params.outC) {
    let n = q / params.planeQuads;
    value = dy[(n * params.outC + oc) * params.planeQuads + (q - n * params.planeQuads)];
  }
  packed[index] = value;
}`,
  );
}

/**
 * Weight gradient over one window of rows for one block of J output channels. Threads: x = (ic, kh)
 * lanes in groups of WGRAD_WORKGROUP; y = split of the window's rows (slot of the partial sums).
 * Uniforms: inC, H, quadsW, outC, rowStart (first global row n * H + oh of the window), rows (in
 * the window), rowsPerSplit, ocBase, accumulate, slotSize (outC * inC * 9).
 */
export function convUboWgradKernel(ocBlock: number): KernelSource {
  const accs: string[] = [];
  const fmas: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < ocBlock; j++) {
    accs.push(`var acc${j} = vec3f(0.0);`);
    fmas.push(
      `let d${j} = g[gBase + ${j}u];\n` +
        `        acc${j} = acc${j} + vec3f(dot(d${j}, t0), dot(d${j}, xb), dot(d${j}, t2));`,
    );
    stores.push(`store(slot, params.ocBase + ${j}u, ic, kh, acc${j});`);
  }
  return kernel(
    "convUboWgrad",
    { j: ocBlock },
    ["read", "uniform", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "vec4f"], ["g", "uniform", `array<vec4f, ${WGRAD_WINDOW_VEC4}>`], [
          "partial",
          "readWrite",
          "f32",
        ]],
        "inC: u32, H: u32, quadsW: u32, outC: u32, rowStart: u32, rows: u32, rowsPerSplit: u32, " +
          "ocBase: u32, accumulate: u32, slotSize: u32,",
      )
    }
fn store(slot: u32, oc: u32, ic: u32, kh: u32, acc: vec3f) {
  if (oc >= params.outC) { return; }
  let base = slot * params.slotSize + (oc * params.inC + ic) * 9u + kh * 3u;
  var v = acc;
  if (params.accumulate != 0u) {
    v = v + vec3f(partial[base], partial[base + 1u], partial[base + 2u]);
  }
  partial[base] = v.x;
  partial[base + 1u] = v.y;
  partial[base + 2u] = v.z;
}
@compute @workgroup_size(${WGRAD_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lane = wid.x * ${WGRAD_WORKGROUP}u + lid;
  if (lane >= params.inC * 3u) { return; }
  let ic = lane / 3u;
  let kh = lane - ic * 3u;
  let slot = wid.y;
  let first = slot * params.rowsPerSplit;
  let last = min(params.rows, first + params.rowsPerSplit);
  ${accs.join("\n  ")}
  for (var r = first; r < last; r = r + 1u) {
    let row = params.rowStart + r;
    let n = row / params.H;
    let oh = row - n * params.H;
    let ih = i32(oh + kh) - 1;
    if (ih < 0 || ih >= i32(params.H)) { continue; }
    let xRow = ((n * params.inC + ic) * params.H + u32(ih)) * params.quadsW;
    let gRow = r * params.quadsW * ${ocBlock}u;
    // Walk the row left to right, keeping the previous and current quads: one load per quad.
    var xa = vec4f(0.0);
    var xb = x[xRow];
    for (var qw = 0u; qw < params.quadsW; qw = qw + 1u) {
      let xc = select(vec4f(0.0), x[xRow + qw + 1u], qw + 1u < params.quadsW);
      let t0 = vec4f(xa.w, xb.x, xb.y, xb.z);
      let t2 = vec4f(xb.y, xb.z, xb.w, xc.x);
      let gBase = gRow + qw * ${ocBlock}u;
      ${fmas.join("\n      ")}
      xa = xb;
      xb = xc;
    }
  }
  ${stores.join("\n  ")}
}`,
  );
}

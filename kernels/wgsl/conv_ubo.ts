/**
 * The "ubo" conv variant: a direct 3x3 stride-1 padding-1 convolution whose weights are read from a
 * uniform buffer. On CPU rasterizers (llvmpipe) storage loads become per-lane scalar loops while a
 * uniform load at a workgroup-uniform address is one broadcast, so every workgroup owns a block of
 * 8 output channels (its weights are uniform across its threads; 4 when a layer has at most 4)
 * and each thread computes 8 channels x 4 columns, loading its input row as three aligned vec4s (needs width % 4 == 0).
 *
 * Weights are first repacked into uniform-sized segments (pack kernel): segment (chunk, ocBlock)
 * holds, for an input-channel chunk, the weights of 8 output channels as
 * [(icLocal * 9 + tap) * 8 + j]; each segment is padded to 256 bytes so a window of whole segments
 * (at most 64 KiB) can be bound at an aligned offset. The pack kernel can also transpose and flip
 * the filter, which turns the backward-to-input pass into the same forward convolution on dy.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";

/** Output channels per workgroup (and per thread). */
export const UBO_OC_BLOCK = 8;
/** vec4s in the declared uniform window (64 KiB, the smallest maxUniformBufferBindingSize). */
export const UBO_WINDOW_VEC4 = 4096;

/**
 * Pack weights into uniform segments. Threads: one per packed float.
 * Uniforms: total, runInC, runOutC, icChunk, blocksC, segFloats.
 * With `transposeFlip`, w is the forward weight [runInC, runOutC, 3, 3] and the packed filter is
 * w'[oc, ic, kh, kw] = w[ic, oc, 2 - kh, 2 - kw] (the backward-to-input convolution).
 */
export function convUboPackKernel(transposeFlip: boolean, ocBlock = UBO_OC_BLOCK): KernelSource {
  const source = transposeFlip
    ? "w[(ic * params.runOutC + oc) * 9u + 8u - tap]"
    : "w[(oc * params.runInC + ic) * 9u + tap]";
  return kernel(
    "convUboPack",
    ocBlock === UBO_OC_BLOCK ? { transposeFlip } : { transposeFlip, j: ocBlock },
    ["read", "readWrite"],
    `${
      declareBindings(
        [["w", "read"], ["packed", "readWrite"]],
        "total: u32, runInC: u32, runOutC: u32, icChunk: u32, blocksC: u32, segFloats: u32,",
      )
    }
${linearMain()}
  if (index >= params.total) { return; }
  let segment = index / params.segFloats;
  let within = index - segment * params.segFloats;
  let chunk = segment / params.blocksC;
  let ocBlock = segment - chunk * params.blocksC;
  let j = within % ${ocBlock}u;
  let t = within / ${ocBlock}u;
  let tap = t % 9u;
  let icLocal = t / 9u;
  let oc = ocBlock * ${ocBlock}u + j;
  let ic = chunk * params.icChunk + icLocal;
  var value = 0.0;
  if (icLocal < params.icChunk && ic < params.runInC && oc < params.runOutC) {
    value = ${source};
  }
  packed[index] = value;
}`,
  );
}

/**
 * The convolution over one input-channel chunk and a window of output-channel blocks. Threads:
 * x = pixel quads (batch * H * W / 4) in groups of 64, folded over z; y = oc block in the window.
 * Uniforms: batch, inC, H, W, outC, quadsW, quads, icStart, icCount, accumulate, ocBlockBase,
 * segVec4, foldX.
 */
export function convUboKernel(bias: boolean, ocBlock = UBO_OC_BLOCK): KernelSource {
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", "vec4f"],
    ["w", "uniform", `array<vec4f, ${UBO_WINDOW_VEC4}>`],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  bindings.push(["y", "readWrite", "f32"]);
  const accs: string[] = [];
  const fmas: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < ocBlock; j++) {
    accs.push(`var acc${j} = vec4f(0.0);`);
    fmas.push(`acc${j} = acc${j} + w${j >> 2}[${j & 3}] * xv;`);
    stores.push(`store(n, oc0 + ${j}u, oh, ow0, acc${j});`);
  }
  return kernel(
    "convUbo",
    ocBlock === UBO_OC_BLOCK ? { bias } : { bias, j: ocBlock },
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        "batch: u32, inC: u32, H: u32, W: u32, outC: u32, quadsW: u32, quads: u32, " +
          "icStart: u32, icCount: u32, accumulate: u32, ocBlockBase: u32, segVec4: u32, foldX: u32,",
      )
    }
fn store(n: u32, oc: u32, oh: u32, ow0: u32, acc: vec4f) {
  if (oc >= params.outC) { return; }
  let base = ((n * params.outC + oc) * params.H + oh) * params.W + ow0;
  var v = acc;
  if (params.accumulate != 0u) {
    v = v + vec4f(y[base], y[base + 1u], y[base + 2u], y[base + 3u]);
  } else {
    v = v + vec4f(${bias ? "b[oc]" : "0.0"});
  }
  y[base] = v.x;
  y[base + 1u] = v.y;
  y[base + 2u] = v.z;
  y[base + 3u] = v.w;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = (wid.z * params.foldX + wid.x) * 64u + lid;
  let valid = p < params.quads;
  let q = min(p, params.quads - 1u);
  let quadW = q % params.quadsW;
  let rowIndex = q / params.quadsW;
  let oh = rowIndex % params.H;
  let n = rowIndex / params.H;
  let ow0 = quadW * 4u;
  let oc0 = (params.ocBlockBase + wid.y) * ${ocBlock}u;
  let seg = wid.y * params.segVec4;
  let hasLeft = quadW > 0u;
  let hasRight = quadW + 1u < params.quadsW;
  ${accs.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let plane = (n * params.inC + params.icStart + icLocal) * params.H;
    for (var kh = 0u; kh < 3u; kh = kh + 1u) {
      let ih = i32(oh + kh) - 1;
      if (ih < 0 || ih >= i32(params.H)) { continue; }
      let center = ((plane + u32(ih)) * params.W + ow0) / 4u;
      let xb = x[center];
      let xa = select(vec4f(0.0), x[center - 1u], hasLeft);
      let xc = select(vec4f(0.0), x[center + 1u], hasRight);
      let taps = array<vec4f, 3>(vec4f(xa.w, xb.x, xb.y, xb.z), xb, vec4f(xb.y, xb.z, xb.w, xc.x));
      let wRow = seg + (icLocal * 9u + kh * 3u) * ${ocBlock / 4}u;
      for (var kw = 0u; kw < 3u; kw = kw + 1u) {
        let xv = taps[kw];
        ${
      Array.from(
        { length: ocBlock / 4 },
        (_, i) => `let w${i} = w[wRow + kw * ${ocBlock / 4}u + ${i}u];`,
      ).join("\n        ")
    }
        ${fmas.join("\n        ")}
      }
    }
  }
  if (!valid) { return; }
  ${stores.join("\n  ")}
}`,
  );
}

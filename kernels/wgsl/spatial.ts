/**
 * Spatial kernels on [planes, H, W] (planes = N * C): max-pooling with saved arg-max, and
 * nearest / bilinear resizing (align_corners=false). Backward passes gather, so no atomics.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";

const POOL_UNIFORMS =
  "planes: u32, inH: u32, inW: u32, outH: u32, outW: u32, kH: u32, kW: u32, strideH: u32, " +
  "strideW: u32, padH: u32, padW: u32,";

/** y = max over the window (padding counts as -inf); argmax[i] = ih * inW + iw of the first max. */
export function maxPool2dForwardKernel(): KernelSource {
  return kernel(
    "maxPool2dForward",
    {},
    ["read", "readWrite", "readWrite"],
    `${
      declareBindings(
        [["x", "read"], ["y", "readWrite"], ["argmax", "readWrite", "u32"]],
        POOL_UNIFORMS,
      )
    }
${linearMain()}
  let outPlane = params.outH * params.outW;
  if (index >= params.planes * outPlane) { return; }
  let plane = index / outPlane;
  let r = index - plane * outPlane;
  let oh = r / params.outW;
  let ow = r - oh * params.outW;
  let h0 = i32(oh * params.strideH) - i32(params.padH);
  let w0 = i32(ow * params.strideW) - i32(params.padW);
  let base = plane * params.inH * params.inW;
  var best = -3.402823e38;
  var bestIndex = 0u;
  var found = false;
  for (var kh = 0; kh < i32(params.kH); kh = kh + 1) {
    let ih = h0 + kh;
    if (ih < 0 || ih >= i32(params.inH)) { continue; }
    for (var kw = 0; kw < i32(params.kW); kw = kw + 1) {
      let iw = w0 + kw;
      if (iw < 0 || iw >= i32(params.inW)) { continue; }
      let at = u32(ih) * params.inW + u32(iw);
      let v = x[base + at];
      if (!found || v > best) { best = v; bestIndex = at; found = true; }
    }
  }
  y[index] = best;
  argmax[index] = bestIndex;
}`,
  );
}

/** dx[ih, iw] = sum of dy over the windows whose arg-max is (ih, iw). */
export function maxPool2dBackwardKernel(): KernelSource {
  return kernel(
    "maxPool2dBackward",
    {},
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read"], ["argmax", "read", "u32"], ["dx", "readWrite"]],
        POOL_UNIFORMS,
      )
    }
fn firstWindow(i: u32, pad: u32, k: u32, stride: u32) -> u32 {
  let num = i32(i + pad) - i32(k) + 1;
  if (num <= 0) { return 0u; }
  return (u32(num) + stride - 1u) / stride;
}
${linearMain()}
  let inPlane = params.inH * params.inW;
  if (index >= params.planes * inPlane) { return; }
  let plane = index / inPlane;
  let at = index - plane * inPlane;
  let ih = at / params.inW;
  let iw = at - ih * params.inW;
  let ohEnd = min(params.outH, (ih + params.padH) / params.strideH + 1u);
  let owEnd = min(params.outW, (iw + params.padW) / params.strideW + 1u);
  let outBase = plane * params.outH * params.outW;
  var acc = 0.0;
  for (var oh = firstWindow(ih, params.padH, params.kH, params.strideH); oh < ohEnd; oh = oh + 1u) {
    for (var ow = firstWindow(iw, params.padW, params.kW, params.strideW); ow < owEnd; ow = ow + 1u) {
      let o = outBase + oh * params.outW + ow;
      if (argmax[o] == at) { acc = acc + dy[o]; }
    }
  }
  dx[index] = acc;
}`,
  );
}

/** Resize modes, both with PyTorch's align_corners=false source mapping. */
export type ResizeMode = "nearest" | "bilinear";

const RESIZE_UNIFORMS =
  "planes: u32, inH: u32, inW: u32, outH: u32, outW: u32, scaleH: f32, scaleW: f32,";

// Source taps of one output coordinate: PyTorch's area_pixel_compute_source_index with
// align_corners=false (negative sources clamp to 0) and nearest's floor(dst * scale). tapWeight is
// the weight with which input `src` contributes to output `dst` along one axis.
function taps(mode: ResizeMode): string {
  const weight = mode === "bilinear"
    ? `let t = bilinearTaps(dst, scale, inSize);
  return select(0.0, 1.0 - t.w1, t.i0 == src) + select(0.0, t.w1, t.i1 == src);`
    : `return select(0.0, 1.0, nearestSource(dst, scale, inSize) == src);`;
  return `struct Taps { i0: u32, i1: u32, w1: f32 }
fn bilinearTaps(dst: u32, scale: f32, inSize: u32) -> Taps {
  let src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
  let i0 = min(u32(src), inSize - 1u);
  let i1 = select(i0, i0 + 1u, i0 + 1u < inSize);
  return Taps(i0, i1, src - f32(i0));
}
fn nearestSource(dst: u32, scale: f32, inSize: u32) -> u32 {
  return min(u32(floor(f32(dst) * scale)), inSize - 1u);
}
fn tapWeight(dst: u32, src: u32, scale: f32, inSize: u32) -> f32 {
  ${weight}
}`;
}

/** y = resize(x). Threads: one per output element. */
export function resizeForwardKernel(mode: ResizeMode): KernelSource {
  const body = mode === "bilinear"
    ? `let th = bilinearTaps(oh, params.scaleH, params.inH);
  let tw = bilinearTaps(ow, params.scaleW, params.inW);
  let r0 = base + th.i0 * params.inW;
  let r1 = base + th.i1 * params.inW;
  let top = x[r0 + tw.i0] * (1.0 - tw.w1) + x[r0 + tw.i1] * tw.w1;
  let bottom = x[r1 + tw.i0] * (1.0 - tw.w1) + x[r1 + tw.i1] * tw.w1;
  y[index] = top * (1.0 - th.w1) + bottom * th.w1;`
    : `let ih = nearestSource(oh, params.scaleH, params.inH);
  let iw = nearestSource(ow, params.scaleW, params.inW);
  y[index] = x[base + ih * params.inW + iw];`;
  return kernel(
    "resizeForward",
    { mode },
    ["read", "readWrite"],
    `${declareBindings([["x", "read"], ["y", "readWrite"]], RESIZE_UNIFORMS)}
${taps(mode)}
${linearMain()}
  let outPlane = params.outH * params.outW;
  if (index >= params.planes * outPlane) { return; }
  let plane = index / outPlane;
  let r = index - plane * outPlane;
  let oh = r / params.outW;
  let ow = r - oh * params.outW;
  let base = plane * params.inH * params.inW;
  ${body}
}`,
  );
}

/**
 * dx[ih, iw] = sum over outputs (oh, ow) of weight(oh -> ih) * weight(ow -> iw) * dy[oh, ow].
 * Only outputs within a small window of ih * (out/in) can touch ih; the window is widened by one
 * on each side and every candidate's weight is recomputed exactly as in the forward.
 */
export function resizeBackwardKernel(mode: ResizeMode): KernelSource {
  return kernel(
    "resizeBackward",
    { mode },
    ["read", "readWrite"],
    `${declareBindings([["dy", "read"], ["dx", "readWrite"]], RESIZE_UNIFORMS)}
${taps(mode)}
fn firstOutput(i: u32, scale: f32) -> u32 {
  return u32(max(floor((f32(i) - 0.5) / scale - 0.5) - 1.0, 0.0));
}
fn endOutput(i: u32, scale: f32, outSize: u32) -> u32 {
  return min(u32(max(ceil((f32(i) + 1.5) / scale - 0.5) + 2.0, 0.0)), outSize);
}
${linearMain()}
  let inPlane = params.inH * params.inW;
  if (index >= params.planes * inPlane) { return; }
  let plane = index / inPlane;
  let r = index - plane * inPlane;
  let ih = r / params.inW;
  let iw = r - ih * params.inW;
  let base = plane * params.outH * params.outW;
  let owStart = firstOutput(iw, params.scaleW);
  let owEnd = endOutput(iw, params.scaleW, params.outW);
  var acc = 0.0;
  for (var oh = firstOutput(ih, params.scaleH); oh < endOutput(ih, params.scaleH, params.outH);
       oh = oh + 1u) {
    let wh = tapWeight(oh, ih, params.scaleH, params.inH);
    if (wh == 0.0) { continue; }
    var rowSum = 0.0;
    for (var ow = owStart; ow < owEnd; ow = ow + 1u) {
      rowSum = rowSum + tapWeight(ow, iw, params.scaleW, params.inW) * dy[base + oh * params.outW + ow];
    }
    acc = acc + wh * rowSum;
  }
  dx[index] = acc;
}`,
  );
}

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

/**
 * Max-pool backward for 3x3 windows, stride 2, padding 1 (the ResNet stem): one thread per 2x2
 * input block (rows 2bh, 2bh + 1, columns 2bw, 2bw + 1), which only the outputs (bh, bw),
 * (bh + 1, bw), (bh, bw + 1) and (bh + 1, bw + 1) cover; it reads their dy and arg-max once (2 loads
 * per input instead of 4.5 for the generic gather) and writes the block. Threads: planes * outH *
 * outW (outH = ceil(inH / 2), outW = ceil(inW / 2)). Uniforms: those of the generic kernel.
 */
export function maxPool3x3s2BackwardKernel(): KernelSource {
  return kernel(
    "maxPool3x3s2Backward",
    {},
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read"], ["argmax", "read", "u32"], ["dx", "readWrite"]],
        POOL_UNIFORMS,
      )
    }
${linearMain()}
  let outPlane = params.outH * params.outW;
  if (index >= params.planes * outPlane) { return; }
  let plane = index / outPlane;
  let r = index - plane * outPlane;
  let bh = r / params.outW;
  let bw = r - bh * params.outW;
  let o = plane * outPlane + r;
  let down = bh + 1u < params.outH;
  let right = bw + 1u < params.outW;
  // Outputs (bh, bw), (bh, bw + 1), (bh + 1, bw), (bh + 1, bw + 1); absent ones get no index.
  let g0 = dy[o];
  let a0 = argmax[o];
  let g1 = select(0.0, dy[min(o + 1u, params.planes * outPlane - 1u)], right);
  let a1 = select(0xffffffffu, argmax[min(o + 1u, params.planes * outPlane - 1u)], right);
  let oDown = min(o + params.outW, params.planes * outPlane - 1u);
  let g2 = select(0.0, dy[oDown], down);
  let a2 = select(0xffffffffu, argmax[oDown], down);
  let oDiag = min(o + params.outW + 1u, params.planes * outPlane - 1u);
  let g3 = select(0.0, dy[oDiag], down && right);
  let a3 = select(0xffffffffu, argmax[oDiag], down && right);
  let ih = 2u * bh;
  let iw = 2u * bw;
  let base = plane * params.inH * params.inW;
  for (var dh = 0u; dh < 2u; dh = dh + 1u) {
    if (ih + dh >= params.inH) { break; }
    for (var dw = 0u; dw < 2u; dw = dw + 1u) {
      if (iw + dw >= params.inW) { break; }
      let at = (ih + dh) * params.inW + iw + dw;
      dx[base + at] = select(0.0, g0, a0 == at) + select(0.0, g1, a1 == at) +
        select(0.0, g2, a2 == at) + select(0.0, g3, a3 == at);
    }
  }
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

// ---- Specialized 2x2 kernels: each thread owns a row quad of vec4 loads (width % 4 == 0). ------

const QUAD_UNIFORMS = "total: u32, inH: u32, outH: u32, quadsW: u32, inW: u32,";

/**
 * Decompose a thread index (over planes * rows * quadsW / per: `per` column quads a thread) into
 * plane, row and the thread's first quad q.
 */
function quadIndex(rows: string, per = 1): string {
  const groups = per === 1 ? "params.quadsW" : `(params.quadsW / ${per}u)`;
  const first = per === 1 ? `index % ${groups}` : `(index % ${groups}) * ${per}u`;
  return `if (index >= params.total) { return; }
  let q = ${first};
  let t = index / ${groups};
  let row = t % ${rows};
  let plane = t / ${rows};`;
}

/**
 * Max-pool 2x2, stride 2, no padding, inW % 4 == 0. Threads: one per pair of outputs (planes *
 * outH * inW / 4), or with `pairs` (inW % 8 == 0) one per two pairs, whose outputs and arg-maxes
 * then go out as one vec4 each (llvmpipe pays per store instruction: on 64x32x64x64 the pairs
 * halve the stores); same first-max rule as {@link maxPool2dForwardKernel} (scan order kh, kw; a
 * later value wins only if strictly greater). Uniforms: total (threads), inH, outH, quadsW
 * (inW / 4), inW.
 */
export function maxPool2x2ForwardKernel(pairs = false): KernelSource {
  const per = pairs ? 2 : 1;
  const windows: string[] = [];
  const values: string[] = [];
  const positions: string[] = [];
  for (let p = 0; p < per; p++) {
    windows.push(
      `let top${p} = x[(plane * params.inH + 2u * oh) * params.quadsW + q + ${p}u];`,
      `let bottom${p} = x[(plane * params.inH + 2u * oh + 1u) * params.quadsW + q + ${p}u];`,
      `let at${p} = 2u * oh * params.inW + 4u * (q + ${p}u);`,
      `let below${p} = at${p} + params.inW;`,
      `let left${p} = best4(top${p}.x, top${p}.y, bottom${p}.x, bottom${p}.y, at${p}, ` +
        `at${p} + 1u, below${p}, below${p} + 1u);`,
      `let right${p} = best4(top${p}.z, top${p}.w, bottom${p}.z, bottom${p}.w, at${p} + 2u, ` +
        `at${p} + 3u, below${p} + 2u, below${p} + 3u);`,
    );
    values.push(`left${p}.v`, `right${p}.v`);
    positions.push(`left${p}.i`, `right${p}.i`);
  }
  const width = 2 * per;
  return kernel(
    "maxPool2x2Forward",
    pairs ? { pairs } : {},
    ["read", "readWrite", "readWrite"],
    `${
      declareBindings(
        [["x", "read", "vec4f"], ["y", "readWrite", `vec${width}f`], [
          "argmax",
          "readWrite",
          `vec${width}u`,
        ]],
        QUAD_UNIFORMS,
      )
    }
struct Best { v: f32, i: u32 }
fn best4(a: f32, b: f32, c: f32, d: f32, ia: u32, ib: u32, ic: u32, id: u32) -> Best {
  var r = Best(a, ia);
  if (b > r.v) { r = Best(b, ib); }
  if (c > r.v) { r = Best(c, ic); }
  if (d > r.v) { r = Best(d, id); }
  return r;
}
${linearMain()}
  ${quadIndex("params.outH", per)}
  let oh = row;
  ${windows.join("\n  ")}
  y[index] = vec${width}f(${values.join(", ")});
  argmax[index] = vec${width}u(${positions.join(", ")});
}`,
  );
}

/**
 * dx of max-pool 2x2 stride 2 (no padding, inW % 4 == 0): windows do not overlap, so each input
 * gets its window's dy or 0. Threads: one per pair of input rows and column quad (planes *
 * ceil(inH / 2) * inW / 4), or with `pairs` (inW % 8 == 0) two column quads, reading dy and the
 * arg-maxes as one vec4 each; with an odd inH the last row (in no window) gets 0.
 */
export function maxPool2x2BackwardKernel(pairs = false): KernelSource {
  const per = pairs ? 2 : 1;
  const width = 2 * per;
  const zeros: string[] = [];
  const writes: string[] = [];
  for (let p = 0; p < per; p++) {
    zeros.push(`dx[top + ${p}u] = vec4f(0.0);`);
    const g = pairs ? `g.${p === 0 ? "xy" : "zw"}` : "g";
    const a = pairs ? `a.${p === 0 ? "xy" : "zw"}` : "a";
    writes.push(
      `dx[top + ${p}u] = pick(${g}, ${a}, at + ${4 * p}u);`,
      `dx[top + params.quadsW + ${p}u] = pick(${g}, ${a}, at + params.inW + ${4 * p}u);`,
    );
  }
  return kernel(
    "maxPool2x2Backward",
    pairs ? { pairs } : {},
    ["read", "read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read", `vec${width}f`], ["argmax", "read", `vec${width}u`], [
          "dx",
          "readWrite",
          "vec4f",
        ]],
        QUAD_UNIFORMS,
      )
    }
fn pick(g: vec2f, a: vec2u, at: u32) -> vec4f {
  return vec4f(select(0.0, g.x, a.x == at), select(0.0, g.x, a.x == at + 1u),
                select(0.0, g.y, a.y == at + 2u), select(0.0, g.y, a.y == at + 3u));
}
${linearMain()}
  ${quadIndex("((params.inH + 1u) / 2u)", per)}
  let oh = row;
  let top = (plane * params.inH + 2u * oh) * params.quadsW + q;
  if (oh >= params.outH) {
    ${zeros.join("\n    ")}
    return;
  }
  let o = (plane * params.outH + oh) * (params.quadsW / ${per}u) + q / ${per}u;
  let g = dy[o];
  let a = argmax[o];
  let at = 2u * oh * params.inW + 4u * q;
  ${writes.join("\n  ")}
}`,
  );
}

/**
 * Nearest x2 upsampling (out = 2 * in in both axes, inW % 4 == 0). Threads: one per input quad
 * (planes * inH * inW / 4), each writing a 2 x 8 block.
 */
export function upsample2xForwardKernel(): KernelSource {
  return kernel(
    "upsample2xForward",
    {},
    ["read", "readWrite"],
    `${declareBindings([["x", "read", "vec4f"], ["y", "readWrite", "vec4f"]], QUAD_UNIFORMS)}
${linearMain()}
  ${quadIndex("params.inH")}
  let v = x[index];
  let a = vec4f(v.x, v.x, v.y, v.y);
  let b = vec4f(v.z, v.z, v.w, v.w);
  let o = (plane * params.outH + 2u * row) * 2u * params.quadsW + 2u * q;
  y[o] = a;
  y[o + 1u] = b;
  y[o + 2u * params.quadsW] = a;
  y[o + 2u * params.quadsW + 1u] = b;
}`,
  );
}

/** dx of nearest x2 upsampling: each input sums its 2x2 block. Threads: one per input quad. */
export function upsample2xBackwardKernel(): KernelSource {
  return kernel(
    "upsample2xBackward",
    {},
    ["read", "readWrite"],
    `${declareBindings([["dy", "read", "vec4f"], ["dx", "readWrite", "vec4f"]], QUAD_UNIFORMS)}
${linearMain()}
  ${quadIndex("params.inH")}
  let o = (plane * params.outH + 2u * row) * 2u * params.quadsW + 2u * q;
  let a = dy[o] + dy[o + 2u * params.quadsW];
  let b = dy[o + 1u] + dy[o + 2u * params.quadsW + 1u];
  dx[index] = vec4f(a.x + a.y, a.z + a.w, b.x + b.y, b.z + b.w);
}`,
  );
}

// ---- Warp: bilinear sampling of an image at per-pixel offsets (a flow in pixels). --------------

const WARP_UNIFORMS =
  "batch: u32, channels: u32, height: u32, width: u32, maxShift: f32, reach: u32,";

// Where output pixel (n, h, w) samples: the flow (dx, dy) there, clamped to +-maxShift, added to
// (w, h) and clamped to the image (border replication). gradX / gradY say whether the position
// moves with the flow (false where either clamp holds), so the flow's gradient is 0 there.
const WARP_SAMPLE = `struct Sample { x0: u32, x1: u32, y0: u32, y1: u32, fx: f32, fy: f32,
  gradX: bool, gradY: bool }
fn warpSample(n: u32, h: u32, w: u32) -> Sample {
  let plane = params.height * params.width;
  let at = n * 2u * plane + h * params.width + w;
  let shiftX = flow[at];
  let shiftY = flow[at + plane];
  let rawX = f32(w) + clamp(shiftX, -params.maxShift, params.maxShift);
  let rawY = f32(h) + clamp(shiftY, -params.maxShift, params.maxShift);
  let lastX = f32(params.width - 1u);
  let lastY = f32(params.height - 1u);
  let px = clamp(rawX, 0.0, lastX);
  let py = clamp(rawY, 0.0, lastY);
  let x0 = min(u32(floor(px)), params.width - 1u);
  let y0 = min(u32(floor(py)), params.height - 1u);
  return Sample(x0, min(x0 + 1u, params.width - 1u), y0, min(y0 + 1u, params.height - 1u),
    px - f32(x0), py - f32(y0),
    abs(shiftX) <= params.maxShift && rawX >= 0.0 && rawX <= lastX,
    abs(shiftY) <= params.maxShift && rawY >= 0.0 && rawY <= lastY);
}`;

/** Decompose a thread index over batch * height * width into n, h, w. */
const WARP_PIXEL = `let plane = params.height * params.width;
  if (index >= params.batch * plane) { return; }
  let n = index / plane;
  let r = index - n * plane;
  let h = r / params.width;
  let w = r - h * params.width;`;

/**
 * y[n, c, h, w] = bilinear sample of image[n, c] at (w + dx, h + dy), (dx, dy) = flow[n, :, h, w]
 * in pixels (clamped to +-maxShift, positions clamped to the image). Threads: one per pixel, all
 * channels (the taps are computed once).
 */
export function warpForwardKernel(): KernelSource {
  return kernel(
    "warpForward",
    {},
    ["read", "read", "readWrite"],
    `${declareBindings([["image", "read"], ["flow", "read"], ["y", "readWrite"]], WARP_UNIFORMS)}
${WARP_SAMPLE}
${linearMain()}
  ${WARP_PIXEL}
  let s = warpSample(n, h, w);
  for (var c = 0u; c < params.channels; c = c + 1u) {
    let base = (n * params.channels + c) * plane;
    let top = image[base + s.y0 * params.width + s.x0] * (1.0 - s.fx) +
      image[base + s.y0 * params.width + s.x1] * s.fx;
    let bottom = image[base + s.y1 * params.width + s.x0] * (1.0 - s.fx) +
      image[base + s.y1 * params.width + s.x1] * s.fx;
    y[base + r] = top * (1.0 - s.fy) + bottom * s.fy;
  }
}`,
  );
}

/**
 * dflow of the warp: per pixel, the sum over channels of dy times the sample's derivative along x
 * (and y), 0 where the position is clamped. Threads: one per pixel.
 */
export function warpBackwardFlowKernel(): KernelSource {
  return kernel(
    "warpBackwardFlow",
    {},
    ["read", "read", "read", "readWrite"],
    `${
      declareBindings(
        [["dy", "read"], ["image", "read"], ["flow", "read"], ["dflow", "readWrite"]],
        WARP_UNIFORMS,
      )
    }
${WARP_SAMPLE}
${linearMain()}
  ${WARP_PIXEL}
  let s = warpSample(n, h, w);
  var gx = 0.0;
  var gy = 0.0;
  for (var c = 0u; c < params.channels; c = c + 1u) {
    let base = (n * params.channels + c) * plane;
    let i00 = image[base + s.y0 * params.width + s.x0];
    let i01 = image[base + s.y0 * params.width + s.x1];
    let i10 = image[base + s.y1 * params.width + s.x0];
    let i11 = image[base + s.y1 * params.width + s.x1];
    let g = dy[base + r];
    gx = gx + g * ((1.0 - s.fy) * (i01 - i00) + s.fy * (i11 - i10));
    gy = gy + g * ((1.0 - s.fx) * (i10 - i00) + s.fx * (i11 - i01));
  }
  let at = n * 2u * plane + r;
  dflow[at] = select(0.0, gx, s.gradX);
  dflow[at + plane] = select(0.0, gy, s.gradY);
}`,
  );
}

/**
 * dimage of the warp, gathered: an input pixel can only be a tap of outputs within reach =
 * ceil(maxShift) + 1 of it, so each thread scans that window, recomputes each candidate's taps as
 * the forward does and sums weight * dy over the channels. No atomics, deterministic.
 */
export function warpBackwardImageKernel(): KernelSource {
  return kernel(
    "warpBackwardImage",
    {},
    ["read", "read", "readWrite"],
    `${declareBindings([["dy", "read"], ["flow", "read"], ["dimage", "readWrite"]], WARP_UNIFORMS)}
${WARP_SAMPLE}
fn tap(i: u32, s0: u32, s1: u32, f: f32) -> f32 {
  return select(0.0, 1.0 - f, s0 == i) + select(0.0, f, s1 == i);
}
${linearMain()}
  ${WARP_PIXEL}
  for (var c = 0u; c < params.channels; c = c + 1u) {
    dimage[(n * params.channels + c) * plane + r] = 0.0;
  }
  let hEnd = min(h + params.reach + 1u, params.height);
  let wStart = select(0u, w - params.reach, w > params.reach);
  let wEnd = min(w + params.reach + 1u, params.width);
  for (var oh = select(0u, h - params.reach, h > params.reach); oh < hEnd; oh = oh + 1u) {
    for (var ow = wStart; ow < wEnd; ow = ow + 1u) {
      let s = warpSample(n, oh, ow);
      let weight = tap(h, s.y0, s.y1, s.fy) * tap(w, s.x0, s.x1, s.fx);
      if (weight == 0.0) { continue; }
      let o = oh * params.width + ow;
      for (var c = 0u; c < params.channels; c = c + 1u) {
        let base = (n * params.channels + c) * plane;
        dimage[base + r] = dimage[base + r] + weight * dy[base + o];
      }
    }
  }
}`,
  );
}

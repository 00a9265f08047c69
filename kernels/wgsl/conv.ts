/**
 * Direct 2-D convolution (NCHW, weight [O, I, kH, kW], zero padding) and its two backward passes.
 *
 * Each thread is register-blocked over 4 channels x 4 columns (forward, backward-input) or
 * 4 output channels x the kernel width (backward-weight), so every loaded value feeds several
 * multiply-adds. Shapes live in the uniform block: one pipeline serves every layer.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, memoizedTemplate, u32Fields } from "./common.ts";

/** Uniform layout shared by the three conv kernels (all u32). */
export const CONV_UNIFORM_FIELDS = [
  "batch",
  "inC",
  "inH",
  "inW",
  "outC",
  "outH",
  "outW",
  "kH",
  "kW",
  "stride",
  "pad",
  "blocksC",
  "blocksW",
  "samplesPerSplit",
  "splits",
] as const;

const CONV_UNIFORMS = u32Fields(CONV_UNIFORM_FIELDS);

/** Forward: y = conv(x, w) (+ bias). Threads: batch * ceil(outC/4) * outH * ceil(outW/4). */
function buildConv2dForwardKernel(bias: boolean): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["x", "read"], ["w", "read"]];
  if (bias) bindings.push(["b", "read"]);
  bindings.push(["y", "readWrite"]);
  return kernel(
    "conv2dForward",
    { bias },
    bindings.map(([, kind]) => kind),
    `${declareBindings(bindings, CONV_UNIFORMS)}
fn loadX(row: u32, iw: i32) -> f32 {
  if (iw < 0 || iw >= i32(params.inW)) { return 0.0; }
  return x[row + u32(iw)];
}
fn store(n: u32, oc: u32, oh: u32, ow0: u32, acc: vec4f) {
  if (oc >= params.outC) { return; }
  let base = ((n * params.outC + oc) * params.outH + oh) * params.outW + ow0;
  let shift = ${bias ? "b[oc]" : "0.0"};
  for (var l = 0u; l < 4u; l = l + 1u) {
    if (ow0 + l < params.outW) { y[base + l] = acc[l] + shift; }
  }
}
${linearMain()}
  if (index >= params.batch * params.blocksC * params.outH * params.blocksW) { return; }
  var t = index;
  let owBlock = t % params.blocksW;
  t = t / params.blocksW;
  let oh = t % params.outH;
  t = t / params.outH;
  let ocBlock = t % params.blocksC;
  let n = t / params.blocksC;
  let oc0 = ocBlock * 4u;
  let ow0 = owBlock * 4u;
  let s = i32(params.stride);
  let filterSize = params.inC * params.kH * params.kW;
  // Rows past outC are clamped so loads stay in bounds; store() drops them.
  let w0 = min(oc0, params.outC - 1u) * filterSize;
  let w1 = min(oc0 + 1u, params.outC - 1u) * filterSize;
  let w2 = min(oc0 + 2u, params.outC - 1u) * filterSize;
  let w3 = min(oc0 + 3u, params.outC - 1u) * filterSize;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var ic = 0u; ic < params.inC; ic = ic + 1u) {
    let xPlane = (n * params.inC + ic) * params.inH;
    for (var kh = 0u; kh < params.kH; kh = kh + 1u) {
      let ih = i32(oh * params.stride + kh) - i32(params.pad);
      if (ih < 0 || ih >= i32(params.inH)) { continue; }
      let xRow = (xPlane + u32(ih)) * params.inW;
      let wRow = (ic * params.kH + kh) * params.kW;
      for (var kw = 0u; kw < params.kW; kw = kw + 1u) {
        let iw = i32(ow0 * params.stride + kw) - i32(params.pad);
        let xv = vec4f(loadX(xRow, iw), loadX(xRow, iw + s), loadX(xRow, iw + 2 * s),
                       loadX(xRow, iw + 3 * s));
        let wi = wRow + kw;
        acc0 = acc0 + w[w0 + wi] * xv;
        acc1 = acc1 + w[w1 + wi] * xv;
        acc2 = acc2 + w[w2 + wi] * xv;
        acc3 = acc3 + w[w3 + wi] * xv;
      }
    }
  }
  store(n, oc0, oh, ow0, acc0);
  store(n, oc0 + 1u, oh, ow0, acc1);
  store(n, oc0 + 2u, oh, ow0, acc2);
  store(n, oc0 + 3u, oh, ow0, acc3);
}`,
  );
}

/**
 * Backward to the input: dx[n, ic, ih, iw] = sum over oc, kh, kw of dy[n, oc, oh, ow] *
 * w[oc, ic, kh, kw] where oh * stride = ih + pad - kh (likewise ow). Gather form, no atomics.
 * Threads: batch * ceil(inC/4) * inH * ceil(inW/4).
 */
function buildConv2dBackwardInputKernel(): KernelSource {
  return kernel(
    "conv2dBackwardInput",
    {},
    ["read", "read", "readWrite"],
    `${declareBindings([["dy", "read"], ["w", "read"], ["dx", "readWrite"]], CONV_UNIFORMS)}
fn loadDy(row: u32, ownum: i32) -> f32 {
  let s = i32(params.stride);
  if (ownum < 0 || ownum % s != 0) { return 0.0; }
  let ow = ownum / s;
  if (ow >= i32(params.outW)) { return 0.0; }
  return dy[row + u32(ow)];
}
fn store(n: u32, ic: u32, ih: u32, iw0: u32, acc: vec4f) {
  if (ic >= params.inC) { return; }
  let base = ((n * params.inC + ic) * params.inH + ih) * params.inW + iw0;
  for (var l = 0u; l < 4u; l = l + 1u) {
    if (iw0 + l < params.inW) { dx[base + l] = acc[l]; }
  }
}
${linearMain()}
  if (index >= params.batch * params.blocksC * params.inH * params.blocksW) { return; }
  var t = index;
  let iwBlock = t % params.blocksW;
  t = t / params.blocksW;
  let ih = t % params.inH;
  t = t / params.inH;
  let icBlock = t % params.blocksC;
  let n = t / params.blocksC;
  let ic0 = icBlock * 4u;
  let iw0 = i32(iwBlock * 4u);
  let s = i32(params.stride);
  let pad = i32(params.pad);
  let plane = params.kH * params.kW;
  let c0 = min(ic0, params.inC - 1u) * plane;
  let c1 = min(ic0 + 1u, params.inC - 1u) * plane;
  let c2 = min(ic0 + 2u, params.inC - 1u) * plane;
  let c3 = min(ic0 + 3u, params.inC - 1u) * plane;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var oc = 0u; oc < params.outC; oc = oc + 1u) {
    let dyPlane = (n * params.outC + oc) * params.outH;
    let wOc = oc * params.inC * plane;
    for (var kh = 0u; kh < params.kH; kh = kh + 1u) {
      let ohnum = i32(ih) + pad - i32(kh);
      if (ohnum < 0 || ohnum % s != 0) { continue; }
      let oh = u32(ohnum / s);
      if (oh >= params.outH) { continue; }
      let dyRow = (dyPlane + oh) * params.outW;
      for (var kw = 0u; kw < params.kW; kw = kw + 1u) {
        let own = iw0 + pad - i32(kw);
        let g = vec4f(loadDy(dyRow, own), loadDy(dyRow, own + 1), loadDy(dyRow, own + 2),
                      loadDy(dyRow, own + 3));
        let wi = wOc + kh * params.kW + kw;
        acc0 = acc0 + w[wi + c0] * g;
        acc1 = acc1 + w[wi + c1] * g;
        acc2 = acc2 + w[wi + c2] * g;
        acc3 = acc3 + w[wi + c3] * g;
      }
    }
  }
  store(n, ic0, ih, u32(iw0), acc0);
  store(n, ic0 + 1u, ih, u32(iw0), acc1);
  store(n, ic0 + 2u, ih, u32(iw0), acc2);
  store(n, ic0 + 3u, ih, u32(iw0), acc3);
}`,
  );
}

/**
 * Backward to the weight, split over the batch: partial[split, oc, ic, kh, kw] = sum over the
 * split's samples, oh, ow of dy[n, oc, oh, ow] * x[n, ic, oh*s - pad + kh, ow*s - pad + kw].
 * The kernel width is a compile-time constant (`kernelWidth`) so the kw loop is unrolled.
 * Threads: splits * ceil(outC/4) * inC * kH.
 */
function buildConv2dBackwardWeightKernel(kernelWidth: number): KernelSource {
  return kernel(
    "conv2dBackwardWeight",
    { kw: kernelWidth },
    ["read", "read", "readWrite"],
    `${declareBindings([["dy", "read"], ["x", "read"], ["partial", "readWrite"]], CONV_UNIFORMS)}
const KW = ${kernelWidth}u;
${linearMain()}
  if (index >= params.splits * params.blocksC * params.inC * params.kH) { return; }
  var t = index;
  let kh = t % params.kH;
  t = t / params.kH;
  let ic = t % params.inC;
  t = t / params.inC;
  let ocBlock = t % params.blocksC;
  let split = t / params.blocksC;
  let oc0 = ocBlock * 4u;
  let dyPlane = params.outH * params.outW;
  let o0 = min(oc0, params.outC - 1u) * dyPlane;
  let o1 = min(oc0 + 1u, params.outC - 1u) * dyPlane;
  let o2 = min(oc0 + 2u, params.outC - 1u) * dyPlane;
  let o3 = min(oc0 + 3u, params.outC - 1u) * dyPlane;
  let pad = i32(params.pad);
  var acc: array<vec4f, KW>;
  for (var k = 0u; k < KW; k = k + 1u) { acc[k] = vec4f(0.0); }
  let nStart = split * params.samplesPerSplit;
  let nEnd = min(params.batch, nStart + params.samplesPerSplit);
  for (var n = nStart; n < nEnd; n = n + 1u) {
    let dySample = n * params.outC * dyPlane;
    let xPlane = (n * params.inC + ic) * params.inH;
    for (var oh = 0u; oh < params.outH; oh = oh + 1u) {
      let ih = i32(oh * params.stride + kh) - pad;
      if (ih < 0 || ih >= i32(params.inH)) { continue; }
      let xRow = (xPlane + u32(ih)) * params.inW;
      let dyRow = dySample + oh * params.outW;
      for (var ow = 0u; ow < params.outW; ow = ow + 1u) {
        let g = vec4f(dy[dyRow + o0 + ow], dy[dyRow + o1 + ow], dy[dyRow + o2 + ow],
                      dy[dyRow + o3 + ow]);
        let iwBase = i32(ow * params.stride) - pad;
        for (var k = 0u; k < KW; k = k + 1u) {
          let iw = iwBase + i32(k);
          if (iw >= 0 && iw < i32(params.inW)) {
            acc[k] = acc[k] + g * x[xRow + u32(iw)];
          }
        }
      }
    }
  }
  let weightSize = params.outC * params.inC * params.kH * KW;
  for (var j = 0u; j < 4u; j = j + 1u) {
    let oc = oc0 + j;
    if (oc >= params.outC) { break; }
    let base = split * weightSize + ((oc * params.inC + ic) * params.kH + kh) * KW;
    for (var k = 0u; k < KW; k = k + 1u) { partial[base + k] = acc[k][j]; }
  }
}`,
  );
}

// Each template builds a specialization once (memoizedTemplate); the builders above write it.
/** {@link buildConv2dForwardKernel}, each specialization built once. */
export const conv2dForwardKernel = memoizedTemplate(buildConv2dForwardKernel);
/** {@link buildConv2dBackwardInputKernel}, each specialization built once. */
export const conv2dBackwardInputKernel = memoizedTemplate(buildConv2dBackwardInputKernel);
/** {@link buildConv2dBackwardWeightKernel}, each specialization built once. */
export const conv2dBackwardWeightKernel = memoizedTemplate(buildConv2dBackwardWeightKernel);

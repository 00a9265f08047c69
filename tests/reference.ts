/**
 * Plain-TypeScript float64 references for every kernel, written for clarity, not speed: the
 * definitions the GPU kernels are tested against (forward directly, backward through central
 * finite differences of these functions).
 */

import type { Conv2dGeometry } from "../kernels/ops.ts";

export type Shape = readonly number[];

function size(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** conv2d with zero padding; x [N, C, H, W], w [O, C, kH, kW]. */
export function conv2d(
  x: ArrayLike<number>,
  xShape: Shape,
  w: ArrayLike<number>,
  wShape: Shape,
  bias: ArrayLike<number> | null,
  stride: number,
  pad: number,
): { out: Float64Array; shape: number[] } {
  const [n, c, h, wid] = xShape;
  const [o, , kh, kw] = wShape;
  const oh = Math.floor((h + 2 * pad - kh) / stride) + 1;
  const ow = Math.floor((wid + 2 * pad - kw) / stride) + 1;
  const out = new Float64Array(n * o * oh * ow);
  for (let b = 0; b < n; b++) {
    for (let oc = 0; oc < o; oc++) {
      for (let y = 0; y < oh; y++) {
        for (let xo = 0; xo < ow; xo++) {
          let acc = bias ? bias[oc] : 0;
          for (let ic = 0; ic < c; ic++) {
            for (let i = 0; i < kh; i++) {
              const iy = y * stride - pad + i;
              if (iy < 0 || iy >= h) continue;
              for (let j = 0; j < kw; j++) {
                const ix = xo * stride - pad + j;
                if (ix < 0 || ix >= wid) continue;
                acc += x[((b * c + ic) * h + iy) * wid + ix] * w[((oc * c + ic) * kh + i) * kw + j];
              }
            }
          }
          out[((b * o + oc) * oh + y) * ow + xo] = acc;
        }
      }
    }
  }
  return { out, shape: [n, o, oh, ow] };
}

/** Batch norm over [N, C, spatial]; training uses batch stats, else the running ones. */
export function batchNorm(
  x: ArrayLike<number>,
  shape: Shape,
  weight: ArrayLike<number> | null,
  bias: ArrayLike<number> | null,
  training: boolean,
  runningMean: ArrayLike<number>,
  runningVar: ArrayLike<number>,
  momentum: number,
  eps: number,
): { out: Float64Array; newRunningMean: Float64Array; newRunningVar: Float64Array } {
  const [n, c] = shape;
  const spatial = shape.length === 4 ? shape[2] * shape[3] : 1;
  const count = n * spatial;
  const out = new Float64Array(size(shape));
  const newRunningMean = Float64Array.from(runningMean);
  const newRunningVar = Float64Array.from(runningVar);
  for (let ch = 0; ch < c; ch++) {
    let mean = runningMean[ch];
    let variance = runningVar[ch];
    if (training) {
      let s = 0;
      for (let b = 0; b < n; b++) {
        for (let k = 0; k < spatial; k++) s += x[(b * c + ch) * spatial + k];
      }
      mean = s / count;
      let v = 0;
      for (let b = 0; b < n; b++) {
        for (let k = 0; k < spatial; k++) v += (x[(b * c + ch) * spatial + k] - mean) ** 2;
      }
      variance = v / count;
      newRunningMean[ch] = (1 - momentum) * runningMean[ch] + momentum * mean;
      newRunningVar[ch] = (1 - momentum) * runningVar[ch] +
        momentum * variance * count / (count - 1);
    }
    const inv = 1 / Math.sqrt(variance + eps);
    for (let b = 0; b < n; b++) {
      for (let k = 0; k < spatial; k++) {
        const i = (b * c + ch) * spatial + k;
        const xhat = (x[i] - mean) * inv;
        out[i] = weight ? xhat * weight[ch] + bias![ch] : xhat;
      }
    }
  }
  return { out, newRunningMean, newRunningVar };
}

/** Max pooling with -inf padding (floor mode). */
export function maxPool2d(
  x: ArrayLike<number>,
  shape: Shape,
  k: number,
  stride: number,
  pad: number,
): { out: Float64Array; shape: number[] } {
  const [n, c, h, w] = shape;
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const out = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < oh; y++) {
      for (let xo = 0; xo < ow; xo++) {
        let best = -Infinity;
        for (let i = 0; i < k; i++) {
          for (let j = 0; j < k; j++) {
            const iy = y * stride - pad + i;
            const ix = xo * stride - pad + j;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            best = Math.max(best, x[(p * h + iy) * w + ix]);
          }
        }
        out[(p * oh + y) * ow + xo] = best;
      }
    }
  }
  return { out, shape: [n, c, oh, ow] };
}

/** Source taps of one output coordinate (align_corners=false), as PyTorch computes them. */
function taps(
  mode: "nearest" | "bilinear",
  dst: number,
  scale: number,
  inSize: number,
): [number, number][] {
  if (mode === "nearest") return [[Math.min(Math.floor(dst * scale), inSize - 1), 1]];
  const src = Math.max(scale * (dst + 0.5) - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = i0 + 1 < inSize ? i0 + 1 : i0;
  const l1 = src - i0;
  return [[i0, 1 - l1], [i1, l1]];
}

/** Nearest or bilinear resize; scale = source step per output pixel. */
export function resize(
  x: ArrayLike<number>,
  shape: Shape,
  outH: number,
  outW: number,
  scaleH: number,
  scaleW: number,
  mode: "nearest" | "bilinear",
): Float64Array {
  const [n, c, h, w] = shape;
  const out = new Float64Array(n * c * outH * outW);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < outH; y++) {
      for (let xo = 0; xo < outW; xo++) {
        let acc = 0;
        for (const [iy, wy] of taps(mode, y, scaleH, h)) {
          for (const [ix, wx] of taps(mode, xo, scaleW, w)) {
            acc += wy * wx * x[(p * h + iy) * w + ix];
          }
        }
        out[(p * outH + y) * outW + xo] = acc;
      }
    }
  }
  return out;
}

/**
 * Bilinear warp: image [n, c, h, w] sampled at (x + dx, y + dy), the flow [n, 2, h, w] clamped to
 * +-maxShift, the position clamped to the image (border replication).
 */
export function warp(
  image: ArrayLike<number>,
  flow: ArrayLike<number>,
  shape: Shape,
  maxShift: number,
): Float64Array {
  const [n, c, h, w] = shape;
  const out = new Float64Array(n * c * h * w);
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const at = (b * 2 * h + y) * w + x;
        const px = clamp(x + clamp(flow[at], -maxShift, maxShift), 0, w - 1);
        const py = clamp(y + clamp(flow[at + h * w], -maxShift, maxShift), 0, h - 1);
        const x0 = Math.floor(px), y0 = Math.floor(py);
        const x1 = Math.min(x0 + 1, w - 1), y1 = Math.min(y0 + 1, h - 1);
        const fx = px - x0, fy = py - y0;
        for (let ch = 0; ch < c; ch++) {
          const base = (b * c + ch) * h * w;
          const at00 = image[base + y0 * w + x0], at01 = image[base + y0 * w + x1];
          const at10 = image[base + y1 * w + x0], at11 = image[base + y1 * w + x1];
          out[base + y * w + x] = (1 - fy) * ((1 - fx) * at00 + fx * at01) +
            fy * ((1 - fx) * at10 + fx * at11);
        }
      }
    }
  }
  return out;
}

/** y = x W^T + b, x [rows, in], W [out, in]. */
export function linear(
  x: ArrayLike<number>,
  rows: number,
  inF: number,
  w: ArrayLike<number>,
  outF: number,
  b: ArrayLike<number> | null,
): Float64Array {
  const out = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let acc = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) acc += x[r * inF + i] * w[o * inF + i];
      out[r * outF + o] = acc;
    }
  }
  return out;
}

/** Mean over each [H, W] plane. */
export function adaptiveAvgPool1(
  x: ArrayLike<number>,
  planes: number,
  spatial: number,
): Float64Array {
  const out = new Float64Array(planes);
  for (let p = 0; p < planes; p++) {
    let s = 0;
    for (let k = 0; k < spatial; k++) s += x[p * spatial + k];
    out[p] = s / spatial;
  }
  return out;
}

/** Element-wise activation. */
export function activation(op: "relu" | "sigmoid" | "tanh", x: ArrayLike<number>): Float64Array {
  const f = op === "relu"
    ? (v: number) => Math.max(v, 0)
    : op === "sigmoid"
    ? (v: number) => 1 / (1 + Math.exp(-v))
    : Math.tanh;
  return Float64Array.from(x, f);
}

/** Concatenate along dim. */
export function cat(parts: { data: ArrayLike<number>; shape: Shape }[], dim: number): Float64Array {
  const outer = size(parts[0].shape.slice(0, dim));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const row = p.shape[dim] * size(p.shape.slice(dim + 1));
      for (let j = 0; j < row; j++) out.push(p.data[o * row + j]);
    }
  }
  return Float64Array.from(out);
}

/** Slice start..start+length along dim. */
export function narrow(
  x: ArrayLike<number>,
  shape: Shape,
  dim: number,
  start: number,
  length: number,
): Float64Array {
  const outer = size(shape.slice(0, dim));
  const inner = size(shape.slice(dim + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let j = start * inner; j < (start + length) * inner; j++) {
      out.push(x[o * shape[dim] * inner + j]);
    }
  }
  return Float64Array.from(out);
}

/** out[m] = scale * sum over o, k of x[(o * mid + m) * inner + k] (or of (x - y)^2), in float64. */
export function reduceMiddle(
  x: ArrayLike<number>,
  outer: number,
  mid: number,
  inner: number,
  scale = 1,
  y: ArrayLike<number> | null = null,
  w: ArrayLike<number> | null = null,
): Float64Array {
  const out = new Float64Array(mid);
  for (let o = 0; o < outer; o++) {
    for (let m = 0; m < mid; m++) {
      for (let k = 0; k < inner; k++) {
        const e = (o * mid + m) * inner + k;
        out[m] += y ? (x[e] - y[e]) ** 2 * (w ? w[e] : 1) : x[e];
      }
    }
  }
  return out.map((v) => v * scale);
}

/** Mean squared error, each term times w[i] when given. */
export function mse(a: ArrayLike<number>, b: ArrayLike<number>, w?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2 * (w ? w[i] : 1);
  return s / a.length;
}

/** One torch.optim.Adam step in float64; returns the new parameter and moments. */
export function adamStep(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  m: ArrayLike<number>,
  v: ArrayLike<number>,
  step: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
): { p: Float64Array; m: Float64Array; v: Float64Array } {
  const outP = new Float64Array(p.length);
  const outM = new Float64Array(p.length);
  const outV = new Float64Array(p.length);
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  for (let i = 0; i < p.length; i++) {
    const grad = g[i] + weightDecay * p[i];
    outM[i] = beta1 * m[i] + (1 - beta1) * grad;
    outV[i] = beta2 * v[i] + (1 - beta2) * grad * grad;
    const denom = Math.sqrt(outV[i]) / Math.sqrt(bc2) + eps;
    outP[i] = p[i] - (lr / bc1) * outM[i] / denom;
  }
  return { p: outP, m: outM, v: outV };
}

/** dx and dw of a conv (stride s, padding p) for upstream dy, in float64. */
export function convBackward(
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  g: Conv2dGeometry,
): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  for (let n = 0; n < g.batch; n++) {
    for (let oc = 0; oc < g.outC; oc++) {
      for (let oh = 0; oh < g.outH; oh++) {
        for (let ow = 0; ow < g.outW; ow++) {
          const d = dy[((n * g.outC + oc) * g.outH + oh) * g.outW + ow];
          for (let ic = 0; ic < g.inC; ic++) {
            for (let kh = 0; kh < g.kH; kh++) {
              const ih = oh * g.stride - g.pad + kh;
              if (ih < 0 || ih >= g.inH) continue;
              for (let kw = 0; kw < g.kW; kw++) {
                const iw = ow * g.stride - g.pad + kw;
                if (iw < 0 || iw >= g.inW) continue;
                const xi = ((n * g.inC + ic) * g.inH + ih) * g.inW + iw;
                const wi = ((oc * g.inC + ic) * g.kH + kh) * g.kW + kw;
                dx[xi] += d * w[wi];
                dw[wi] += d * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw };
}

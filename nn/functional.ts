/**
 * Functional ops with torch.nn.functional's meaning (argument order, weight layouts, defaults).
 * Each op validates its inputs, records its forward kernels, and, when an input requires grad,
 * records a tape node whose backward records the backward kernels.
 */

import * as ops from "../kernels/ops.ts";
import { isGradEnabled, record, type Tensor } from "./tensor.ts";

// ---- validation helpers ----------------------------------------------------------------------

function shapeText(t: Tensor | readonly number[]): string {
  const shape = Array.isArray(t) ? t : (t as Tensor).shape;
  return `[${shape.join(", ")}]`;
}

function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && inputs.some((t) => t?.requiresGrad);
}

function assertRank(op: string, name: string, t: Tensor, ranks: number[]): void {
  if (!ranks.includes(t.rank)) {
    throw new Error(
      `${op}: ${name} must have rank ${ranks.join(" or ")}, got shape ${shapeText(t)}`,
    );
  }
}

function assertSameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`${op}: shapes ${shapeText(a)} and ${shapeText(b)} differ`);
  }
  if (a.device !== b.device) throw new Error(`${op}: tensors live on different devices`);
}

function pair(
  value: number | readonly [number, number],
  op: string,
  name: string,
): [number, number] {
  const [h, w] = typeof value === "number" ? [value, value] : value;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) {
    throw new Error(`${op}: ${name} must be a non-negative integer or a pair, got ${value}`);
  }
  return [h, w];
}

function normalizeDim(op: string, dim: number, rank: number): number {
  const d = dim < 0 ? dim + rank : dim;
  if (!Number.isInteger(d) || d < 0 || d >= rank) {
    throw new Error(`${op}: dim ${dim} out of range for rank ${rank}`);
  }
  return d;
}

function product(values: readonly number[]): number {
  return values.reduce((a, b) => a * b, 1);
}

// ---- activations -----------------------------------------------------------------------------

function activation(op: ops.UnaryOp, x: Tensor): Tensor {
  const y = x.device.empty(x.shape);
  ops.unary(x.device.backend, op, x.buffer, y.buffer, x.size);
  if (!needsGrad(x)) return y;
  const saved = y.share();
  return record(y, op, [x], [saved], (g) => {
    const dx = x.device.empty(x.shape);
    ops.unaryBackward(x.device.backend, op, g.buffer, saved.buffer, dx.buffer, x.size);
    return [dx];
  });
}

/** max(x, 0). */
export function relu(x: Tensor): Tensor {
  return activation("relu", x);
}

/** 1 / (1 + exp(-x)). */
export function sigmoid(x: Tensor): Tensor {
  return activation("sigmoid", x);
}

/** Hyperbolic tangent. */
export function tanh(x: Tensor): Tensor {
  return activation("tanh", x);
}

// ---- arithmetic ------------------------------------------------------------------------------

function scaled(x: Tensor, scale: number, shift = 0): Tensor {
  const y = x.device.empty(x.shape);
  ops.affine(x.device.backend, x.buffer, y.buffer, x.size, scale, shift);
  return y;
}

function binaryOp(op: ops.BinaryOp, a: Tensor, b: Tensor): Tensor {
  const y = a.device.empty(a.shape);
  ops.binary(a.device.backend, op, a.buffer, b.buffer, y.buffer, a.size);
  return y;
}

function checkScalar(op: string, value: number): void {
  if (!Number.isFinite(value)) throw new Error(`${op}: scalar operand ${value} is not finite`);
}

/** a + b for same-shape tensors, or a tensor plus a number. */
export function add(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") {
    checkScalar("add", b);
    const y = scaled(a, 1, b);
    return needsGrad(a) ? record(y, "add", [a], [], (g) => [g.share()]) : y;
  }
  assertSameShape("add", a, b);
  const y = binaryOp("add", a, b);
  return needsGrad(a, b) ? record(y, "add", [a, b], [], (g) => [g.share(), g.share()]) : y;
}

/** relu(a + b) for same-shape tensors in one pass (a residual add and its ReLU, fused). */
export function addRelu(a: Tensor, b: Tensor): Tensor {
  assertSameShape("addRelu", a, b);
  const y = a.device.empty(a.shape);
  const backend = a.device.backend;
  ops.binary(backend, "add", a.buffer, b.buffer, y.buffer, a.size, "relu");
  if (!needsGrad(a, b)) return y;
  const saved = y.share();
  return record(y, "addRelu", [a, b], [saved], (g) => {
    const d = a.device.empty(a.shape);
    ops.unaryBackward(backend, "relu", g.buffer, saved.buffer, d.buffer, a.size);
    if (a.requiresGrad && b.requiresGrad) return [d, d.share()];
    return a.requiresGrad ? [d, null] : [null, d];
  });
}

/** a - b for same-shape tensors, or a tensor minus a number. */
export function sub(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") {
    checkScalar("sub", b);
    const y = scaled(a, 1, -b);
    return needsGrad(a) ? record(y, "sub", [a], [], (g) => [g.share()]) : y;
  }
  assertSameShape("sub", a, b);
  const y = binaryOp("sub", a, b);
  if (!needsGrad(a, b)) return y;
  return record(y, "sub", [a, b], [], (g) => [g.share(), b.requiresGrad ? scaled(g, -1) : null]);
}

/** a * b element-wise for same-shape tensors, or a tensor times a number. */
export function mul(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") {
    checkScalar("mul", b);
    const y = scaled(a, b);
    return needsGrad(a) ? record(y, "mul", [a], [], (g) => [scaled(g, b)]) : y;
  }
  assertSameShape("mul", a, b);
  const y = binaryOp("mul", a, b);
  if (!needsGrad(a, b)) return y;
  const savedA = a.share();
  const savedB = b.share();
  return record(y, "mul", [a, b], [savedA, savedB], (g) => [
    a.requiresGrad ? binaryOp("mul", g, savedB) : null,
    b.requiresGrad ? binaryOp("mul", g, savedA) : null,
  ]);
}

// ---- reductions ------------------------------------------------------------------------------

function fullReduction(op: "sum" | "mean", x: Tensor): Tensor {
  const scale = op === "mean" ? 1 / Math.max(x.size, 1) : 1;
  const y = x.device.empty([]);
  if (x.size === 0) ops.fill(x.device.backend, y.buffer, 1, op === "mean" ? NaN : 0);
  else ops.sumAll(x.device.backend, x.buffer, y.buffer, x.size, scale);
  if (!needsGrad(x)) return y;
  return record(y, op, [x], [], (g) => {
    const dx = x.device.empty(x.shape);
    ops.expand(x.device.backend, g.buffer, dx.buffer, x.size, x.size, scale);
    return [dx];
  });
}

/** Sum of all elements, as a 0-d tensor. */
export function sum(x: Tensor): Tensor {
  return fullReduction("sum", x);
}

/** Mean of all elements, as a 0-d tensor. */
export function mean(x: Tensor): Tensor {
  return fullReduction("mean", x);
}

/**
 * Mean squared error with mean reduction, as a 0-d tensor: mean((input - target)^2), or
 * mean(weights * (input - target)^2) with `weights` (same shape; constants: they get no
 * gradient), each in one pass forward and one backward. When `input` is {@link sigmoid}'s output
 * and the target takes no gradient, the backward pass also carries the gradient through the
 * sigmoid (one pass instead of two; the same numbers).
 */
export function mseLoss(input: Tensor, target: Tensor, weights?: Tensor): Tensor {
  assertSameShape("mseLoss", input, target);
  if (input.size === 0) throw new Error("mseLoss: empty tensors");
  if (weights) {
    assertSameShape("mseLoss", input, weights);
    if (weights.requiresGrad) throw new Error("mseLoss: weights take no gradient");
  }
  const backend = input.device.backend;
  const y = input.device.empty([]);
  const w = weights?.buffer ?? null;
  ops.sumAll(backend, input.buffer, y.buffer, input.size, 1 / input.size, target.buffer, w);
  if (!needsGrad(input, target)) return y;
  const saved = [input.share(), target.share(), ...(weights ? [weights.share()] : [])];
  const [savedInput, savedTarget, savedWeights] = saved;
  // The error of a sigmoid's output (a decoder's image) against a constant target: the gradient
  // goes on through the sigmoid in the same pass, to the sigmoid's input (the sigmoid's node still
  // takes whatever gradient other uses of its output send; dInput below is then the gradient of
  // the sigmoid's input).
  const logits = input.node?.name === "sigmoid" && !target.requiresGrad
    ? input.node.inputs[0]
    : null;
  const name = logits ? "mseLoss+sigmoid" : "mseLoss";
  return record(y, name, [logits ?? input, target], saved, (g) => {
    const dInput = input.device.empty(input.shape);
    ops.mseBackward(
      backend,
      savedInput.buffer,
      savedTarget.buffer,
      g.buffer,
      dInput.buffer,
      input.size,
      2 / input.size,
      savedWeights?.buffer ?? null,
      logits !== null,
    );
    if (!target.requiresGrad) return [dInput, null];
    const dTarget = scaled(dInput, -1);
    if (!input.requiresGrad) {
      dInput.dispose();
      return [null, dTarget];
    }
    return [dInput, dTarget];
  });
}

// ---- shape ops -------------------------------------------------------------------------------

/** The same data with a new shape (one entry may be -1). Shares storage, like torch's view. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const inferred = shape.indexOf(-1);
  const resolved = [...shape];
  if (inferred >= 0) {
    if (shape.indexOf(-1, inferred + 1) >= 0) throw new Error("reshape: only one -1 allowed");
    const known = product(shape.filter((_, i) => i !== inferred));
    if (known === 0 || x.size % known !== 0) {
      throw new Error(`reshape: cannot infer -1 in ${shapeText(shape)} for ${x.size} elements`);
    }
    resolved[inferred] = x.size / known;
  }
  if (resolved.some((d) => !Number.isInteger(d) || d < 0) || product(resolved) !== x.size) {
    throw new Error(
      `reshape: ${shapeText(x)} (${x.size} elements) cannot become ${shapeText(shape)}`,
    );
  }
  const y = x.share(resolved);
  if (!needsGrad(x)) return y;
  return record(y, "reshape", [x], [], (g) => [g.share(x.shape)]);
}

/** Merge dimensions startDim..endDim into one (torch.flatten). */
export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  if (x.rank === 0) return reshape(x, [1]);
  const start = normalizeDim("flatten", startDim, x.rank);
  const end = normalizeDim("flatten", endDim, x.rank);
  if (start > end) throw new Error(`flatten: startDim ${startDim} after endDim ${endDim}`);
  const shape = [
    ...x.shape.slice(0, start),
    product(x.shape.slice(start, end + 1)),
    ...x.shape.slice(end + 1),
  ];
  return reshape(x, shape);
}

/** Concatenate along `dim`; all other dimensions must match. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error("cat: no tensors");
  const first = tensors[0];
  const d = normalizeDim("cat", dim, first.rank);
  for (const t of tensors) {
    if (
      t.rank !== first.rank || t.device !== first.device ||
      t.shape.some((s, i) => i !== d && s !== first.shape[i])
    ) {
      throw new Error(
        `cat: shapes ${tensors.map(shapeText).join(", ")} differ outside dim ${dim}`,
      );
    }
  }
  const total = tensors.reduce((acc, t) => acc + t.shape[d], 0);
  const outShape = first.shape.map((s, i) => (i === d ? total : s));
  const outer = product(first.shape.slice(0, d));
  const inner = product(first.shape.slice(d + 1));
  const y = first.device.empty(outShape);
  const backend = first.device.backend;
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    const rowLength = t.shape[d] * inner;
    ops.copyRows(backend, t.buffer, y.buffer, {
      outer,
      rowLength,
      srcStride: rowLength,
      srcOffset: 0,
      dstStride: total * inner,
      dstOffset: offset * inner,
    });
    offset += t.shape[d];
  }
  if (!needsGrad(...tensors)) return y;
  return record(y, "cat", tensors, [], (g) =>
    tensors.map((t, k) => {
      if (!t.requiresGrad) return null;
      const dt = t.device.empty(t.shape);
      const rowLength = t.shape[d] * inner;
      ops.copyRows(backend, g.buffer, dt.buffer, {
        outer,
        rowLength,
        srcStride: total * inner,
        srcOffset: offsets[k] * inner,
        dstStride: rowLength,
        dstOffset: 0,
      });
      return dt;
    }));
}

/** The slice start..start+length along `dim` (a copy, unlike torch's view). */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normalizeDim("narrow", dim, x.rank);
  const size = x.shape[d];
  if (
    !Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 ||
    start + length > size
  ) {
    throw new Error(`narrow: [${start}, ${start + length}) outside dim ${dim} of size ${size}`);
  }
  const outer = product(x.shape.slice(0, d));
  const inner = product(x.shape.slice(d + 1));
  const outShape = x.shape.map((s, i) => (i === d ? length : s));
  const y = x.device.empty(outShape);
  const backend = x.device.backend;
  const layout = {
    outer,
    rowLength: length * inner,
    srcStride: size * inner,
    srcOffset: start * inner,
    dstStride: length * inner,
    dstOffset: 0,
  };
  ops.copyRows(backend, x.buffer, y.buffer, layout);
  if (!needsGrad(x)) return y;
  return record(y, "narrow", [x], [], (g) => {
    const dx = x.device.zeros(x.shape);
    ops.copyRows(backend, g.buffer, dx.buffer, {
      outer,
      rowLength: length * inner,
      srcStride: length * inner,
      srcOffset: 0,
      dstStride: size * inner,
      dstOffset: start * inner,
    });
    return [dx];
  });
}

// ---- linear and convolution ------------------------------------------------------------------

/** y = x W^T + b with weight [out, in] (torch layout); x is [..., in]. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  assertRank("linear", "weight", weight, [2]);
  if (x.rank < 1) throw new Error("linear: input must have at least one dimension");
  const [outFeatures, inFeatures] = weight.shape;
  if (x.shape[x.rank - 1] !== inFeatures) {
    throw new Error(
      `linear: input ${shapeText(x)} has ${x.shape[x.rank - 1]} features, weight ${
        shapeText(weight)
      } expects ${inFeatures}`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outFeatures)) {
    throw new Error(`linear: bias ${shapeText(bias)} must be [${outFeatures}]`);
  }
  const rows = x.size / inFeatures;
  const backend = x.device.backend;
  const y = x.device.empty([...x.shape.slice(0, -1), outFeatures]);
  ops.matmul(
    backend,
    x.buffer,
    weight.buffer,
    bias?.buffer ?? null,
    y.buffer,
    rows,
    outFeatures,
    inFeatures,
    false,
    true,
  );
  if (!needsGrad(x, weight, bias)) return y;
  const savedX = x.share();
  const savedW = weight.share();
  return record(y, "linear", [x, weight, bias], [savedX, savedW], (g) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) {
      dx = x.device.empty(x.shape);
      ops.matmul(
        backend,
        g.buffer,
        savedW.buffer,
        null,
        dx.buffer,
        rows,
        inFeatures,
        outFeatures,
        false,
        false,
      );
    }
    if (weight.requiresGrad) {
      dw = x.device.empty(weight.shape);
      ops.matmul(
        backend,
        g.buffer,
        savedX.buffer,
        null,
        dw.buffer,
        outFeatures,
        inFeatures,
        rows,
        true,
        false,
      );
    }
    if (bias?.requiresGrad) {
      db = x.device.empty(bias.shape);
      // A batch of rows: one thread per feature walks them (a workgroup per feature spent its
      // time in barriers for a few dozen rows). Many rows: a workgroup per feature.
      if (rows <= LINEAR_BIAS_SERIAL_ROWS) {
        ops.reduceAxis(backend, g.buffer, db.buffer, 1, rows, outFeatures);
      } else ops.reduceMiddle(backend, g.buffer, db.buffer, rows, outFeatures, 1);
    }
    return [dx, dw, db];
  });
}

/** Most rows whose bias gradient one thread per feature sums serially. */
const LINEAR_BIAS_SERIAL_ROWS = 1024;

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** Stride (square), default 1. */
  stride?: number | readonly [number, number];
  /** Zero padding on each side (square), default 0. */
  padding?: number | readonly [number, number];
  /**
   * The output goes only into a training-mode batch norm, which subtracts each channel's batch
   * mean: the bias then has exactly zero gradient, and the backward gives zeros (a shared zero
   * tensor, Device.sharedZeros) instead of summing dy over every pixel (those sums come out as
   * rounding noise). The conv also forms the batch norm's statistics as it stores the output,
   * where its kernel can (kernels/ops.ts conv2dForward's `statistics`); the batch norm then skips
   * its own pass over the map. Default false.
   */
  outputFeedsBatchNorm?: boolean;
  /**
   * activation(conv2d(x)) as one op ({@link conv2d} only): the ubo conv variant applies it as it
   * stores the output (one pass fewer), other variants run it after the conv. Recorded as the conv
   * and the activation, so a loss that fuses with a sigmoid (mseLoss) still sees one. Not with
   * outputFeedsBatchNorm.
   */
  activation?: ops.ConvActivation;
}

/** 2-D convolution: x [N, C, H, W], weight [O, C, kH, kW], bias [O] or null. */
export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  options: Conv2dOptions = {},
): Tensor {
  assertRank("conv2d", "input", x, [4]);
  assertRank("conv2d", "weight", weight, [4]);
  const [stride, strideW] = pair(options.stride ?? 1, "conv2d", "stride");
  const [pad, padW] = pair(options.padding ?? 0, "conv2d", "padding");
  if (stride !== strideW || pad !== padW) {
    throw new Error("conv2d: only equal stride and padding in both dimensions are supported");
  }
  if (stride < 1) throw new Error("conv2d: stride must be >= 1");
  const [batch, inC, inH, inW] = x.shape;
  const [outC, weightInC, kH, kW] = weight.shape;
  if (weightInC !== inC) {
    throw new Error(
      `conv2d: input ${shapeText(x)} has ${inC} channels, weight ${
        shapeText(weight)
      } expects ${weightInC}`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outC)) {
    throw new Error(`conv2d: bias ${shapeText(bias)} must be [${outC}]`);
  }
  const outH = Math.floor((inH + 2 * pad - kH) / stride) + 1;
  const outW = Math.floor((inW + 2 * pad - kW) / stride) + 1;
  if (outH < 1 || outW < 1) {
    throw new Error(
      `conv2d: kernel ${kH}x${kW} larger than the padded input ${inH + 2 * pad}x${inW + 2 * pad}`,
    );
  }
  const geometry = { batch, inC, inH, inW, outC, outH, outW, kH, kW, stride, pad };
  if (options.activation && options.outputFeedsBatchNorm) {
    throw new Error("conv2d: an activation and outputFeedsBatchNorm exclude each other");
  }
  return recordConv(
    "conv2d",
    x,
    weight,
    bias,
    geometry,
    {
      forward: ops.conv2dForward,
      backwardInput: ops.conv2dBackwardInput,
      backwardWeight: ops.conv2dBackwardWeight,
      backwardInputAccumulates: ops.conv2dBackwardInputAccumulates,
    },
    options.outputFeedsBatchNorm ?? false,
    options.activation,
  );
}

/**
 * Run a conv's forward and record its backward: `passes` are the launchers of the three passes for
 * `geometry` (conv2d's, or upsampleConv2d's where x is at half the geometry's input size). With
 * `zeroBiasGradient` the bias's gradient is written as zeros (Conv2dOptions.outputFeedsBatchNorm);
 * with `activation` the output is activation(conv) (Conv2dOptions.activation).
 */
function recordConv(
  name: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  geometry: ops.Conv2dGeometry,
  passes: {
    forward: typeof ops.conv2dForward;
    backwardInput: typeof ops.conv2dBackwardInput;
    backwardWeight: typeof ops.conv2dBackwardWeight;
    /** Whether backwardInput can add to dx (ConvOptions.accumulate) for the geometry. */
    backwardInputAccumulates?: typeof ops.conv2dBackwardInputAccumulates;
  },
  zeroBiasGradient: boolean,
  activation?: ops.ConvActivation,
): Tensor {
  const { batch, outC, outH, outW } = geometry;
  const backend = x.device.backend;
  const y = x.device.empty([batch, outC, outH, outW]);
  // Into a training batch norm: its statistics are formed as y is stored, where the variant can.
  const statistics = passes.forward(
    backend,
    x.buffer,
    weight.buffer,
    bias?.buffer ?? null,
    y.buffer,
    geometry,
    { statistics: zeroBiasGradient, activation },
  );
  if (statistics) y.storage.attachStatistics(statistics);
  if (!needsGrad(x, weight, bias)) return y;
  const savedX = x.share();
  const savedW = weight.share();
  // With an activation the conv's own output is never stored: its node's output is a stand-in on
  // y's storage that nothing reads (the conv's backward reads x and w, the activation's y).
  const convOutput = activation ? y.share() : y;
  const convNode = record(convOutput, name, [x, weight, bias], [savedX, savedW], (g, pending) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) {
      // x's gradient from its other consumers (a residual's), when the pass can add to it.
      const sum = passes.backwardInputAccumulates?.(backend, geometry) ? pending.claim(0) : null;
      dx = sum ?? x.device.empty(x.shape);
      passes.backwardInput(backend, g.buffer, savedW.buffer, dx.buffer, geometry, {
        accumulate: sum !== null,
      });
    }
    if (weight.requiresGrad) {
      dw = x.device.empty(weight.shape);
      passes.backwardWeight(backend, g.buffer, savedX.buffer, dw.buffer, geometry);
    }
    if (bias?.requiresGrad && zeroBiasGradient) {
      db = x.device.sharedZeros(bias.shape);
    } else if (bias?.requiresGrad) {
      db = x.device.empty(bias.shape);
      ops.channelSums(backend, g.buffer, db.buffer, batch, outC, outH * outW);
    }
    return [dx, dw, db];
  });
  if (!activation) return convNode;
  const savedY = y.share();
  // The stand-in goes with the activation's node (freed with it), as a saved tensor.
  return record(y, activation, [convNode], [savedY, convOutput], (g) => {
    const dPre = y.device.empty(y.shape);
    ops.unaryBackward(backend, activation, g.buffer, savedY.buffer, dPre.buffer, y.size);
    return [dPre];
  });
}

/**
 * conv2d(upsample(x, { scaleFactor: 2, mode: "nearest" }), weight, bias, options): a decoder
 * block's upsampling and conv as one op. For 3x3 kernels with stride 1 and padding 1 the kernels
 * work at x's own resolution with 2x2 filters per output parity (4 of the 9 multiply-adds per
 * output; the upsampled map is never written: kernels/ops.ts upsampleConv2dForward and its
 * backward passes); other convs run the two ops in turn. Same function as the two ops; the float
 * rounding differs slightly (filter taps are added up first).
 */
export function upsampleConv2d(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  options: Conv2dOptions = {},
): Tensor {
  assertRank("upsampleConv2d", "input", x, [4]);
  assertRank("upsampleConv2d", "weight", weight, [4]);
  const [batch, inC, sourceH, sourceW] = x.shape;
  const [outC, weightInC, kH, kW] = weight.shape;
  const stride = options.stride ?? 1;
  const pad = options.padding ?? 0;
  if (kH !== 3 || kW !== 3 || stride !== 1 || pad !== 1 || weightInC !== inC) {
    return conv2d(upsample(x, { scaleFactor: 2, mode: "nearest" }), weight, bias, options);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outC)) {
    throw new Error(`upsampleConv2d: bias ${shapeText(bias)} must be [${outC}]`);
  }
  const [inH, inW] = [2 * sourceH, 2 * sourceW];
  const geometry = { batch, inC, inH, inW, outC, outH: inH, outW: inW, kH, kW, stride, pad };
  return recordConv("upsampleConv2d", x, weight, bias, geometry, {
    forward: ops.upsampleConv2dForward,
    backwardInput: ops.upsampleConv2dBackwardInput,
    backwardWeight: ops.upsampleConv2dBackwardWeight,
  }, options.outputFeedsBatchNorm ?? false);
}

// ---- normalization ---------------------------------------------------------------------------

/** Options of {@link batchNorm2d}. */
export interface BatchNormOptions {
  /** Batch statistics (true) or running statistics (false). Default false, as in torch. */
  training?: boolean;
  /** Running-average factor, default 0.1. */
  momentum?: number;
  /** Added to the variance, default 1e-5. */
  eps?: number;
  /**
   * Return relu(batchNorm2d(x)), fused: the ReLU runs in the normalize pass and its gradient in
   * the backward passes (no separate ReLU dispatches). Default false.
   */
  relu?: boolean;
}

/** A batch norm's weight and bias as the kernels take them (null without an affine part). */
function affineBuffers(weight: Tensor | null, bias: Tensor | null) {
  return weight ? { weight: weight.buffer, bias: bias!.buffer } : null;
}

/** A batch norm's running statistics as the training kernels update them (null: none kept). */
function runningBuffers(runningMean: Tensor | null, runningVar: Tensor | null) {
  return runningMean ? { mean: runningMean.buffer, var: runningVar!.buffer } : null;
}

/**
 * Batch normalization of x [N, C, H, W] (or [N, C]). Training mode normalizes with the batch
 * statistics (biased variance) and updates runningMean/runningVar in place (unbiased variance);
 * eval mode uses the running statistics.
 */
export function batchNorm2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  options: BatchNormOptions = {},
): Tensor {
  assertRank("batchNorm2d", "input", x, [2, 4]);
  checkBatchNormArguments(
    "batchNorm2d",
    x,
    runningMean,
    runningVar,
    weight,
    bias,
    !!options.training,
  );
  return normalize(x, null, runningMean, runningVar, weight, bias, options);
}

/**
 * relu(batchNorm2d(x) + residual): a ResNet block's second batch norm, residual add and ReLU. In
 * training mode on the fused passes (kernels/ops.ts batchNormResidualApplicable) it is one pass
 * forward and one backward (the ReLU's mask read from the output, the residual's gradient written
 * by the batch norm's backward); otherwise batchNorm2d then {@link addRelu}. Same values either way.
 */
export function batchNormAddRelu(
  x: Tensor,
  residual: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  options: Omit<BatchNormOptions, "relu"> = {},
): Tensor {
  assertRank("batchNormAddRelu", "input", x, [2, 4]);
  assertSameShape("batchNormAddRelu", x, residual);
  const training = options.training ?? false;
  checkBatchNormArguments("batchNormAddRelu", x, runningMean, runningVar, weight, bias, training);
  if (!training || !ops.batchNormResidualApplicable(x.device.backend, x.shape[1])) {
    // The arguments are checked: batchNorm2d's work without its checks, then the add and ReLU.
    const normalized = normalize(x, null, runningMean, runningVar, weight, bias, options);
    return addRelu(normalized, residual);
  }
  return normalize(x, residual, runningMean, runningVar, weight, bias, { ...options, relu: true });
}

/**
 * {@link batchNorm2d}'s work, with `residual` (training mode on the fused passes only) added before
 * the ReLU; the arguments are checked.
 */
function normalize(
  x: Tensor,
  residual: Tensor | null,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  options: BatchNormOptions,
): Tensor {
  const training = options.training ?? false;
  const momentum = options.momentum ?? 0.1;
  const eps = options.eps ?? 1e-5;
  const relu = options.relu ?? false;
  const [batch, channels] = x.shape;
  const spatial = x.rank === 4 ? x.shape[2] * x.shape[3] : 1;
  const device = x.device;
  const backend = device.backend;
  let stats: { mean: Tensor; stat: Tensor; fromVariance: boolean };
  const y = device.empty(x.shape);
  const affine = affineBuffers(weight, bias);
  if (training) {
    // Statistics and normalization together (two passes for the chunked kernels).
    const mean = device.empty([channels]);
    const invStd = device.empty([channels]);
    x.storage.useStatistics((statistics) =>
      ops.batchNormForwardTraining(
        backend,
        x.buffer,
        mean.buffer,
        invStd.buffer,
        runningBuffers(runningMean, runningVar),
        affine,
        y.buffer,
        batch,
        channels,
        spatial,
        eps,
        momentum,
        { relu, statistics, residual: residual?.buffer },
      )
    );
    stats = { mean, stat: invStd, fromVariance: false };
  } else {
    stats = { mean: runningMean!.share(), stat: runningVar!.share(), fromVariance: true };
    ops.batchNormApply(
      backend,
      x.buffer,
      { mean: stats.mean.buffer, stat: stats.stat.buffer, fromVariance: true },
      affine,
      y.buffer,
      x.size,
      channels,
      spatial,
      eps,
      { relu },
    );
  }
  const statBuffers = () => ({
    mean: stats.mean.buffer,
    stat: stats.stat.buffer,
    fromVariance: stats.fromVariance,
  });
  if (!needsGrad(x, weight, bias, residual)) {
    stats.mean.dispose();
    stats.stat.dispose();
    return y;
  }
  const savedX = x.share();
  const savedWeight = weight?.share() ?? null;
  // A fused ReLU's mask: recomputed from x in the fused training backward (the output need not be
  // kept nor read again), else read from the output (always with a residual: it was in the sum).
  const maskFromInput = relu && training && x.requiresGrad && !residual &&
    ops.batchNormReluMaskFromInput(backend, channels);
  const savedY = relu && !maskFromInput ? y.share() : null;
  const savedBias = maskFromInput && bias ? bias.share() : null;
  const saved = [savedX, stats.mean, stats.stat];
  if (savedWeight) saved.push(savedWeight);
  if (savedY) saved.push(savedY);
  if (savedBias) saved.push(savedBias);
  const backwardOptions = maskFromInput
    ? { reluFromInput: { bias: savedBias?.buffer ?? null } }
    : savedY
    ? { reluOutput: savedY.buffer }
    : {};
  const name = residual ? "batchNorm2d+add+relu" : relu ? "batchNorm2d+relu" : "batchNorm2d";
  const inputs = residual ? [x, weight, bias, residual] : [x, weight, bias];
  return record(y, name, inputs, saved, (g) => {
    const sums = device.empty([2 * channels]);
    let dx: Tensor | null = null;
    // The residual's gradient: the upstream gradient through the ReLU, from the fused backward.
    const dResidual = residual?.requiresGrad ? device.empty(x.shape) : null;
    if (training && (x.requiresGrad || residual)) {
      // Sums and dx together (two passes for the chunked kernels).
      dx = device.empty(x.shape);
      ops.batchNormBackwardTraining(
        backend,
        g.buffer,
        savedX.buffer,
        stats.mean.buffer,
        stats.stat.buffer,
        savedWeight?.buffer ?? null,
        sums.buffer,
        dx.buffer,
        batch,
        channels,
        spatial,
        eps,
        dResidual ? { ...backwardOptions, residualGradient: dResidual.buffer } : backwardOptions,
      );
      if (!x.requiresGrad) {
        dx.dispose();
        dx = null;
      }
    } else {
      ops.batchNormBackwardSums(
        backend,
        g.buffer,
        savedX.buffer,
        statBuffers(),
        sums.buffer,
        batch,
        channels,
        spatial,
        eps,
        backwardOptions,
      );
      if (x.requiresGrad) {
        dx = device.empty(x.shape);
        ops.batchNormBackwardInput(
          backend,
          g.buffer,
          savedX.buffer,
          statBuffers(),
          savedWeight?.buffer ?? null,
          null,
          dx.buffer,
          batch,
          channels,
          spatial,
          eps,
          backwardOptions,
        );
      }
    }
    const [dWeight, dBias] = affineGradients(sums, weight, bias, channels);
    sums.dispose();
    return residual ? [dx, dWeight, dBias, dResidual] : [dx, dWeight, dBias];
  });
}

/** The argument checks shared by {@link batchNorm2d} and {@link batchNormReluMaxPool2d}. */
function checkBatchNormArguments(
  op: string,
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  training: boolean,
): void {
  const [batch, channels] = x.shape;
  const spatial = x.rank === 4 ? x.shape[2] * x.shape[3] : 1;
  for (
    const [name, t] of [["runningMean", runningMean], ["runningVar", runningVar], [
      "weight",
      weight,
    ], ["bias", bias]] as const
  ) {
    if (t && (t.rank !== 1 || t.shape[0] !== channels)) {
      throw new Error(`${op}: ${name} ${shapeText(t)} must be [${channels}]`);
    }
  }
  if ((weight === null) !== (bias === null)) {
    throw new Error(`${op}: give both weight and bias, or neither`);
  }
  if ((runningMean === null) !== (runningVar === null)) {
    throw new Error(`${op}: give both runningMean and runningVar, or neither`);
  }
  if (!training && !runningMean) {
    throw new Error(`${op}: eval mode needs runningMean and runningVar`);
  }
  if (training && batch * spatial <= 1) {
    throw new Error(
      `${op}: expected more than 1 value per channel when training, got input ${shapeText(x)}`,
    );
  }
}

/** The weight and bias gradients (those that are wanted) from a batch norm backward's sums. */
function affineGradients(
  sums: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  channels: number,
): [Tensor | null, Tensor | null] {
  const backend = sums.device.backend;
  let dWeight: Tensor | null = null;
  let dBias: Tensor | null = null;
  if (weight?.requiresGrad) {
    dWeight = sums.device.empty([channels]);
    backend.copy(sums.buffer, channels * 4, dWeight.buffer, 0, channels * 4);
  }
  if (bias?.requiresGrad) {
    dBias = sums.device.empty([channels]);
    backend.copy(sums.buffer, 0, dBias.buffer, 0, channels * 4);
  }
  return [dWeight, dBias];
}

/**
 * maxPool2d(relu(batchNorm2d(x)), 2x2 stride 2): an encoder block's tail as one op. In training
 * mode on maps of even height and width % 4 == 0 it runs fused (kernels/ops.ts
 * batchNormReluMaxPoolForwardTraining): the normalized map is never written nor read back, and the
 * backward finds each window's arg-max again from x, reading the pooled gradient and x only.
 * Otherwise (eval mode, other shapes) it is the three ops one after the other. Same values either
 * way, ties going to the first maximum as in {@link maxPool2d}.
 */
export function batchNormReluMaxPool2d(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  options: Omit<BatchNormOptions, "relu"> = {},
): Tensor {
  assertRank("batchNormReluMaxPool2d", "input", x, [4]);
  const training = options.training ?? false;
  const momentum = options.momentum ?? 0.1;
  const eps = options.eps ?? 1e-5;
  const [batch, channels, height, width] = x.shape;
  const device = x.device;
  const backend = device.backend;
  if (!training || !ops.batchNormReluMaxPoolApplicable(backend, channels, height, width)) {
    const normalized = batchNorm2d(x, runningMean, runningVar, weight, bias, {
      ...options,
      relu: true,
    });
    return maxPool2d(normalized, { kernelSize: 2 });
  }
  checkBatchNormArguments("batchNormReluMaxPool2d", x, runningMean, runningVar, weight, bias, true);
  const mean = device.empty([channels]);
  const invStd = device.empty([channels]);
  const pooled = device.empty([batch, channels, height / 2, width / 2]);
  const affine = affineBuffers(weight, bias);
  x.storage.useStatistics((statistics) =>
    ops.batchNormReluMaxPoolForwardTraining(
      backend,
      x.buffer,
      mean.buffer,
      invStd.buffer,
      runningBuffers(runningMean, runningVar),
      affine,
      pooled.buffer,
      batch,
      channels,
      height,
      width,
      eps,
      momentum,
      { statistics },
    )
  );
  if (!needsGrad(x, weight, bias)) {
    mean.dispose();
    invStd.dispose();
    return pooled;
  }
  const savedX = x.share();
  const savedWeight = weight?.share() ?? null;
  const savedBias = bias?.share() ?? null;
  const saved = [savedX, mean, invStd];
  if (savedWeight) saved.push(savedWeight, savedBias!);
  return record(pooled, "batchNorm2d+relu+maxPool2d", [x, weight, bias], saved, (g) => {
    const sums = device.empty([2 * channels]);
    const dx = device.empty(x.shape);
    ops.batchNormReluMaxPoolBackwardTraining(
      backend,
      g.buffer,
      savedX.buffer,
      mean.buffer,
      invStd.buffer,
      savedWeight ? { weight: savedWeight.buffer, bias: savedBias!.buffer } : null,
      sums.buffer,
      dx.buffer,
      batch,
      channels,
      height,
      width,
      eps,
    );
    const [dWeight, dBias] = affineGradients(sums, weight, bias, channels);
    sums.dispose();
    if (x.requiresGrad) return [dx, dWeight, dBias];
    dx.dispose();
    return [null, dWeight, dBias];
  });
}

// ---- pooling and resizing --------------------------------------------------------------------

/** Options of {@link maxPool2d}. */
export interface MaxPool2dOptions {
  kernelSize: number | readonly [number, number];
  /** Default: kernelSize. */
  stride?: number | readonly [number, number];
  /** Implicit -inf padding, at most half the kernel. Default 0. */
  padding?: number | readonly [number, number];
}

/** Max pooling over x [N, C, H, W] (floor mode, dilation 1). */
export function maxPool2d(x: Tensor, options: MaxPool2dOptions): Tensor {
  assertRank("maxPool2d", "input", x, [4]);
  const [kH, kW] = pair(options.kernelSize, "maxPool2d", "kernelSize");
  const [strideH, strideW] = pair(options.stride ?? options.kernelSize, "maxPool2d", "stride");
  const [padH, padW] = pair(options.padding ?? 0, "maxPool2d", "padding");
  if (kH < 1 || kW < 1 || strideH < 1 || strideW < 1) {
    throw new Error("maxPool2d: kernelSize and stride must be >= 1");
  }
  if (padH * 2 > kH || padW * 2 > kW) {
    throw new Error("maxPool2d: padding must be at most half the kernel size");
  }
  const [batch, channels, inH, inW] = x.shape;
  const outH = Math.floor((inH + 2 * padH - kH) / strideH) + 1;
  const outW = Math.floor((inW + 2 * padW - kW) / strideW) + 1;
  if (outH < 1 || outW < 1) {
    throw new Error(`maxPool2d: window ${kH}x${kW} larger than the input ${shapeText(x)}`);
  }
  const geometry = {
    planes: batch * channels,
    inH,
    inW,
    outH,
    outW,
    kH,
    kW,
    strideH,
    strideW,
    padH,
    padW,
  };
  const backend = x.device.backend;
  const y = x.device.empty([batch, channels, outH, outW]);
  // The arg-max indices are u32 in a tensor-sized buffer; only kernels read them.
  const argmax = x.device.empty([batch, channels, outH, outW]);
  ops.maxPool2dForward(backend, x.buffer, y.buffer, argmax.buffer, geometry);
  if (!needsGrad(x)) {
    argmax.dispose();
    return y;
  }
  return record(y, "maxPool2d", [x], [argmax], (g) => {
    const dx = x.device.empty(x.shape);
    ops.maxPool2dBackward(backend, g.buffer, argmax.buffer, dx.buffer, geometry);
    return [dx];
  });
}

/** Options of {@link interpolate}: exactly one of size and scaleFactor. */
export interface InterpolateOptions {
  /** Output [height, width]. */
  size?: readonly [number, number];
  /** Output = floor(input * factor); one factor or [h, w]. */
  scaleFactor?: number | readonly [number, number];
  /** Default "nearest", as torch. */
  mode?: ops.ResizeMode;
}

/** Resize x [N, C, H, W] (torch.nn.functional.interpolate with align_corners=false). */
export function interpolate(x: Tensor, options: InterpolateOptions): Tensor {
  assertRank("interpolate", "input", x, [4]);
  const mode = options.mode ?? "nearest";
  if (mode !== "nearest" && mode !== "bilinear") {
    throw new Error(`interpolate: mode "${mode}" not supported (nearest, bilinear)`);
  }
  const [batch, channels, inH, inW] = x.shape;
  let outH: number, outW: number, scaleH: number, scaleW: number;
  if (options.size && options.scaleFactor === undefined) {
    [outH, outW] = options.size;
    if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) {
      throw new Error(`interpolate: size ${options.size} must be positive integers`);
    }
    scaleH = inH / outH;
    scaleW = inW / outW;
  } else if (options.scaleFactor !== undefined && !options.size) {
    const [fh, fw] = typeof options.scaleFactor === "number"
      ? [options.scaleFactor, options.scaleFactor]
      : options.scaleFactor;
    if (!(fh > 0) || !(fw > 0) || !Number.isFinite(fh) || !Number.isFinite(fw)) {
      throw new Error(`interpolate: scaleFactor ${options.scaleFactor} must be positive`);
    }
    outH = Math.floor(inH * fh);
    outW = Math.floor(inW * fw);
    if (outH < 1 || outW < 1) throw new Error("interpolate: output would be empty");
    // torch uses 1/scaleFactor as the source step when a factor is given.
    scaleH = 1 / fh;
    scaleW = 1 / fw;
  } else {
    throw new Error("interpolate: give exactly one of size and scaleFactor");
  }
  const geometry = { planes: batch * channels, inH, inW, outH, outW, scaleH, scaleW };
  const backend = x.device.backend;
  const y = x.device.empty([batch, channels, outH, outW]);
  ops.resizeForward(backend, mode, x.buffer, y.buffer, geometry);
  if (!needsGrad(x)) return y;
  return record(y, `interpolate(${mode})`, [x], [], (g) => {
    const dx = x.device.empty(x.shape);
    ops.resizeBackward(backend, mode, g.buffer, dx.buffer, geometry);
    return [dx];
  });
}

/**
 * Bilinear warp: y[n, c, h, w] = image[n, c] sampled at (w + flow[n, 0, h, w], h + flow[n, 1, h,
 * w]), shifts in pixels, clamped to +-maxShift (no gradient where clamped); positions outside the
 * image take its border (no gradient there either). Like torch's grid_sample with align_corners
 * and border padding, but with the flow in pixels. `maxShift` bounds how far an input pixel's
 * gradient can travel, so the image's backward is a gather over a small window (no atomics).
 */
export function warp(image: Tensor, flow: Tensor, maxShift: number): Tensor {
  assertRank("warp", "image", image, [4]);
  assertRank("warp", "flow", flow, [4]);
  const [batch, channels, height, width] = image.shape;
  if (
    flow.shape[0] !== batch || flow.shape[1] !== 2 || flow.shape[2] !== height ||
    flow.shape[3] !== width
  ) {
    throw new Error(
      `warp: flow must be [${batch}, 2, ${height}, ${width}], got ${shapeText(flow)}`,
    );
  }
  if (!(maxShift >= 0) || !Number.isFinite(maxShift) || maxShift > 64) {
    throw new Error(`warp: maxShift ${maxShift} must be in [0, 64]`);
  }
  const geometry = { batch, channels, height, width, maxShift };
  const backend = image.device.backend;
  const y = image.device.empty(image.shape);
  ops.warpForward(backend, image.buffer, flow.buffer, y.buffer, geometry);
  if (!needsGrad(image, flow)) return y;
  // Both are read by the backward: kept alive past the caller's scope.
  const savedImage = image.share();
  const savedFlow = flow.share();
  return record(y, "warp", [image, flow], [savedImage, savedFlow], (g) => {
    let dimage: Tensor | null = null;
    if (image.requiresGrad) {
      dimage = image.device.empty(image.shape);
      ops.warpBackwardImage(backend, g.buffer, savedFlow.buffer, dimage.buffer, geometry);
    }
    let dflow: Tensor | null = null;
    if (flow.requiresGrad) {
      dflow = flow.device.empty(flow.shape);
      ops.warpBackwardFlow(
        backend,
        g.buffer,
        savedImage.buffer,
        savedFlow.buffer,
        dflow.buffer,
        geometry,
      );
    }
    return [dimage, dflow];
  });
}

/** Options of {@link upsample}. */
export interface UpsampleOptions {
  scaleFactor?: number | readonly [number, number];
  size?: readonly [number, number];
  /** Default "nearest", as torch.nn.Upsample. */
  mode?: ops.ResizeMode;
}

/** torch.nn.Upsample's forward: interpolate by a factor (or to a size). */
export function upsample(x: Tensor, options: UpsampleOptions): Tensor {
  return interpolate(x, options);
}

/** Adaptive average pooling to 1x1: [N, C, H, W] -> [N, C, 1, 1]. */
export function adaptiveAvgPool2d(
  x: Tensor,
  outputSize: number | readonly [number, number] = 1,
): Tensor {
  assertRank("adaptiveAvgPool2d", "input", x, [4]);
  const [oh, ow] = pair(outputSize, "adaptiveAvgPool2d", "outputSize");
  if (oh !== 1 || ow !== 1) throw new Error("adaptiveAvgPool2d: only output size 1 is supported");
  const [batch, channels, h, w] = x.shape;
  const spatial = h * w;
  if (spatial === 0) throw new Error("adaptiveAvgPool2d: empty spatial size");
  const backend = x.device.backend;
  const y = x.device.empty([batch, channels, 1, 1]);
  ops.reduceAxis(backend, x.buffer, y.buffer, batch * channels, spatial, 1, 1 / spatial);
  if (!needsGrad(x)) return y;
  return record(y, "adaptiveAvgPool2d", [x], [], (g) => {
    const dx = x.device.empty(x.shape);
    ops.expand(backend, g.buffer, dx.buffer, x.size, spatial, 1 / spatial);
    return [dx];
  });
}

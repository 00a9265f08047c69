/**
 * The "ubo-any" conv variant (any kernel size, stride and padding; a uniform-buffer operand),
 * forced through the launchers' `variant` option, against float64 references: forward, backward
 * to the input and backward to the weight on ResNet-like shapes (7x7 stride 2, 1x1 stride 2,
 * 3x3 stride 2, 3x3 on 2x2 and 1x1 maps) and odd ones (widths not multiples of 4, channel counts
 * past one channel block or one uniform window, several pixel windows, batch 1 and 37).
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { uboColsBackwardWeight, uboColsForward } from "../kernels/conv_ubo_any.ts";
import * as ref from "./reference.ts";
import {
  assertClose,
  checkConvPasses,
  convGeometry,
  convPassBuffers,
  downloadBuffer,
  testDevice,
} from "./helpers.ts";

const backend: Backend = (await testDevice()).backend;
const download = (buffer: GPUBuffer, n: number) => downloadBuffer(backend, buffer, n);
const geometry = convGeometry;

const cases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "b1 3->5 3x3 s1 7x9", g: geometry(1, 3, 5, 7, 9, 3, 1, 1) },
  { name: "b2 5->6 3x3 s2 9x7", g: geometry(2, 5, 6, 9, 7, 3, 2, 1) },
  { name: "b37 4->3 3x3 s1 5x6 (2 pixel windows)", g: geometry(37, 4, 3, 5, 6, 3, 1, 1) },
  { name: "b2 3->17 7x7 s2 p3 11x13", g: geometry(2, 3, 17, 11, 13, 7, 2, 3) },
  { name: "b3 6->5 1x1 s2 9x8", g: geometry(3, 6, 5, 9, 8, 1, 2, 0) },
  { name: "b2 7->9 1x1 s1 3x5", g: geometry(2, 7, 9, 3, 5, 1, 1, 0) },
  { name: "b4 20->18 3x3 on 1x1", g: geometry(4, 20, 18, 1, 1, 3, 1, 1) },
  { name: "b3 9->7 3x3 on 2x2", g: geometry(3, 9, 7, 2, 2, 3, 1, 1) },
  { name: "b3 9->7 3x3 s2 2x2 -> 1x1", g: geometry(3, 9, 7, 2, 2, 3, 2, 1) },
  { name: "b1 230->9 3x3 s1 3x3 (3 channel chunks)", g: geometry(1, 230, 9, 3, 3, 3, 1, 1) },
  { name: "b1 9->230 3x3 s2 5x5 (3 chunks back)", g: geometry(1, 9, 230, 5, 5, 3, 2, 1) },
  { name: "b1 1->1400 3x3 2x3 (2 block windows)", g: geometry(1, 1, 1400, 2, 3, 3, 1, 1) },
  { name: "b1 1400->2 3x3 2x3 (2 block windows back)", g: geometry(1, 1400, 2, 2, 3, 3, 1, 1) },
  // J = 8 blocks (at most 8 blocked channels): full, odd, and many pixel windows.
  { name: "b3 3->8 7x7 s2 p3 13x11 (J 8)", g: geometry(3, 3, 8, 13, 11, 7, 2, 3) },
  { name: "b50 8->7 3x3 s1 7x6 (J 8, pixel windows)", g: geometry(50, 8, 7, 7, 6, 3, 1, 1) },
  { name: "b2 9->8 1x1 s2 7x5 (J 16 back, 8 forward)", g: geometry(2, 9, 8, 7, 5, 1, 2, 0) },
  { name: "b1 2000->3 3x3 3x2 (J 8 channel chunks)", g: geometry(1, 2000, 3, 3, 2, 3, 1, 1) },
];

for (const { name, g } of cases) {
  Deno.test(`conv variant ubo-any ${name}`, async () => {
    const options = { variant: "ubo-any" as const };
    for (const pass of ["forward", "backwardInput", "backwardWeight"] as const) {
      const used = ops.conv2dVariant(backend, pass, g, options);
      if (used !== "ubo-any") throw new Error(`${pass} ran ${used}`);
    }
    await checkConvPasses(backend, g, options, 61, name);
  });
}

// "ubo-cols" forward and backward to the input (P columns per lane, kernel width and stride
// compiled in): every case above where it applies, plus widths that leave a partial column group
// (P = 2 and 4, J = 8 and 16), kernel widths 1, 3, 5, 7, strides 1 and 2, outputs of width 2 and
// 3, and phases no tap reaches (padding 0, stride 2).
const colsCases: { name: string; g: ops.Conv2dGeometry }[] = [
  ...cases,
  { name: "b3 3->8 7x7 s2 p3 21x23 (P 4, partial group)", g: geometry(3, 3, 8, 21, 23, 7, 2, 3) },
  { name: "b2 5->7 5x5 s1 p2 9x11 (J 8, P 4)", g: geometry(2, 5, 7, 9, 11, 5, 1, 2) },
  { name: "b2 6->19 3x3 s2 p1 9x13 (J 16, P 2)", g: geometry(2, 6, 19, 9, 13, 3, 2, 1) },
  { name: "b5 7->6 1x1 s2 p0 5x6 (width 3)", g: geometry(5, 7, 6, 5, 6, 1, 2, 0) },
  { name: "b2 230->9 3x3 s1 3x5 (channel chunks)", g: geometry(2, 230, 9, 3, 5, 3, 1, 1) },
  { name: "b2 19->6 3x3 s2 p1 11x9 (back J 16, P 2)", g: geometry(2, 19, 6, 11, 9, 3, 2, 1) },
  { name: "b2 7->5 3x3 s2 p1 17x19 (back J 8, P 4)", g: geometry(2, 7, 5, 17, 19, 3, 2, 1) },
  { name: "b2 6->5 5x5 s2 p2 13x14 (back, 3 taps)", g: geometry(2, 6, 5, 13, 14, 5, 2, 2) },
  { name: "b3 5->4 3x3 s2 p0 9x10 (back, unreached)", g: geometry(3, 5, 4, 9, 10, 3, 2, 0) },
  // vec4 loads and stores of the several-row forward (widths multiples of 4, 4 columns per lane).
  { name: "b2 3->8 7x7 s2 p3 18x24 (rows: vec4)", g: geometry(2, 3, 8, 18, 24, 7, 2, 3) },
  { name: "b2 5->8 3x3 s2 p1 12x16 (rows: vec4)", g: geometry(2, 5, 8, 12, 16, 3, 2, 1) },
  { name: "b2 4->7 5x5 s1 p2 7x8 (rows: vec4)", g: geometry(2, 4, 7, 7, 8, 5, 1, 2) },
];
for (const { name, g } of colsCases) {
  const options = { variant: "ubo-cols" as const };
  const forward = ops.conv2dVariant(backend, "forward", g, options) === "ubo-cols";
  const backward = ops.conv2dVariant(backend, "backwardInput", g, options) === "ubo-cols";
  const weight = ops.conv2dVariant(backend, "backwardWeight", g, options) === "ubo-cols";
  if (!forward && !backward && !weight) continue;
  const passes = [
    forward ? "forward" : "",
    backward ? "backward input" : "",
    weight ? "weight" : "",
  ]
    .filter(Boolean);
  Deno.test(`conv variant ubo-cols ${passes.join(" + ")} ${name}`, async () => {
    const run = convPassBuffers(backend, g, 71);
    const { x, w, bias, dy, y, y2, dx, dw } = run;
    const { x: xSize, w: wSize, y: ySize } = run.sizes;
    const { x: xData, w: wData, bias: bData, dy: dyData } = run.data;
    const grads = ref.convBackward(xData, wData, dyData, g);
    const wShape = [g.outC, g.inC, g.kH, g.kW];
    const xShape = [g.batch, g.inC, g.inH, g.inW];
    if (forward) {
      ops.conv2dForward(backend, x, w, bias, y, g, options);
      ops.conv2dForward(backend, x, w, null, y2, g, options);
      const [yOut, y2Out] = await Promise.all([download(y, ySize), download(y2, ySize)]);
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * g.kH * g.kW), rtol: 1e-3 };
      const expected = ref.conv2d(xData, xShape, wData, wShape, bData, g.stride, g.pad).out;
      assertClose(yOut, expected, `${name} forward`, tolerance);
      const noBias = ref.conv2d(xData, xShape, wData, wShape, null, g.stride, g.pad).out;
      assertClose(y2Out, noBias, `${name} forward without bias`, tolerance);
    }
    if (backward) {
      ops.conv2dBackwardInput(backend, dy, w, dx, g, options);
      const dxOut = await download(dx, xSize);
      const dxTolerance = { atol: 1e-4 * Math.sqrt(g.outC * g.kH * g.kW), rtol: 1e-3 };
      assertClose(dxOut, grads.dx, `${name} backward input`, dxTolerance);
    }
    if (weight) {
      ops.conv2dBackwardWeight(backend, dy, x, dw, g, options);
      const dwOut = await download(dw, wSize);
      const dwTolerance = { atol: 1e-4 * Math.sqrt(ySize / g.outC), rtol: 1e-3 };
      assertClose(dwOut, grads.dw, `${name} backward weight`, dwTolerance);
    }
    run.release();
  });
}

// The "ubo-cols" forward with 1, 3 and 4 output rows per lane (convColsForwardKernel's several-row form past 1; 4 is
// the CPU rasterizers' default for kernels of 3 rows or more, 1 what real GPUs run), whatever the
// adapter: partial row groups, scalar and vec4 rows.
for (const { name, g } of colsCases) {
  if (ops.conv2dVariant(backend, "forward", g, { variant: "ubo-cols" }) !== "ubo-cols") continue;
  Deno.test(`conv variant ubo-cols forward, rows per lane 1, 3, 4, ${name}`, async () => {
    const run = convPassBuffers(backend, g, 73);
    const { x, w, bias, y } = run;
    const { x: xData, w: wData, bias: bData } = run.data;
    const wShape = [g.outC, g.inC, g.kH, g.kW];
    const xShape = [g.batch, g.inC, g.inH, g.inW];
    const expected = ref.conv2d(xData, xShape, wData, wShape, bData, g.stride, g.pad).out;
    const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * g.kH * g.kW), rtol: 1e-3 };
    for (const rows of [1, 3, 4]) {
      ops.fill(backend, y, run.sizes.y, 99);
      uboColsForward(backend, x, w, bias, y, g, rows);
      assertClose(
        await download(y, run.sizes.y),
        expected,
        `${name} forward, ${rows} rows`,
        tolerance,
      );
    }
    run.release();
  });
}

// The "ubo-cols" weight gradient both ways, whatever the adapter: dy packed into uniform windows
// (what real GPUs run) and dy read from storage (convRowsBackwardWeightKernel, the CPU
// rasterizers' default where widths are multiples of 4): the ResNet stem's 7x7 stride 2, 3x3 and
// 5x5 at strides 1 and 2, channel counts that leave part of an 8-channel block, lanes split over
// the row segments (batch 9).
const storedDyCases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "b2 3->8 7x7 s2 p3 16x24", g: geometry(2, 3, 8, 16, 24, 7, 2, 3) },
  { name: "b3 5->9 3x3 s2 p1 8x16", g: geometry(3, 5, 9, 8, 16, 3, 2, 1) },
  { name: "b2 4->7 5x5 s1 p2 6x8", g: geometry(2, 4, 7, 6, 8, 5, 1, 2) },
  { name: "b9 6->17 3x3 s1 p1 5x4 (lanes split)", g: geometry(9, 6, 17, 5, 4, 3, 1, 1) },
];
for (const { name, g } of storedDyCases) {
  Deno.test(`conv variant ubo-cols weight, dy stored and windowed, ${name}`, async () => {
    const run = convPassBuffers(backend, g, 79);
    const { x, dy, dw } = run;
    const { x: xData, w: wData, dy: dyData } = run.data;
    const expected = ref.convBackward(xData, wData, dyData, g).dw;
    const tolerance = { atol: 1e-4 * Math.sqrt(run.sizes.y / g.outC), rtol: 1e-3 };
    for (const storedDy of [true, false]) {
      ops.fill(backend, dw, run.sizes.w, 99);
      uboColsBackwardWeight(backend, dy, x, dw, g, storedDy);
      const label = `${name} weight, dy ${storedDy ? "stored" : "windowed"}`;
      assertClose(await download(dw, run.sizes.w), expected, label, tolerance);
    }
    run.release();
  });
}

/**
 * Every conv variant, forced through the launchers' `variant` option, against float64 references
 * on odd shapes (channel counts not multiples of 4 or 8, spatial sizes not tile multiples, input
 * channels past one uniform window): forward, backward to the input, backward to the weight.
 * The references of the backward passes are the exact sums (dx = sum dy * w, dw = sum dy * x).
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import { assertClose, randomArray, testDevice } from "./helpers.ts";

const backend: Backend = (await testDevice()).backend;

function upload(data: Float32Array): GPUBuffer {
  const buffer = backend.pool.acquire(Math.max(4, data.length * 4));
  backend.write(buffer, data);
  return buffer;
}

async function download(buffer: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await backend.read(buffer, n * 4));
}

/** dx and dw of a conv (stride s, padding p) for upstream dy, in float64. */
function convBackwardReference(
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  g: ops.Conv2dGeometry,
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

function geometry(
  batch: number,
  inC: number,
  outC: number,
  h: number,
  w: number,
  k = 3,
  stride = 1,
  pad = 1,
): ops.Conv2dGeometry {
  return {
    batch,
    inC,
    inH: h,
    inW: w,
    outC,
    outH: Math.floor((h + 2 * pad - k) / stride) + 1,
    outW: Math.floor((w + 2 * pad - k) / stride) + 1,
    kH: k,
    kW: k,
    stride,
    pad,
  };
}

const cases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "3->5 7x12", g: geometry(2, 3, 5, 7, 12) },
  { name: "6->13 5x4", g: geometry(3, 6, 13, 5, 4) },
  { name: "9->3 9x8", g: geometry(1, 9, 3, 9, 8) },
  // More input channels than one 64 KiB uniform window holds (227 per chunk): two chunks.
  { name: "230->9 3x4", g: geometry(1, 230, 9, 3, 4) },
  { name: "17->230 4x4", g: geometry(1, 17, 230, 4, 4) },
  // Shapes the ubo variant does not take (falls back to direct): stride 2, width 7, 1x1.
  { name: "5->6 s2 9x8", g: geometry(2, 5, 6, 9, 8, 3, 2, 1) },
  { name: "4->5 6x7", g: geometry(2, 4, 5, 6, 7) },
  { name: "6->5 1x1 5x8", g: geometry(2, 6, 5, 5, 8, 1, 1, 0) },
];

const variants: ops.ConvVariant[] = ["direct", "ubo"];

for (const variant of variants) {
  for (const { name, g } of cases) {
    Deno.test(`conv variant ${variant} ${name}`, async () => {
      const options = { variant };
      const xSize = g.batch * g.inC * g.inH * g.inW;
      const wSize = g.outC * g.inC * g.kH * g.kW;
      const ySize = g.batch * g.outC * g.outH * g.outW;
      const xData = randomArray(xSize, 11);
      const wData = randomArray(wSize, 12);
      const bData = randomArray(g.outC, 13);
      const dyData = randomArray(ySize, 14);
      const [x, w, bias, dy] = [xData, wData, bData, dyData].map(upload);
      const y = backend.pool.acquire(ySize * 4);
      const dx = backend.pool.acquire(xSize * 4);
      const dw = backend.pool.acquire(wSize * 4);
      ops.conv2dForward(backend, x, w, bias, y, g, options);
      ops.conv2dBackwardInput(backend, dy, w, dx, g, options);
      ops.conv2dBackwardWeight(backend, dy, x, dw, g, options);
      const [yOut, dxOut, dwOut] = await Promise.all([
        download(y, ySize),
        download(dx, xSize),
        download(dw, wSize),
      ]);
      const wShape = [g.outC, g.inC, g.kH, g.kW];
      const xShape = [g.batch, g.inC, g.inH, g.inW];
      const expected = ref.conv2d(xData, xShape, wData, wShape, bData, g.stride, g.pad).out;
      const tolerance = { atol: 1e-4 * Math.sqrt(g.inC * 9), rtol: 1e-3 };
      assertClose(yOut, expected, `${variant} ${name} forward`, tolerance);
      const grads = convBackwardReference(xData, wData, dyData, g);
      assertClose(dxOut, grads.dx, `${variant} ${name} backward input`, tolerance);
      const dwTolerance = { atol: 1e-4 * Math.sqrt(ySize / g.outC), rtol: 1e-3 };
      assertClose(dwOut, grads.dw, `${variant} ${name} backward weight`, dwTolerance);
      for (const buffer of [x, w, bias, dy, y, dx, dw]) backend.pool.release(buffer);
      backend.flush();
    });
  }
}

Deno.test("conv2dVariant reports the fallback for shapes a variant does not take", () => {
  const strided = geometry(1, 4, 4, 8, 8, 3, 2, 1);
  ops.conv2dVariant(backend, "forward", strided, { variant: "ubo" }) === "direct" ||
    (() => {
      throw new Error("stride 2 should fall back to direct");
    })();
});

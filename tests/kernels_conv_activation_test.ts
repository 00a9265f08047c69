/**
 * The conv forward with an activation (ConvForwardOptions.activation) against float64: the ubo
 * variant applies it as it stores the last input-channel chunk (one chunk, several chunks, a layer
 * narrower than its channel block, bias or none), the other variants run the activation pass after
 * the conv; relu and sigmoid, odd shapes.
 */

import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import {
  assertClose,
  convGeometry,
  convPassBuffers,
  downloadBuffer,
  testDevice,
} from "./helpers.ts";

const backend = (await testDevice()).backend;

const cases: { name: string; g: ops.Conv2dGeometry; variant: ops.ConvVariant }[] = [
  {
    name: "ubo 8->3 @12x8 (3 of a 4-channel block)",
    g: convGeometry(2, 8, 3, 12, 8),
    variant: "ubo",
  },
  { name: "ubo 5->9 @7x4", g: convGeometry(3, 5, 9, 7, 4), variant: "ubo" },
  { name: "ubo 230->6 @4x4 (2 input chunks)", g: convGeometry(1, 230, 6, 4, 4), variant: "ubo" },
  { name: "ubo-any 6->5 3x3 s2 @9x7", g: convGeometry(2, 6, 5, 9, 7, 3, 2, 1), variant: "ubo-any" },
  { name: "direct 4->7 @5x6", g: convGeometry(2, 4, 7, 5, 6), variant: "direct" },
];

for (const { name, g, variant } of cases) {
  for (const activation of ["sigmoid", "relu"] as const) {
    Deno.test(`conv forward + ${activation}, ${name}`, async () => {
      const used = ops.conv2dVariant(backend, "forward", g, { variant });
      if (used !== variant) throw new Error(`forward ran ${used}`);
      const run = convPassBuffers(backend, g, 17);
      const { x, w, bias, y, y2 } = run;
      ops.conv2dForward(backend, x, w, bias, y, g, { variant, activation });
      ops.conv2dForward(backend, x, w, null, y2, g, { variant, activation });
      const [withBias, noBias] = await Promise.all([
        downloadBuffer(backend, y, run.sizes.y),
        downloadBuffer(backend, y2, run.sizes.y),
      ]);
      const xShape = [g.batch, g.inC, g.inH, g.inW];
      const wShape = [g.outC, g.inC, g.kH, g.kW];
      const f = activation === "relu"
        ? (v: number) => Math.max(v, 0)
        : (v: number) => 1 / (1 + Math.exp(-v));
      for (const [out, b] of [[withBias, run.data.bias], [noBias, null]] as const) {
        const conv = ref.conv2d(run.data.x, xShape, run.data.w, wShape, b, g.stride, g.pad).out;
        const expected = Float64Array.from(conv, f);
        assertClose(out, expected, `${name} ${activation} bias ${b !== null}`, {
          atol: 1e-4,
          rtol: 1e-4,
        });
      }
      run.release();
    });
  }
}

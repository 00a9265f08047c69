/**
 * The "plane" conv variant (3x3 stride 1 padding 1 on maps of at most 16 pixels, the map's shape
 * compiled in), forced through the launchers' `variant` option, against float64 references:
 * forward with and without bias, backward to the input and backward to the weight on 2x2 and 4x4
 * maps and odd ones (1x4, 4x2, 2x6: rows no tap reaches), channel counts that leave part of a
 * block (3, 5, 7, 9), several uniform windows of blocks, several input-channel chunks (forward and
 * backward), and batches that split the weight gradient's samples.
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { checkConvPasses, convGeometry, testDevice } from "./helpers.ts";
import { strictEqual as assertEquals } from "node:assert/strict";

const backend: Backend = (await testDevice()).backend;

const cases: { name: string; g: ops.Conv2dGeometry }[] = [
  { name: "b3 9->7 2x2", g: convGeometry(3, 9, 7, 2, 2) },
  { name: "b2 5->3 4x4", g: convGeometry(2, 5, 3, 4, 4) },
  { name: "b3 6->5 2x4", g: convGeometry(3, 6, 5, 2, 4) },
  { name: "b2 7->9 4x2", g: convGeometry(2, 7, 9, 4, 2) },
  { name: "b2 4->6 1x4 (taps of rows 0 and 2 unreached)", g: convGeometry(2, 4, 6, 1, 4) },
  { name: "b5 3->2 2x6", g: convGeometry(5, 3, 2, 2, 6) },
  { name: "b2 64->64 2x2 (3 windows of blocks)", g: convGeometry(2, 64, 64, 2, 2) },
  { name: "b1 240->9 2x2 (2 input-channel chunks)", g: convGeometry(1, 240, 9, 2, 2) },
  { name: "b1 9->240 2x2 (2 chunks backward)", g: convGeometry(1, 9, 240, 2, 2) },
  { name: "b33 3->5 2x2 (samples split)", g: convGeometry(33, 3, 5, 2, 2) },
  { name: "b4 33->31 4x4 (samples split, partial blocks)", g: convGeometry(4, 33, 31, 4, 4) },
];

for (const { name, g } of cases) {
  Deno.test(`conv variant plane ${name}`, async () => {
    const options = { variant: "plane" as const };
    for (const pass of ["forward", "backwardInput", "backwardWeight"] as const) {
      assertEquals(ops.conv2dVariant(backend, pass, g, options), "plane", pass);
    }
    await checkConvPasses(backend, g, options, 83, name);
  });
}

Deno.test("conv variant plane: maps it does not compile fall back", () => {
  // 3x3 (9 pixels: not whole vec4s), 8x8 (64 pixels), strided and 1x1 kernels.
  for (
    const g of [
      convGeometry(2, 4, 4, 3, 3),
      convGeometry(2, 4, 4, 8, 8),
      convGeometry(2, 4, 4, 4, 4, 3, 2, 1),
      convGeometry(2, 4, 4, 2, 2, 1, 1, 0),
    ]
  ) {
    for (const pass of ["forward", "backwardInput", "backwardWeight"] as const) {
      const used = ops.conv2dVariant(backend, pass, g, { variant: "plane" });
      if (used === "plane") throw new Error(`plane ran ${JSON.stringify(g)} ${pass}`);
    }
  }
});

/**
 * Time the conv variants of one pass on the ResNet34 w1/8 batch-32 shapes (the profile_step demo)
 * in one process, interleaved rounds, median of 3 (VA_AUTOTUNE=0 shows the untuned default).
 *
 * `--set ae` times the tiny autoencoder's conv shapes instead (maps conditioning: +2 channels),
 * `--set paper` the paper-size face autoencoder's; `--variants` picks the variants to time.
 *
 *   deno run -A bench/conv_variants.ts [--pass forward|backwardInput|backwardWeight] [--batch 32]
 *     [--set resnet|ae|paper] [--only NAME] [--variants direct,ubo,ubo-any,ubo-cols]
 */

import { Device } from "../nn/device.ts";
import * as ops from "../kernels/ops.ts";
import { convGeometry } from "../tests/helpers.ts";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const pass = (flag("pass") ?? "forward") as ops.ConvPass;
const batch = Number(flag("batch") ?? 32);
const b = (await Device.create()).backend;
const resnetShapes: [string, ops.Conv2dGeometry][] = [
  ["stem 3->8 7x7s2 @64", convGeometry(batch, 3, 8, 64, 64, 7, 2, 3)],
  ["l1 8->8 3x3 @16", convGeometry(batch, 8, 8, 16, 16, 3, 1, 1)],
  ["l2 8->16 3x3s2 @16", convGeometry(batch, 8, 16, 16, 16, 3, 2, 1)],
  ["l2 ds 8->16 1x1s2 @16", convGeometry(batch, 8, 16, 16, 16, 1, 2, 0)],
  ["l2 16->16 3x3 @8", convGeometry(batch, 16, 16, 8, 8, 3, 1, 1)],
  ["l3 16->32 3x3s2 @8", convGeometry(batch, 16, 32, 8, 8, 3, 2, 1)],
  ["l3 ds 16->32 1x1s2 @8", convGeometry(batch, 16, 32, 8, 8, 1, 2, 0)],
  ["l3 32->32 3x3 @4", convGeometry(batch, 32, 32, 4, 4, 3, 1, 1)],
  ["l4 32->64 3x3s2 @4", convGeometry(batch, 32, 64, 4, 4, 3, 2, 1)],
  ["l4 ds 32->64 1x1s2 @4", convGeometry(batch, 32, 64, 4, 4, 1, 2, 0)],
  ["l4 64->64 3x3 @2", convGeometry(batch, 64, 64, 2, 2, 3, 1, 1)],
];
const aeShapes: [string, ops.Conv2dGeometry][] = [
  ["enc 3->8 @64", convGeometry(batch, 3, 8, 64, 64)],
  ["enc 8->16 @32", convGeometry(batch, 8, 16, 32, 32)],
  ["enc 16->16 @16", convGeometry(batch, 16, 16, 16, 16)],
  ["enc 16->32 @8", convGeometry(batch, 16, 32, 8, 8)],
  ["dec 34->32 @8", convGeometry(batch, 34, 32, 8, 8)],
  ["dec 34->16 @16", convGeometry(batch, 34, 16, 16, 16)],
  ["dec 18->16 @32", convGeometry(batch, 18, 16, 32, 32)],
  ["dec 18->8 @64", convGeometry(batch, 18, 8, 64, 64)],
  ["dec 10->3 @64", convGeometry(batch, 10, 3, 64, 64)],
];
// The paper's face autoencoder (widths 64-128-256-512; run it with --batch 64 --variants ubo:
// the direct kernel takes minutes on these).
const paperShapes: [string, ops.Conv2dGeometry][] = [
  ["enc 3->64 @64", convGeometry(batch, 3, 64, 64, 64)],
  ["enc 64->128 @32", convGeometry(batch, 64, 128, 32, 32)],
  ["enc 128->256 @16", convGeometry(batch, 128, 256, 16, 16)],
  ["enc 256->512 @8", convGeometry(batch, 256, 512, 8, 8)],
  ["dec 512->512 @8", convGeometry(batch, 512, 512, 8, 8)],
  ["dec 512->256 @16", convGeometry(batch, 512, 256, 16, 16)],
  ["dec 256->128 @32", convGeometry(batch, 256, 128, 32, 32)],
  ["dec 128->64 @64", convGeometry(batch, 128, 64, 64, 64)],
  ["dec 64->3 @64", convGeometry(batch, 64, 3, 64, 64)],
];
const set = flag("set") ?? "resnet";
const shapes = set === "ae" ? aeShapes : set === "paper" ? paperShapes : resnetShapes;
const variants = (flag("variants")?.split(",") ??
  ["direct", "ubo", "ubo-any", "ubo-cols"]) as ops.ConvVariant[];
const only = flag("only");
for (const [name, g] of shapes) {
  if (only && !name.includes(only)) continue;
  const xSize = g.batch * g.inC * g.inH * g.inW;
  const wSize = g.outC * g.inC * g.kH * g.kW;
  const ySize = g.batch * g.outC * g.outH * g.outW;
  const [x, w, y] = [xSize, wSize, ySize].map((n) => b.pool.acquire(n * 4));
  ops.fill(b, x, xSize, 0.5);
  ops.fill(b, w, wSize, 0.01);
  ops.fill(b, y, ySize, 0.25);
  const applicable = variants.filter((v) => ops.conv2dVariant(b, pass, g, { variant: v }) === v);
  const times: Record<string, number[]> = {};
  const reps = 10;
  for (let round = 0; round < 4; round++) {
    for (const variant of applicable) {
      const options = { variant };
      const record = () =>
        pass === "forward"
          ? ops.conv2dForward(b, x, w, null, y, g, options)
          : pass === "backwardInput"
          ? ops.conv2dBackwardInput(b, y, w, x, g, options)
          : ops.conv2dBackwardWeight(b, y, x, w, g, options);
      await b.sync();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) record();
      await b.sync();
      if (round > 0) (times[variant] ??= []).push((performance.now() - t0 - 11) / reps);
    }
  }
  const text = applicable.map((v) => {
    const t = times[v].sort((a, c) => a - c)[1];
    return `${v} ${t.toFixed(2)}`;
  }).join(", ");
  console.log(`${pass} ${name}: ${text} ms (default ${ops.conv2dVariant(b, pass, g)})`);
  for (const buffer of [x, w, y]) b.pool.release(buffer);
  b.flush();
}

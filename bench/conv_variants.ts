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
import { AUTOENCODER_SIZES } from "../nn/models/autoencoder.ts";

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
/**
 * The 3x3 convs of a 64x64 face autoencoder of `widths` (nn/models/autoencoder.ts): the encoder's,
 * then the decoder's with `extra` input channels each (the (v, a) maps) and the last conv to 3.
 */
function autoencoderShapes(
  widths: readonly number[],
  extra: number,
): [string, ops.Conv2dGeometry][] {
  const shapes: [string, ops.Conv2dGeometry][] = [];
  const add = (part: string, inC: number, outC: number, side: number) =>
    shapes.push([`${part} ${inC}->${outC} @${side}`, convGeometry(batch, inC, outC, side, side)]);
  let channels = 3;
  widths.forEach((w, i) => {
    add("enc", channels, w, 64 / 2 ** i);
    channels = w;
  });
  [...widths].reverse().forEach((w, i) => {
    add("dec", channels + extra, w, 64 / 2 ** (widths.length - 1 - i));
    channels = w;
  });
  add("dec", channels + extra, 3, 64);
  return shapes;
}
const set = flag("set") ?? "resnet";
// "ae": the demo's tiny autoencoder with maps conditioning; "paper": the paper's widths (run it with
// --batch 64 --variants ubo: the direct kernel takes minutes on these).
const shapes = set === "ae"
  ? autoencoderShapes(AUTOENCODER_SIZES.tiny, 2)
  : set === "paper"
  ? autoencoderShapes(AUTOENCODER_SIZES.paper, 0)
  : resnetShapes;
const variants = (flag("variants")?.split(",") ??
  ops.CONV_VARIANTS) as ops.ConvVariant[];
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

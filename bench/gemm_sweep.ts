/**
 * Sweep the implicit-GEMM conv's tilings (kernels/wgsl/conv_gemm.ts GemmTile) on the paper-size
 * face autoencoder's heaviest conv shapes, all three passes, on the adapter at hand: which tiling a
 * real GPU runs fastest, and each one's result checked against the "gemm" tiling's (max absolute
 * difference relative to the largest output). Meant for a lent GPU (bench/device/run.sh with
 * PARTS=sweep); on llvmpipe use `--quick` (batch 2), it is slow there.
 *
 *   deno run -A bench/gemm_sweep.ts [--batch 64] [--quick] [--tiles NAME,NAME] [--json PATH]
 */

import { parseArgs } from "node:util";
import { Device } from "../nn/device.ts";
import type { Conv2dGeometry } from "../kernels/conv_geometry.ts";
import {
  GEMM_SWEEP_TILES,
  gemmApplicable,
  gemmBackwardInput,
  gemmBackwardWeight,
  gemmDimensions,
  gemmForward,
} from "../kernels/conv_gemm.ts";
import { GEMM_TILE, type GemmConvPass, type GemmTile } from "../kernels/wgsl/conv_gemm.ts";
import { convGeometry } from "../tests/helpers.ts";
import { fenceFloorMs, fmt, markdownTable, timeRecorded } from "./harness.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    batch: { type: "string" },
    quick: { type: "boolean", default: false },
    tiles: { type: "string" },
    json: { type: "string" },
  },
});
const quick = args.quick ?? false;
const batch = Number(args.batch ?? (quick ? 2 : 64));
const wanted = args.tiles?.split(",");
const tiles = Object.entries(GEMM_SWEEP_TILES).filter(([name]) =>
  !wanted || wanted.some((w) => name.startsWith(w))
);
const shapes: [string, Conv2dGeometry][] = [
  ["512->256 @16", convGeometry(batch, 512, 256, 16, 16)],
  ["256->128 @32", convGeometry(batch, 256, 128, 32, 32)],
  ["128->64 @64", convGeometry(batch, 128, 64, 64, 64)],
  ["512->512 @8", convGeometry(batch, 512, 512, 8, 8)],
  ["64->128 @32", convGeometry(batch, 64, 128, 32, 32)],
];
const passes: GemmConvPass[] = ["forward", "backwardInput", "backwardWeight"];

const device = await Device.create();
const b = device.backend;
const floor = await fenceFloorMs(b);
console.error(`adapter ${b.adapterName}, batch ${batch}, ${tiles.length} tilings`);

function randomBuffer(n: number, seed: number): GPUBuffer {
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 4294967296 - 0.5;
  }
  const buffer = b.pool.acquire(n * 4);
  b.write(buffer, data);
  return buffer;
}

interface Cell {
  tile: string;
  shape: string;
  pass: GemmConvPass;
  ms: number | null;
  gflops: number | null;
  /** max |result - gemm's| / max |gemm's|; null for the reference tiling itself or if not run. */
  difference: number | null;
  error?: string;
}
const cells: Cell[] = [];

for (const [shapeName, g] of shapes) {
  const sizes = {
    x: g.batch * g.inC * g.inH * g.inW,
    w: g.outC * g.inC * g.kH * g.kW,
    y: g.batch * g.outC * g.outH * g.outW,
  };
  const x = randomBuffer(sizes.x, 1);
  const w = randomBuffer(sizes.w, 2);
  const bias = randomBuffer(g.outC, 3);
  const dy = randomBuffer(sizes.y, 4);
  for (const pass of passes) {
    const { M, N, K } = gemmDimensions(pass, g);
    const flops = 2 * M * N * K;
    const outSize = pass === "forward" ? sizes.y : pass === "backwardInput" ? sizes.x : sizes.w;
    const out = b.pool.acquire(outSize * 4);
    const record = (tile: GemmTile) => () => {
      if (pass === "forward") gemmForward(b, x, w, bias, out, g, tile);
      else if (pass === "backwardInput") gemmBackwardInput(b, dy, w, out, g, tile);
      else gemmBackwardWeight(b, dy, x, out, g, tile);
    };
    let reference: Float32Array | null = null;
    for (const [name, tile] of tiles) {
      const cell: Cell = {
        tile: name,
        shape: shapeName,
        pass,
        ms: null,
        gflops: null,
        difference: null,
      };
      cells.push(cell);
      if (!gemmApplicable(b, pass, g, tile)) {
        cell.error = "not applicable";
        continue;
      }
      try {
        record(tile)();
        const result = new Float32Array(await b.read(out, outSize * 4));
        if (tile === GEMM_TILE) reference = result;
        else if (reference) cell.difference = relativeDifference(result, reference);
        const t = await timeRecorded(b, record(tile), floor, {
          targetMs: quick ? 30 : 80,
          rounds: quick ? 1 : 3,
        });
        cell.ms = t.ms;
        cell.gflops = flops / (t.ms * 1e6);
      } catch (error) {
        cell.error = (error as Error).message.split("\n")[0];
      }
      console.error(
        `${shapeName} ${pass} ${name}: ${fmt(cell.ms)} ms${cell.error ? ` (${cell.error})` : ""}`,
      );
    }
    b.pool.release(out);
  }
  for (const buffer of [x, w, bias, dy]) b.pool.release(buffer);
  await b.sync();
}

function relativeDifference(a: Float32Array, ref: Float32Array): number {
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    worst = Math.max(worst, Math.abs(a[i] - ref[i]));
  }
  return scale > 0 ? worst / scale : worst;
}

const columns = shapes.flatMap(([s]) => passes.map((p) => `${s} ${p.replace("backward", "bwd-")}`));
const rows = tiles.map(([name]) => {
  const mine = cells.filter((c) => c.tile === name);
  const total = mine.every((c) => c.ms !== null) ? mine.reduce((s, c) => s + c.ms!, 0) : null;
  const worst = Math.max(0, ...mine.map((c) => c.difference ?? 0));
  return [
    name,
    ...mine.map((c) => c.ms === null ? "x" : `${fmt(c.ms)} (${fmt(c.gflops, 0)})`),
    fmt(total),
    worst.toExponential(1),
  ];
});
console.log(`\nadapter ${b.adapterName}; batch ${batch}; ms per pass (GFLOP/s)\n`);
console.log(markdownTable(["tiling", ...columns, "total ms", "max diff"], rows));
const best =
  rows.filter((r) => r[r.length - 2] !== "-").sort((p, q) =>
    Number(p[p.length - 2]) - Number(q[q.length - 2])
  )[0];
if (best) console.log(`\nfastest in total: ${best[0]} (${best[best.length - 2]} ms)`);
if (args.json) {
  const tmp = `${args.json}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify({ adapter: b.adapterName, batch, cells }, null, 1));
  Deno.renameSync(tmp, args.json);
}
device.destroy();

import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

const skewed = data.synthetic({ seed: 11, persons: 40, framesPerPerson: 25, size: 8 }).samples;

Deno.test("binning: 0.1 grid, 1.0 in the last cell, -1 in the first", () => {
  assert.equal(data.cellsPerAxis(0.1), 20);
  assert.equal(data.axisBin(1, 0.1), 19);
  assert.equal(data.axisBin(-1, 0.1), 0);
  assert.equal(data.axisBin(-0.9, 0.1), 1);
  assert.equal(data.axisBin(0.05, 0.1), 10);
  assert.equal(data.vaCell({ valence: 1, arousal: 1 }), 399);
  assert.equal(data.vaCell({ valence: -1, arousal: 0.95 }, 0.5), 3 * 4);
  const counts = data.binCounts(skewed, { binSize: 0.2 });
  assert.equal(counts.length, 100);
  assert.equal(counts.reduce((a, b) => a + b, 0), skewed.length);
});

Deno.test("underSample: at most T_u per cell, keeps small cells, seeded", () => {
  const before = data.binCounts(skewed);
  const under = data.underSample(skewed, { threshold: 5, binSize: 0.1, seed: 1 });
  const after = data.binCounts(under);
  for (let c = 0; c < before.length; c++) assert.equal(after[c], Math.min(before[c], 5));
  assert.ok(under.length < skewed.length);
  assert.deepEqual(
    data.underSampleIndices(skewed, { threshold: 5, seed: 1 }),
    data.underSampleIndices(skewed, { threshold: 5, seed: 1 }),
  );
  assert.notDeepEqual(
    data.underSampleIndices(skewed, { threshold: 5, seed: 1 }),
    data.underSampleIndices(skewed, { threshold: 5, seed: 2 }),
  );
  assert.equal(new Set(data.underSampleIndices(skewed, { threshold: 5 })).size, under.length); // no repeats
});

Deno.test("overSample: every non-empty cell reaches T_o, big cells unchanged, empty stay empty", () => {
  const before = data.binCounts(skewed);
  const indices = data.overSampleIndices(skewed, { threshold: 8, binSize: 0.1, seed: 3 });
  const after = data.binCounts(indices.map((i) => skewed[i]));
  for (let c = 0; c < before.length; c++) {
    assert.equal(after[c], before[c] === 0 ? 0 : Math.max(before[c], 8));
  }
  // Replicas are spread evenly: in a cell of 3 raised to 8, each sample appears 2 or 3 times.
  const uses = new Map<number, number>();
  for (const i of indices) uses.set(i, (uses.get(i) ?? 0) + 1);
  for (const [i, n] of uses) {
    const size = before[data.vaCell(skewed[i])];
    if (size < 8) {
      assert.ok(
        n === Math.floor(8 / size) || n === Math.ceil(8 / size),
        `${n} uses in a cell of ${size}`,
      );
    }
  }
  assert.deepEqual(indices, data.overSampleIndices(skewed, { threshold: 8, seed: 3 }));
  assert.equal(data.overSample(skewed, { threshold: 8, seed: 3 }).length, indices.length);
});

Deno.test("sampleUnitDisk: inside the disk, flat area density, centred, seeded", () => {
  const points = data.sampleUnitDisk(20000, 4);
  assert.ok(points.every((p) => Math.hypot(p.valence, p.arousal) <= 1));
  // For a uniform disk P(r < 0.5) = 0.25 and E[r] = 2/3; means are 0.
  const inner = points.filter((p) => Math.hypot(p.valence, p.arousal) < 0.5).length / points.length;
  assert.ok(Math.abs(inner - 0.25) < 0.015, `inner fraction ${inner}`);
  const meanR = points.reduce((s, p) => s + Math.hypot(p.valence, p.arousal), 0) / points.length;
  assert.ok(Math.abs(meanR - 2 / 3) < 0.01, `mean radius ${meanR}`);
  const meanV = points.reduce((s, p) => s + p.valence, 0) / points.length;
  const meanA = points.reduce((s, p) => s + p.arousal, 0) / points.length;
  assert.ok(Math.abs(meanV) < 0.015 && Math.abs(meanA) < 0.015);
  const quadrant = points.filter((p) => p.valence < 0 && p.arousal > 0).length / points.length;
  assert.ok(Math.abs(quadrant - 0.25) < 0.015);
  assert.deepEqual(data.sampleUnitDisk(5, 4), points.slice(0, 5));
  assert.notDeepEqual(data.sampleUnitDisk(5, 5), points.slice(0, 5));
});

import assert from "node:assert/strict";
import { join } from "node:path";
import * as data from "../../pipelines/data/mod.ts";

const quiet = { log: () => {} };

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "data_readers_" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const set = data.synthetic({ seed: 7, persons: 10, framesPerPerson: 4 });

Deno.test("AFEW-VA: exported set reads back with labels, persons, boxes and pixels", async () => {
  await withTempDir(async (dir) => {
    const written = await data.exportAfewVa(set, dir);
    assert.deepEqual(written, { persons: 10, images: 40 });
    const all = await data.readAfewVa(dir, { split: "all" });
    assert.equal(all.samples.length, 40);
    assert.equal(all.skipped, 0);
    for (let i = 0; i < 40; i++) {
      const read = all.samples[i], original = set.samples[i];
      assert.equal(read.person, original.person);
      assert.equal(read.valence, (Math.round(original.valence * 10) + 0) / 10);
      assert.equal(read.arousal, (Math.round(original.arousal * 10) + 0) / 10);
      assert.equal(read.landmarks!.length, 68);
      // The box is square and contains every landmark.
      const [x, y, w, h] = read.box;
      assert.equal(w, h);
      for (const [lx, ly] of read.landmarks!) {
        assert.ok(lx >= x && lx <= x + w && ly >= y && ly <= y + h);
      }
    }
    // Loading the whole frame (box = image) reproduces the rendered pixels up to PNG rounding.
    const frames = all.samples.slice(0, 3).map((s) => ({ ...s, box: [0, 0, 64, 64] as data.Box }));
    const faces = await data.loadFaces(frames, { size: 64, ...quiet });
    const plane = 3 * 64 * 64;
    for (let i = 0; i < plane * 3; i++) {
      assert.ok(Math.abs(faces[i] - set.images[i]) <= 0.5 / 255 + 1e-6);
    }
  });
});

Deno.test("AFEW-VA: seeded 82/18 split is disjoint by person and reproducible", async () => {
  await withTempDir(async (dir) => {
    await data.exportAfewVa(data.synthetic({ seed: 3, persons: 20, framesPerPerson: 2 }), dir);
    const train = await data.readAfewVa(dir, { split: "train", seed: 5 });
    const test = await data.readAfewVa(dir, { split: "test", seed: 5 });
    const trainPersons = new Set(train.samples.map((s) => s.person));
    const testPersons = new Set(test.samples.map((s) => s.person));
    assert.equal(trainPersons.size, 16); // round(20 * 0.82)
    assert.equal(testPersons.size, 4);
    assert.ok([...testPersons].every((p) => !trainPersons.has(p)));
    const again = await data.readAfewVa(dir, { split: "test", seed: 5 });
    assert.deepEqual(again.samples.map((s) => s.image), test.samples.map((s) => s.image));
    const other = await data.readAfewVa(dir, { split: "test", seed: 6 });
    assert.notDeepEqual(new Set(other.samples.map((s) => s.person)), testPersons);
  });
});

Deno.test("samePersonPairs: same person, different V/A, deterministic", () => {
  const pairs = data.samePersonPairs(set.samples, { seed: 1 });
  assert.equal(pairs.length, set.samples.length);
  for (const { i, j } of pairs) {
    assert.equal(set.samples[i].person, set.samples[j].person);
    assert.notEqual(i, j);
  }
  assert.deepEqual(data.samePersonPairs(set.samples, { seed: 1 }), pairs);
  const lonely = [
    { person: "a", valence: 0.1, arousal: 0.1 },
    { person: "a", valence: 0.1, arousal: 0.1 },
    { person: "b", valence: 0.5, arousal: 0 },
  ];
  assert.deepEqual(data.samePersonPairs(lonely), []);
});

Deno.test("AffectNet CSV: round trip, -2 and class 9/10 dropped, quoted fields", async () => {
  await withTempDir(async (dir) => {
    await data.exportAffectNet(set, dir, { imageFormat: "png" });
    const train = await data.readAffectNet(dir, { split: "train" });
    const validation = await data.readAffectNet(dir, { split: "validation" });
    assert.equal(train.samples.length + validation.samples.length, 40);
    assert.equal(validation.samples.length, 8); // 2 of 10 persons
    const byLabel = new Map(set.samples.map((s) => [`${s.valence},${s.arousal}`, s]));
    for (const sample of [...train.samples, ...validation.samples]) {
      const original = byLabel.get(`${sample.valence},${sample.arousal}`);
      assert.ok(original, "labels round-trip exactly");
      assert.equal(sample.expression, original.expression);
      assert.equal(sample.landmarks!.length, 68);
      assert.ok(sample.box[2] > 10 && sample.box[3] > 10);
    }
    // Append rows: invalid V/A, classes 9 and 10, and a valid row with quoted fields.
    const csv = join(dir, "Manually_Annotated_file_lists", "training.csv");
    const first = train.samples[0];
    const relative = first.image.split("Manually_Annotated_Images/")[1];
    const lm = Array(136).fill("1.5").join(";");
    await Deno.writeTextFile(
      csv,
      [
        `${relative},0,0,64,64,${lm},1,-2,-2`,
        `${relative},0,0,64,64,${lm},9,0.5,0.5`,
        `${relative},0,0,64,64,${lm},10,0.5,0.5`,
        `"${relative}","4","5","50","40","${lm}",3,"0.25","-0.75"`,
      ].join("\n") + "\n",
      { append: true },
    );
    const reread = await data.readAffectNet(dir, { split: "train" });
    assert.equal(reread.skipped, 3);
    assert.equal(reread.samples.length, train.samples.length + 1);
    const quoted = reread.samples.at(-1)!;
    assert.deepEqual(quoted.box, [4, 5, 50, 40]);
    assert.deepEqual([quoted.valence, quoted.arousal, quoted.expression], [0.25, -0.75, 3]);
    assert.match(reread.summary, /V\/A = -2: 1, class 9\/10: 2/);
  });
});

Deno.test("AffectNet CSV with JPEG images loads faces cropped by the box", async () => {
  await withTempDir(async (dir) => {
    await data.exportAffectNet(set, dir);
    const train = await data.readAffectNet(dir);
    assert.ok(train.samples[0].image.endsWith(".jpg"));
    const faces = await data.loadFaces(train.samples.slice(0, 4), { size: 32, ...quiet });
    assert.equal(faces.length, 4 * 3 * 32 * 32);
    assert.ok(faces.every((v) => v >= 0 && v <= 1));
    assert.ok(faces.some((v) => v > 0.2));
  });
});

Deno.test("AffectNet 8-label release: npy annotations with '<U' labels read back", async () => {
  await withTempDir(async (dir) => {
    await data.exportAffectNet(set, dir, { layout: "npy" });
    const val = await data.readNpy(join(dir, "train_set", "annotations", "0_val.npy"));
    assert.match(val.dtype, /^<U\d+$/);
    assert.deepEqual(val.shape, []);
    const train = await data.readAffectNet(dir, { split: "train" });
    const validation = await data.readAffectNet(dir, { split: "validation", release: "8label" });
    assert.equal(train.samples.length + validation.samples.length, 40);
    const labels = new Set(set.samples.map((s) => `${s.valence},${s.arousal},${s.expression}`));
    for (const s of [...train.samples, ...validation.samples]) {
      assert.ok(labels.has(`${s.valence},${s.arousal},${s.expression}`));
      assert.deepEqual(s.box, [0, 0, 64, 64]); // whole image: the release is pre-cropped
      assert.equal(s.landmarks!.length, 68);
    }
    // Class 10 and V/A -2 in this layout are dropped too.
    const annotations = join(dir, "val_set", "annotations");
    const firstId = validation.samples[0].image.match(/(\d+)\.jpg$/)![1];
    await Deno.writeFile(join(annotations, `${firstId}_exp.npy`), data.encodeNpy(["10"], "<U", []));
    const secondId = validation.samples[1].image.match(/(\d+)\.jpg$/)![1];
    await Deno.writeFile(join(annotations, `${secondId}_aro.npy`), data.encodeNpy([-2], "<f8", []));
    const filtered = await data.readAffectNet(dir, { split: "validation" });
    assert.equal(filtered.skipped, 2);
    assert.equal(filtered.samples.length, validation.samples.length - 2);
  });
});

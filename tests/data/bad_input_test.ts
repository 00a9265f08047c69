import assert from "node:assert/strict";
import { join } from "node:path";
import * as data from "../../pipelines/data/mod.ts";

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "data_bad_" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const set = data.synthetic({ seed: 41, persons: 3, framesPerPerson: 2, size: 32 });

/** Asserts that `run` rejects with a DataError whose message matches `pattern`. */
async function rejectsWith(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(run, (error: Error) => {
    assert.ok(error instanceof data.DataError, `not a DataError: ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("AFEW-VA: missing root, no clips, missing annotation file", async () => {
  await withTempDir(async (dir) => {
    await rejectsWith(
      () => data.readAfewVa(join(dir, "nope")),
      /nope: AFEW-VA root folder not found/,
    );
    await rejectsWith(() => data.readAfewVa(dir), /has no clip folders/);
    await Deno.mkdir(join(dir, "001"));
    await rejectsWith(() => data.readAfewVa(dir), /001\.json: AFEW-VA annotation file not found/);
  });
});

Deno.test("AFEW-VA: malformed JSON names the file and line", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(join(dir, "001"));
    await Deno.writeTextFile(
      join(dir, "001", "001.json"),
      '{\n  "actor": "x",\n  "frames": {,\n}\n',
    );
    await rejectsWith(() => data.readAfewVa(dir), /001\.json:3: malformed JSON/);
  });
});

Deno.test("AFEW-VA: out-of-range, NaN and non-numeric labels name file, frame and line", async () => {
  await withTempDir(async (dir) => {
    await data.exportAfewVa(set, dir);
    const file = join(dir, "002", "002.json");
    const original = JSON.parse(await Deno.readTextFile(file));
    const write = (patch: Record<string, unknown>) => {
      const copy = structuredClone(original);
      Object.assign(copy.frames["00001"], patch);
      return Deno.writeTextFile(file, JSON.stringify(copy, null, 1));
    };
    await write({ valence: 12 });
    await rejectsWith(
      () => data.readAfewVa(dir),
      /002\.json:\d+: frame "00001": valence 12 is outside \[-10, 10\]/,
    );
    await write({ arousal: "high" });
    await rejectsWith(
      () => data.readAfewVa(dir),
      /002\.json:\d+: frame "00001": arousal must be a number/,
    );
    await write({ landmarks: [[1, 2]] });
    await rejectsWith(() => data.readAfewVa(dir), /landmarks must be 68/);
    // JSON has no NaN literal; a null (what NaN serialises to) is rejected the same way.
    await write({ valence: NaN });
    await rejectsWith(() => data.readAfewVa(dir), /valence must be a number, got null/);
  });
});

Deno.test("AFEW-VA: frames without an image are skipped and counted; empty split errors", async () => {
  await withTempDir(async (dir) => {
    await data.exportAfewVa(set, dir);
    await Deno.remove(join(dir, "001", "00000.png"));
    const result = await data.readAfewVa(dir);
    assert.equal(result.skipped, 1);
    assert.equal(result.samples.length, 5);
    assert.match(result.summary, /skipped 1 frames without an image file/);
    await rejectsWith(
      () => data.readAfewVa(dir, { split: "test", trainFraction: 1 }),
      /split "test" is empty/,
    );
    await rejectsWith(
      () => data.readAfewVa(dir, { split: "val" as "test" }),
      /unknown split "val"/,
    );
  });
});

Deno.test("AffectNet: missing root and unknown layout", async () => {
  await withTempDir(async (dir) => {
    await rejectsWith(() => data.readAffectNet(join(dir, "x")), /AffectNet root folder not found/);
    await rejectsWith(() => data.readAffectNet(dir), /no AffectNet layout found/);
    await rejectsWith(
      () => data.readAffectNet(dir, { release: "manual" }),
      /training\.csv: AffectNet CSV list not found/,
    );
    await rejectsWith(
      () => data.readAffectNet(dir, { release: "8label" }),
      /train_set: AffectNet split folder not found/,
    );
  });
});

Deno.test("AffectNet CSV: malformed rows name the file and line", async () => {
  await withTempDir(async (dir) => {
    await data.exportAffectNet(set, dir, { imageFormat: "png", validationFraction: 0.34 });
    const csv = join(dir, "Manually_Annotated_file_lists", "training.csv");
    const lines = (await Deno.readTextFile(csv)).trimEnd().split("\n");
    const replaceRow3 = (edit: (fields: string[]) => string[]) => {
      const fields = lines[2].split(",");
      const copy = [...lines];
      copy[2] = edit(fields).join(",");
      return Deno.writeTextFile(csv, copy.join("\n") + "\n");
    };
    await replaceRow3((f) => f.slice(0, 5));
    await rejectsWith(() => data.readAffectNet(dir), /training\.csv:3: expected 9 fields, found 5/);
    await replaceRow3((f) => [...f.slice(0, 7), "abc", f[8]]);
    await rejectsWith(
      () => data.readAffectNet(dir),
      /training\.csv:3: valence is not a number: "abc"/,
    );
    await replaceRow3((f) => [...f.slice(0, 7), "NaN", f[8]]);
    await rejectsWith(() => data.readAffectNet(dir), /training\.csv:3: valence is not a number/);
    await replaceRow3((f) => [...f.slice(0, 8), "1.5"]);
    await rejectsWith(
      () => data.readAffectNet(dir),
      /training\.csv:3: arousal 1\.5 is outside \[-1, 1\]/,
    );
    await replaceRow3((f) => [...f.slice(0, 6), "12", ...f.slice(7)]);
    await rejectsWith(
      () => data.readAffectNet(dir),
      /training\.csv:3: expression 12 is not a class/,
    );
    await replaceRow3((f) => [...f.slice(0, 5), "1;2;3", ...f.slice(6)]);
    await rejectsWith(
      () => data.readAffectNet(dir),
      /training\.csv:3: facial_landmarks must be 136/,
    );
    await Deno.writeTextFile(csv, "subDirectory_filePath,face_x,valence\n");
    await rejectsWith(
      () => data.readAffectNet(dir),
      /training\.csv:1: CSV header lacks column\(s\) face_y/,
    );
    await Deno.writeTextFile(csv, lines[0] + '\n"unterminated,1,2\n');
    await rejectsWith(() => data.readAffectNet(dir), /training\.csv:2: unterminated quoted field/);
    // Every row invalid (-2) -> an empty split, reported as such.
    await Deno.writeTextFile(
      csv,
      [lines[0], ...lines.slice(1).map((l) => l.replace(/,[^,]*,[^,]*$/, ",-2,-2"))].join("\n"),
    );
    await rejectsWith(() => data.readAffectNet(dir), /empty after filtering \(skipped 4\)/);
  });
});

Deno.test("AffectNet 8-label: corrupt .npy and non-numeric labels name the file", async () => {
  await withTempDir(async (dir) => {
    await data.exportAffectNet(set, dir, { layout: "npy", validationFraction: 0.34 });
    const annotations = join(dir, "train_set", "annotations");
    await Deno.writeFile(join(annotations, "0_val.npy"), new TextEncoder().encode("not numpy"));
    await rejectsWith(() => data.readAffectNet(dir), /0_val\.npy: invalid \.npy file/);
    await Deno.writeFile(join(annotations, "0_val.npy"), data.encodeNpy(["n/a"], "<U", []));
    await rejectsWith(
      () => data.readAffectNet(dir),
      /0_val\.npy: value "n\/a" is not a finite number/,
    );
    await Deno.writeFile(join(annotations, "0_val.npy"), data.encodeNpy([3], "<f4", []));
    await rejectsWith(() => data.readAffectNet(dir), /valence 3 is outside \[-1, 1\]/);
  });
});

Deno.test("loadFaces: undecodable and missing images are skipped with a summary, or fail", async () => {
  await withTempDir(async (dir) => {
    await data.exportAfewVa(set, dir);
    const { samples } = await data.readAfewVa(dir);
    await Deno.writeTextFile(samples[1].image, "this is not a png");
    await Deno.remove(samples[4].image);
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const faces = await data.loadFaces(samples, { size: 16, log });
    assert.equal(faces.length, 6 * 3 * 16 * 16);
    const plane = 3 * 16 * 16;
    assert.ok(
      faces.subarray(plane, 2 * plane).every((v) => v === 0),
      "bad image becomes a zero face",
    );
    assert.ok(faces.subarray(0, plane).some((v) => v > 0));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /skipped 2 of 6 images .*00001\.png: not a PNG or JPEG/);
    const kept = await data.loadFaceSet(samples, { size: 16, log });
    assert.equal(kept.skipped, 2);
    assert.deepEqual(kept.badImages.map((b) => b.index), [1, 4]);
    assert.deepEqual(kept.samples, samples.filter((_, i) => i !== 1 && i !== 4));
    assert.deepEqual(kept.faces.subarray(plane, 2 * plane), faces.subarray(2 * plane, 3 * plane));
    await rejectsWith(
      () => data.loadFaces(samples, { size: 16, onBadImage: "fail" }),
      /sample 1: .*not a PNG or JPEG/,
    );
    await rejectsWith(() => data.loadFaces([], {}), /no samples/);
    const outside = [{ ...samples[0], box: [500, 500, 10, 10] as data.Box }];
    await rejectsWith(
      () => data.loadFaces(outside, { onBadImage: "fail" }),
      /lies outside the 32x32 image/,
    );
  });
});

Deno.test("options: bad synthetic, sampler and batch arguments give clear errors", async () => {
  assert.throws(() => data.synthetic({ persons: 0 }), /persons must be a positive integer/);
  assert.throws(() => data.synthetic({ skew: "flat" as "uniform" }), /unknown skew "flat"/);
  assert.throws(() => data.synthetic({ rareQuadrantFraction: 2 }), /rareQuadrantFraction/);
  assert.throws(
    () => data.underSample(set.samples, { threshold: 0 }),
    /threshold must be a positive integer/,
  );
  assert.throws(() => data.binCounts(set.samples, { binSize: 0 }), /binSize/);
  assert.throws(
    () => data.overSample([{ valence: NaN, arousal: 0 }], { threshold: 2 }),
    /non-finite/,
  );
  assert.throws(() => data.parseSyntheticId("synthetic:1:2"), /malformed synthetic image id/);
  await rejectsWith(
    () => Array.fromAsync(data.batches(set.images, set.samples, { batchSize: 0 })),
    /batchSize/,
  );
  await rejectsWith(
    () => Array.fromAsync(data.batches(set.images, set.samples.slice(0, 5), { batchSize: 2 })),
    /do not split evenly/,
  );
});

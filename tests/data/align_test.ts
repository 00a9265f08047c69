import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

Deno.test("fitSimilarity recovers a known rotation, scale and shift", () => {
  const truth: data.Similarity = {
    a: 1.1 * Math.cos(0.2),
    b: 1.1 * Math.sin(0.2),
    tx: 3,
    ty: -2,
  };
  const from: data.Point[] = [[1, 2], [5, 1], [3, 7], [-2, 4]];
  const fit = data.fitSimilarity(from, from.map((p) => data.applySimilarity(truth, p)));
  for (const key of ["a", "b", "tx", "ty"] as const) {
    assert.ok(Math.abs(fit[key] - truth[key]) < 1e-9, `${key}: ${fit[key]} vs ${truth[key]}`);
  }
  assert.throws(() => data.fitSimilarity([[1, 1], [1, 1]], [[0, 0], [1, 1]]), /coincide/);
});

/** Per-pixel mean over frames of |frame - mean frame|, and the stable points' spread. */
function spread(set: { images: Float32Array; samples: data.FaceSample[] }, plane: number) {
  const n = set.samples.length;
  const mean = new Float64Array(plane);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < plane; k++) mean[k] += set.images[i * plane + k] / n;
  }
  let pixel = 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < plane; k++) pixel += Math.abs(set.images[i * plane + k] - mean[k]);
  }
  let points = 0;
  for (const k of data.STABLE_LANDMARKS) {
    const xs = set.samples.map((s) => s.landmarks![k]);
    const mx = xs.reduce((t, p) => t + p[0], 0) / n, my = xs.reduce((t, p) => t + p[1], 0) / n;
    points += xs.reduce((t, p) => t + Math.hypot(p[0] - mx, p[1] - my), 0) / n;
  }
  return { pixel: pixel / (n * plane), points: points / data.STABLE_LANDMARKS.length };
}

Deno.test("alignment removes per-frame pose: stable landmarks meet, frames differ less", () => {
  // One person, one expression, 12 frames: only pose and lighting change between frames.
  const set = data.synthetic({ seed: 5, persons: 1, framesPerPerson: 12, labelNoise: 0 });
  const specs = set.samples.map((s) => data.parseSyntheticId(s.image));
  const still = specs.map((spec) => data.renderFace({ ...spec, valence: 0.2, arousal: 0.1 }));
  const plane = 3 * 64 * 64;
  const images = new Float32Array(still.length * plane);
  still.forEach((f, i) => images.set(f.image, i * plane));
  const faces = {
    samples: set.samples.map((s, i) => ({ ...s, landmarks: still[i].landmarks })),
    images,
    size: 64,
  };
  const before = spread(faces, plane);
  assert.equal(data.alignFaceSet(faces), 12);
  const after = spread(faces, plane);
  assert.ok(before.points > 1, `pose jitter to remove: ${before.points.toFixed(2)} px`);
  assert.ok(after.points < 0.05, `stable points after alignment: ${after.points.toFixed(3)} px`);
  assert.ok(
    after.pixel < 0.7 * before.pixel,
    `mean |frame - mean|: ${before.pixel.toFixed(4)} -> ${after.pixel.toFixed(4)}`,
  );
  for (const s of faces.samples) assert.deepEqual(s.box, [0, 0, 64, 64]);
});

Deno.test("aligning an aligned face changes nearly nothing; faces without landmarks stay", () => {
  const set = data.synthetic({ seed: 9, persons: 2, framesPerPerson: 1 });
  const plane = 3 * 64 * 64;
  const faces = { samples: set.samples, images: set.images, size: 64 };
  data.alignFaceSet(faces);
  const once = faces.images.slice();
  const again = data.alignFace(once.subarray(0, plane), 64, faces.samples[0].landmarks!);
  let worst = 0;
  // The border rows may resample clamped pixels; compare the face area.
  for (let c = 0; c < 3; c++) {
    for (let y = 8; y < 56; y++) {
      for (let x = 8; x < 56; x++) {
        const k = c * 4096 + y * 64 + x;
        worst = Math.max(worst, Math.abs(again.image[k] - once[k]));
      }
    }
  }
  assert.ok(worst < 1e-3, `re-alignment moved a pixel by ${worst}`);

  const bare = data.synthetic({ seed: 9, persons: 1, framesPerPerson: 2 });
  const original = bare.images.slice();
  const noLandmarks = {
    samples: bare.samples.map(({ landmarks: _, ...rest }) => rest),
    images: bare.images,
    size: 64,
  };
  assert.equal(data.alignFaceSet(noLandmarks), 0);
  assert.deepEqual(noLandmarks.images, original);
});

Deno.test("landmarksInCrop maps source pixels through the face box", () => {
  const points = data.landmarksInCrop([[110, 220], [150, 260]], [100, 200, 80, 80], 64);
  assert.deepEqual(points, [[8, 16], [40, 48]]);
});

Deno.test("parseLandmarks: JSON pairs, flat JSON, an object, plain text; bad input names the file", () => {
  const points = Array.from({ length: 68 }, (_, k): [number, number] => [k + 0.5, 100 - k]);
  const flat = points.flat();
  for (
    const text of [
      JSON.stringify(points),
      JSON.stringify(flat),
      JSON.stringify({ landmarks: points }),
      flat.join(" "),
      flat.join(";"),
      points.map((p) => p.join(",")).join("\n"),
    ]
  ) {
    assert.deepEqual(data.parseLandmarks(text, "face.txt"), points);
  }
  assert.throws(
    () => data.parseLandmarks("1 2 3", "a.txt"),
    /a\.txt: expected 68 landmarks.*got 3 values/,
  );
  assert.throws(
    () => data.parseLandmarks(flat.join(" ").replace("3.5", "x"), "b.txt"),
    /b\.txt: .*some not numbers/,
  );
  assert.throws(() => data.parseLandmarks("[1, 2", "c.json"), /c\.json: not valid JSON/);
});

import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

const SIZE = 64;

function render(valence: number, arousal: number, person = 1, strength = 1): data.RenderedFace {
  return data.renderFace({
    seed: 2,
    person,
    frame: 0,
    valence,
    arousal,
    expressionStrength: strength,
  }, SIZE);
}

/** Mean absolute difference over all channels inside the landmarks' box grown by `pad` px. */
function regionDiff(a: Float32Array, b: Float32Array, points: data.Point[], pad = 2): number {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.max(0, Math.floor(Math.min(...xs) - pad)),
    x1 = Math.min(SIZE, Math.ceil(Math.max(...xs) + pad));
  const y0 = Math.max(0, Math.floor(Math.min(...ys) - pad)),
    y1 = Math.min(SIZE, Math.ceil(Math.max(...ys) + pad));
  let sum = 0, n = 0;
  for (let c = 0; c < 3; c++) {
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = c * SIZE * SIZE + y * SIZE + x;
        sum += Math.abs(a[i] - b[i]);
        n++;
      }
    }
  }
  return sum / n;
}

function meanDiff(a: Float32Array, b: Float32Array): number {
  return a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;
}

Deno.test("synthetic: deterministic by seed, different seeds differ, values in [0, 1]", () => {
  const a = data.synthetic({ seed: 5, persons: 3, framesPerPerson: 3 });
  const b = data.synthetic({ seed: 5, persons: 3, framesPerPerson: 3 });
  const c = data.synthetic({ seed: 6, persons: 3, framesPerPerson: 3 });
  assert.deepEqual(a.images, b.images);
  assert.deepEqual(a.samples, b.samples);
  assert.ok(meanDiff(a.images, c.images) > 0.02);
  assert.equal(a.images.length, 9 * 3 * SIZE * SIZE);
  assert.equal(a.landmarks.length, 9 * 68 * 2);
  assert.ok(a.images.every((v) => v >= 0 && v <= 1));
  assert.equal(new Set(a.samples.map((s) => s.person)).size, 3);
});

Deno.test("renderer: valence changes the mouth region (and mouth corners rise with it)", () => {
  const sad = render(-0.8, 0), happy = render(0.8, 0);
  const mouth = [...sad.landmarks.slice(48), ...happy.landmarks.slice(48)];
  const diff = regionDiff(sad.image, happy.image, mouth);
  assert.ok(diff > 0.03, `mouth diff ${diff}`);
  assert.ok(happy.landmarks[48][1] < sad.landmarks[48][1] - 0.5, "left corner higher when happy");
  assert.ok(happy.landmarks[54][1] < sad.landmarks[54][1] - 0.5, "right corner higher when happy");
  // The background corner does not depend on expression.
  assert.equal(regionDiff(sad.image, happy.image, [[0, 0], [6, 6]], 0), 0);
});

Deno.test("renderer: arousal changes eyes and mouth opening", () => {
  const calm = render(0, -0.8), excited = render(0, 0.8);
  const eyes = [...calm.landmarks.slice(36, 48), ...excited.landmarks.slice(36, 48)];
  const mouth = [...calm.landmarks.slice(48), ...excited.landmarks.slice(48)];
  const eyeDiff = regionDiff(calm.image, excited.image, eyes);
  const mouthDiff = regionDiff(calm.image, excited.image, mouth);
  assert.ok(eyeDiff > 0.03, `eye diff ${eyeDiff}`);
  assert.ok(mouthDiff > 0.03, `mouth diff ${mouthDiff}`);
  const opening = (f: data.RenderedFace) => f.landmarks[66][1] - f.landmarks[62][1];
  const eyeOpening = (f: data.RenderedFace) => f.landmarks[41][1] - f.landmarks[37][1];
  assert.ok(opening(excited) > opening(calm) + 1);
  assert.ok(eyeOpening(excited) > eyeOpening(calm) + 0.5);
});

Deno.test("renderer: expressionStrength scales the effect; 0 freezes the face", () => {
  const frozen = meanDiff(render(-0.8, -0.8, 1, 0).image, render(0.8, 0.8, 1, 0).image);
  assert.equal(frozen, 0);
  const weak = meanDiff(render(-0.4, 0, 1, 0.5).image, render(0.4, 0, 1, 0.5).image);
  const normal = meanDiff(render(-0.4, 0, 1, 1).image, render(0.4, 0, 1, 1).image);
  assert.ok(normal > weak * 1.3, `${normal} vs ${weak}`);
});

Deno.test("renderer: identities differ clearly; landmarks are 68 points inside the image", () => {
  const diffs = [2, 3, 4].map((p) => meanDiff(render(0, 0, 1).image, render(0, 0, p).image));
  assert.ok(diffs.every((d) => d > 0.04), `identity diffs ${diffs}`);
  const face = render(0.3, 0.3);
  assert.equal(face.landmarks.length, 68);
  assert.ok(face.landmarks.every(([x, y]) => x > 0 && x < SIZE && y > 0 && y < SIZE));
  // iBUG order sanity: brows above eyes above nose tip above mouth above chin.
  const y = (k: number) => face.landmarks[k][1];
  assert.ok(y(19) < y(37) && y(37) < y(30) && y(30) < y(51) && y(51) < y(8));
  assert.ok(face.landmarks[36][0] < face.landmarks[45][0]);
});

Deno.test("labels: affectnet skew, rare-quadrant knob, uniform disk", () => {
  const labels = (options: data.SyntheticOptions) =>
    data.synthetic({ seed: 1, persons: 50, framesPerPerson: 40, size: 4, ...options }).samples;
  const rareShare = (s: data.VaLabel[]) =>
    s.filter((p) => p.valence < 0 && p.arousal > 0).length / s.length;
  const skewed = labels({});
  assert.ok(Math.abs(rareShare(skewed) - 0.08) < 0.02, `rare ${rareShare(skewed)}`);
  assert.ok(skewed.filter((p) => p.valence > 0).length / skewed.length > 0.6);
  assert.ok(skewed.filter((p) => p.arousal < 0.5).length / skewed.length > 0.85);
  assert.equal(rareShare(labels({ rareQuadrantFraction: 0 })), 0);
  assert.ok(Math.abs(rareShare(labels({ rareQuadrantFraction: 0.2 })) - 0.2) < 0.03);
  const uniform = labels({ skew: "uniform" });
  assert.ok(Math.abs(rareShare(uniform) - 0.25) < 0.03);
  assert.ok([...skewed, ...uniform].every((p) => Math.hypot(p.valence, p.arousal) <= 1 + 1e-9));
});

Deno.test("syntheticSplit: test persons are new and test labels uniform", () => {
  const { train, test } = data.syntheticSplit({
    seed: 4,
    trainPersons: 6,
    testPersons: 40,
    framesPerPerson: 30,
    size: 4,
  });
  const trainPersons = new Set(train.samples.map((s) => s.person));
  assert.ok(test.samples.every((s) => !trainPersons.has(s.person)));
  const rare = test.samples.filter((p) => p.valence < 0 && p.arousal > 0).length /
    test.samples.length;
  assert.ok(Math.abs(rare - 0.25) < 0.04, `test rare quadrant ${rare}`);
});

Deno.test("loadFaces re-renders synthetic ids exactly, at any size", async () => {
  const set = data.synthetic({ seed: 9, persons: 2, framesPerPerson: 3 });
  assert.deepEqual(await data.loadFaces(set.samples, { size: SIZE }), set.images);
  const small = await data.loadFaces(set.samples.slice(0, 1), { size: 32 });
  assert.equal(small.length, 3 * 32 * 32);
  assert.deepEqual(data.parseSyntheticId(set.samples[0].image).seed, 9);
});

/**
 * Generation fidelity: does the decoder draw the (v, a) it is asked for? A judge regressor that
 * never saw a generated face reads generated faces, and its reading is scored against the
 * requested labels, overall and per V/A quadrant. Two controls separate the failure modes:
 * test faces re-generated with their own true labels (the domain gap of re-rendering) and with new
 * uniform labels (label following), next to the judge's score on the real test faces.
 *
 * On synthetic faces the truth is known too: the same person, pose and light rendered with the
 * requested (v, a). The drawing error (pixel RMSE against it, inside and outside the expression
 * regions) measures what the judge cannot: whether the faces look right, blotches, doubled brows
 * and leftovers of the source's expression included.
 */

import type { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import type { ResNet34 } from "../nn/models/resnet.ts";
import { alignFace } from "./data/align.ts";
import { imageGrid, vaCaption } from "./data/pictures.ts";
import { isSyntheticId, parseSyntheticId, renderFace } from "./data/synthetic.ts";
import type { FaceSample, VaLabel } from "./data/types.ts";
import { sampleUnitDisk } from "./data/samplers.ts";
import { expressionMask } from "./regions.ts";
import type { vaMetrics } from "./metrics.ts";
import { decodeFaces, encodeFaces, predictVa, scorePredictions } from "./training.ts";

/** RMSE, CORR, CCC, SAGR for valence and arousal. */
export type VaScores = ReturnType<typeof vaMetrics>;

/** Quadrant names by the signs of the requested (v, a). */
export const QUADRANTS = ["v+a+", "v-a+", "v-a-", "v+a-"] as const;
/** One of the four V/A quadrants. */
export type Quadrant = typeof QUADRANTS[number];

/** Scores of one set of faces read by the judge. */
export interface FidelityScores {
  count: number;
  overall: VaScores;
  /** Per quadrant of the requested labels (null where fewer than 3 faces fall). */
  quadrants: Record<Quadrant, VaScores | null>;
}

/** Pixel RMSE (values in [0, 1]) of faces against the faces they should be. */
export interface DrawingError {
  count: number;
  /** Over all pixels. */
  rmse: number;
  /** Inside the expression regions (brows, eyes, mouth of either face, soft-edged). */
  regions: number;
  /** Outside them. */
  outside: number;
}

/** The drawing errors of the test faces re-generated, against their true renders. */
export interface DrawingReport {
  /** Re-generated with new uniform labels, against the truth rendered with those labels. */
  uniformLabels: DrawingError;
  /** The source faces left as they are, against the same truths: what not editing scores. */
  unchangedSource: DrawingError;
  /** Re-generated with their own labels, against themselves (reconstruction). */
  trueLabels: DrawingError;
}

/** Faces that a generator should have drawn, with the expression regions of each. */
export interface TruthFaces {
  /** N x 3 x size x size. */
  images: Float32Array;
  /** N maps of size x size in [0, 1]: the expression regions of the truth or of the source. */
  regions: Float32Array[];
  /** The source faces' own expression regions. */
  sourceRegions: Float32Array[];
}

/**
 * The truth for re-generating synthetic faces with new labels: each face's person, frame (pose,
 * light) and expression strength rendered with the new (v, a), aligned like the data when
 * `align`. Null when a sample is not synthetic (real datasets have no such truth).
 */
export function renderTruth(
  samples: readonly FaceSample[],
  labels: readonly VaLabel[],
  size: number,
  align: boolean,
): TruthFaces | null {
  if (samples.length !== labels.length) {
    throw new Error(`renderTruth: ${samples.length} faces but ${labels.length} labels`);
  }
  if (!samples.every((s) => isSyntheticId(s.image))) return null;
  const plane = 3 * size * size;
  const images = new Float32Array(samples.length * plane);
  const sourceRegions: Float32Array[] = [];
  const regions = samples.map((sample, i) => {
    const spec = parseSyntheticId(sample.image);
    const { valence, arousal } = labels[i];
    const out = images.subarray(i * plane, (i + 1) * plane);
    let face = renderFace({ ...spec, valence, arousal }, size);
    if (align) face = alignFace(face.image, size, face.landmarks);
    out.set(face.image);
    const box: [number, number, number, number] = [0, 0, size, size];
    const truthRegions = expressionMask(face.landmarks, box, size);
    const own = expressionMask(sample.landmarks, sample.box, size);
    sourceRegions.push(own);
    return truthRegions.map((m, k) => Math.max(m, own[k]));
  });
  return { images, regions, sourceRegions };
}

/** Pixel RMSE of `images` against `truth`, overall and split by the truth's region maps. */
export function drawingError(
  images: Float32Array,
  truth: { images: Float32Array; regions: readonly Float32Array[] },
): DrawingError {
  const count = truth.regions.length;
  if (images.length !== truth.images.length || count === 0) {
    throw new Error(
      `drawingError: ${images.length} values against ${truth.images.length} (${count} faces)`,
    );
  }
  const plane = truth.regions[0].length;
  let all = 0, inside = 0, insideWeight = 0, outside = 0, outsideWeight = 0;
  for (let n = 0; n < count; n++) {
    const region = truth.regions[n];
    for (let c = 0; c < 3; c++) {
      const at = (n * 3 + c) * plane;
      for (let k = 0; k < plane; k++) {
        const d = images[at + k] - truth.images[at + k];
        const w = region[k];
        all += d * d;
        inside += w * d * d;
        insideWeight += w;
        outside += (1 - w) * d * d;
        outsideWeight += 1 - w;
      }
    }
  }
  const root = (sum: number, weight: number) => (weight > 0 ? Math.sqrt(sum / weight) : NaN);
  return {
    count,
    rmse: root(all, images.length),
    regions: root(inside, insideWeight),
    outside: root(outside, outsideWeight),
  };
}

/** Everything the fidelity measurement reports. */
export interface FidelityReport {
  /** The generated training set (random identities, uniform V/A). */
  generated: FidelityScores;
  /** Controls on the test faces (persons unseen in training). */
  control: {
    /** The judge on the real test faces: its own accuracy, the ceiling for the rest. */
    realFaces: FidelityScores;
    /** Test faces encoded and decoded with their true labels (re-rendering's domain gap). */
    regeneratedTrueLabels: FidelityScores;
    /** Test faces encoded and decoded with new uniform labels (does D follow the labels?). */
    regeneratedUniformLabels: FidelityScores;
  };
  /** Against the true renders (synthetic data only; absent on real data and in older runs). */
  drawing?: DrawingReport;
}

/** Which quadrant a label falls in (0 counts as positive). */
export function quadrantOf(label: VaLabel): Quadrant {
  const v = label.valence >= 0 ? "v+" : "v-";
  const a = label.arousal >= 0 ? "a+" : "a-";
  return `${v}${a}` as Quadrant;
}

/** Mean signed error (prediction - truth) of valence and arousal over the labels of a quadrant. */
export interface QuadrantError {
  valence: number;
  arousal: number;
  count: number;
}

/**
 * Mean signed error (prediction - truth) per quadrant of the true labels, from interleaved
 * predictions [v0, a0, v1, a1, ...]: where a regressor is pulled off (null for an empty quadrant).
 */
export function quadrantErrors(
  predictions: Float32Array,
  labels: readonly VaLabel[],
): Record<Quadrant, QuadrantError | null> {
  const sums = {} as Record<Quadrant, QuadrantError>;
  for (const q of QUADRANTS) sums[q] = { valence: 0, arousal: 0, count: 0 };
  labels.forEach((label, i) => {
    const s = sums[quadrantOf(label)];
    s.valence += predictions[2 * i] - label.valence;
    s.arousal += predictions[2 * i + 1] - label.arousal;
    s.count++;
  });
  const out = {} as Record<Quadrant, QuadrantError | null>;
  for (const q of QUADRANTS) {
    const s = sums[q];
    out[q] = s.count
      ? { valence: s.valence / s.count, arousal: s.arousal / s.count, count: s.count }
      : null;
  }
  return out;
}

/** Score interleaved predictions [v0, a0, v1, a1, ...] against requested labels. */
export function fidelityScores(
  predictions: Float32Array,
  requested: readonly VaLabel[],
): FidelityScores {
  const score = (indices: number[]) =>
    scorePredictions(
      Float32Array.from(indices.flatMap((i) => [predictions[2 * i], predictions[2 * i + 1]])),
      indices.map((i) => requested[i]),
    );
  const all = requested.map((_, i) => i);
  const quadrants = {} as Record<Quadrant, VaScores | null>;
  for (const q of QUADRANTS) {
    const members = all.filter((i) => quadrantOf(requested[i]) === q);
    quadrants[q] = members.length >= 3 ? score(members) : null;
  }
  return { count: requested.length, overall: score(all), quadrants };
}

/** What {@link measureFidelity} measured, and the re-generated faces behind its drawing error. */
export interface FidelityResult {
  report: FidelityReport;
  /** The test faces re-generated with new uniform labels (N x 3 x S x S) and those labels. */
  regenerated: { images: Float32Array; labels: VaLabel[] };
  /** Their truth, when the data has one (synthetic faces). */
  truth: TruthFaces | null;
}

/** Run the judge on generated faces and on the controls. */
export async function measureFidelity(
  judge: ResNet34,
  autoencoder: FaceAutoencoder,
  generated: { images: Float32Array; labels: readonly VaLabel[] },
  test: { images: Float32Array; labels: readonly VaLabel[] },
  inputSize: number,
  seed: number,
  /** The truth for new labels of the test faces ({@link renderTruth}), when there is one. */
  truthFor?: (labels: readonly VaLabel[]) => TruthFaces | null,
): Promise<FidelityResult> {
  const read = (images: Float32Array, count: number) => predictVa(judge, images, count, inputSize);
  const n = test.labels.length;
  const { z } = await encodeFaces(autoencoder, test.images, n);
  const uniform = sampleUnitDisk(n, seed + 17);
  const trueLabels = await decodeFaces(autoencoder, z, test.labels, test.images);
  const newLabels = await decodeFaces(autoencoder, z, uniform, test.images);
  const truth = truthFor?.(uniform) ?? null;
  // The test faces are their own truth for their own labels.
  const drawing = truth
    ? {
      uniformLabels: drawingError(newLabels, truth),
      unchangedSource: drawingError(test.images, truth),
      trueLabels: drawingError(trueLabels, { images: test.images, regions: truth.sourceRegions }),
    }
    : undefined;
  const report: FidelityReport = {
    generated: fidelityScores(
      await read(generated.images, generated.labels.length),
      generated.labels,
    ),
    control: {
      realFaces: fidelityScores(await read(test.images, n), test.labels),
      regeneratedTrueLabels: fidelityScores(await read(trueLabels, n), test.labels),
      regeneratedUniformLabels: fidelityScores(await read(newLabels, n), uniform),
    },
    ...(drawing ? { drawing } : {}),
  };
  return { report, regenerated: { images: newLabels, labels: uniform }, truth };
}

/**
 * The drawing error as a picture: triplets of source face, the face re-generated with a new label
 * (captioned with it) and the truth for that label, `rows` rows of `perRow` triplets, the faces
 * picked evenly over the set (test sets hold each person's frames together).
 */
export async function drawingGridPng(
  sources: Float32Array,
  result: Pick<FidelityResult, "regenerated" | "truth">,
  rows = 4,
  perRow = 4,
): Promise<Uint8Array | null> {
  const { regenerated, truth } = result;
  if (!truth) return null;
  const count = Math.min(rows * perRow, regenerated.labels.length);
  const plane = sources.length / regenerated.labels.length;
  const face = (all: Float32Array, i: number) => all.slice(i * plane, (i + 1) * plane);
  const images: Float32Array[] = [];
  const captions: string[] = [];
  for (let k = 0; k < count; k++) {
    const i = Math.floor((k * regenerated.labels.length) / count);
    images.push(face(sources, i), face(regenerated.images, i), face(truth.images, i));
    captions.push("source", vaCaption(regenerated.labels[i]), "truth");
  }
  return await imageGrid(images, Math.ceil(count / perRow), 3 * perRow, {
    labels: captions,
    scale: 2,
  });
}

function drawingMarkdown(d: DrawingReport): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : "n/a");
  const row = (name: string, e: DrawingError) =>
    `| ${name} | ${e.count} | ${f(e.rmse)} | ${f(e.regions)} | ${f(e.outside)} |`;
  return `Drawing error: pixel RMSE (values in [0, 1]) against the truth, the same synthetic person,
pose and light rendered with the label asked for; "regions" are the brows, eyes and mouth of either
face. It sees what the judge does not: blotches, doubled brows, leftovers of the source's expression.

| faces against their truth | n | RMSE | in the expression regions | outside |
| --- | ---: | ---: | ---: | ---: |
${row("test faces re-generated with new uniform labels", d.uniformLabels)}
${row("the same test faces left unchanged (no edit at all)", d.unchangedSource)}
${row("test faces re-generated with their true labels", d.trueLabels)}

In the expression regions the faces re-generated with new labels are ${
    d.uniformLabels.regions < d.unchangedSource.regions
      ? "closer to their truth than the unchanged faces"
      : "**no closer** to their truth than the unchanged faces (the redrawn regions are off by more than the expression change itself)"
  } (${f(d.uniformLabels.regions)} against ${f(d.unchangedSource.regions)}).

`;
}

/** A markdown section on fidelity for the report. */
export function fidelityMarkdown(report: FidelityReport, judgeDescription: string): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "n/a");
  const row = (name: string, s: FidelityScores) =>
    `| ${name} | ${s.count} | ${f(s.overall.valence.ccc)} | ${f(s.overall.arousal.ccc)} | ${
      f(s.overall.valence.rmse)
    } | ${f(s.overall.arousal.rmse)} | ${f(s.overall.valence.sagr)} | ${
      f(s.overall.arousal.sagr)
    } |`;
  const quadrantRows = QUADRANTS.map((q) => {
    const s = report.generated.quadrants[q];
    return s
      ? `| ${q} | ${f(s.valence.ccc)} | ${f(s.arousal.ccc)} | ${f(s.valence.rmse)} | ${
        f(s.arousal.rmse)
      } |`
      : `| ${q} | n/a | n/a | n/a | n/a |`;
  });
  const g = report.generated.overall;
  const follows = g.valence.ccc >= 0.5 && g.arousal.ccc >= 0.5;
  return `## Generation fidelity

A judge (${judgeDescription}) reads the faces the decoder generated and is scored against the
(v, a) they were asked for. The paper's method can only help if this is high: a regressor trained
on generated faces learns whatever the faces show, not the labels attached to them.

| faces read by the judge | n | CCC V | CCC A | RMSE V | RMSE A | SAGR V | SAGR A |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${row("real test faces (judge's own accuracy)", report.control.realFaces)}
${row("test faces re-generated with their true labels", report.control.regeneratedTrueLabels)}
${row("test faces re-generated with new uniform labels", report.control.regeneratedUniformLabels)}
${row("generated training set (uniform labels)", report.generated)}

${
    report.drawing
      ? drawingMarkdown(report.drawing)
      : ""
  }Generated set by quadrant of the requested label:

| quadrant | CCC V | CCC A | RMSE V | RMSE A |
| --- | ---: | ---: | ---: | ---: |
${quadrantRows.join("\n")}

Verdict: ${
    follows
      ? `the decoder follows the requested V/A (CCC ${f(g.valence.ccc)} / ${f(g.arousal.ccc)}).`
      : `the decoder does **not** reliably draw the requested V/A (CCC ${f(g.valence.ccc)} / ${
        f(g.arousal.ccc)
      }), so the \`generated\` strategy trains on labels its faces do not show.`
  }
`;
}

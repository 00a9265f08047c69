/**
 * Generation fidelity: does the decoder draw the (v, a) it is asked for? A judge regressor that
 * never saw a generated face reads generated faces, and its reading is scored against the
 * requested labels, overall and per V/A quadrant. Two controls separate the failure modes:
 * test faces re-generated with their own true labels (the domain gap of re-rendering) and with new
 * uniform labels (label following), next to the judge's score on the real test faces.
 */

import type { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import type { ResNet34 } from "../nn/models/resnet.ts";
import type { VaLabel } from "./data/types.ts";
import { sampleUnitDisk } from "./data/samplers.ts";
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

/** Run the judge on generated faces and on the controls. */
export async function measureFidelity(
  judge: ResNet34,
  autoencoder: FaceAutoencoder,
  generated: { images: Float32Array; labels: readonly VaLabel[] },
  test: { images: Float32Array; labels: readonly VaLabel[] },
  inputSize: number,
  seed: number,
): Promise<FidelityReport> {
  const read = (images: Float32Array, count: number) => predictVa(judge, images, count, inputSize);
  const n = test.labels.length;
  const { z } = await encodeFaces(autoencoder, test.images, n);
  const uniform = sampleUnitDisk(n, seed + 17);
  const trueLabels = await decodeFaces(autoencoder, z, test.labels, test.images);
  const newLabels = await decodeFaces(autoencoder, z, uniform, test.images);
  return {
    generated: fidelityScores(
      await read(generated.images, generated.labels.length),
      generated.labels,
    ),
    control: {
      realFaces: fidelityScores(await read(test.images, n), test.labels),
      regeneratedTrueLabels: fidelityScores(await read(trueLabels, n), test.labels),
      regeneratedUniformLabels: fidelityScores(await read(newLabels, n), uniform),
    },
  };
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

Generated set by quadrant of the requested label:

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

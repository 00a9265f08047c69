/** Reader for AFEW-VA: one folder per clip with frames and a `<clip>/<clip>.json` of labels. */
import { join } from "node:path";
import { DataError } from "./errors.ts";
import { lineAt, listDirectory, readText, requireDirectory } from "./fs_util.ts";
import { mulberry32, shuffleInPlace } from "./rng.ts";
import type { Box, FaceSample, Point, ReadResult } from "./types.ts";

/** Which part of a dataset a reader returns. */
export type AfewVaSplit = "train" | "test" | "all";

/** Options for `readAfewVa`. */
export interface ReadAfewVaOptions {
  /** "train", "test" or "all" (default). */
  split?: AfewVaSplit;
  /** Seed of the person-level split. Default 0. */
  seed?: number;
  /** Fraction of persons in the training split. Default 0.82, as in the paper. */
  trainFraction?: number;
  /** Margin added around the landmark box, as a fraction of its larger side. Default 0.25. */
  margin?: number;
}

const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"];

/**
 * Square face box around 68 landmarks: their min/max extent, grown by `margin` times the larger
 * side on every side, centred on the landmarks. It may extend past the image; cropping clamps.
 */
export function faceBoxFromLandmarks(landmarks: readonly Point[], margin = 0.25): Box {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const [x, y] of landmarks) {
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  if (!Number.isFinite(minX + maxX + minY + maxY)) throw new DataError("no finite landmarks");
  const side = Math.max(maxX - minX, maxY - minY, 1) * (1 + 2 * margin);
  return [(minX + maxX - side) / 2, (minY + maxY - side) / 2, side, side];
}

/**
 * Splits persons (not samples) into train/test with a seeded shuffle, so nobody appears on both
 * sides. `trainFraction` of the persons (rounded, at least one each side when possible) train.
 */
export function splitPersons(
  persons: readonly string[],
  trainFraction: number,
  seed: number,
): { train: Set<string>; test: Set<string> } {
  const unique = [...new Set(persons)].sort();
  shuffleInPlace(unique, mulberry32(seed));
  let trainCount = Math.round(unique.length * trainFraction);
  if (unique.length >= 2 && trainFraction > 0 && trainFraction < 1) {
    trainCount = Math.min(Math.max(trainCount, 1), unique.length - 1);
  }
  return { train: new Set(unique.slice(0, trainCount)), test: new Set(unique.slice(trainCount)) };
}

/**
 * Reads AFEW-VA. V/A integers in [-10, 10] are divided by 10; the face box comes from the 68
 * landmarks. `person` is the clip's `actor` (falling back to the clip name), and the train/test
 * split is by person so no one is on both sides. Frames listed in the JSON without an image
 * file are skipped and counted. Malformed JSON or labels raise a `DataError` naming the file
 * and line.
 */
export async function readAfewVa(
  root: string,
  options: ReadAfewVaOptions = {},
): Promise<ReadResult> {
  const split = options.split ?? "all";
  const trainFraction = options.trainFraction ?? 0.82;
  const margin = options.margin ?? 0.25;
  if (!["train", "test", "all"].includes(split)) {
    throw new DataError(`readAfewVa: unknown split "${split}" (use "train", "test" or "all")`);
  }
  await requireDirectory(root, "AFEW-VA root folder");
  const clips = await listDirectory(root, "directory");
  if (clips.length === 0) throw new DataError("AFEW-VA root has no clip folders", { file: root });

  const all: FaceSample[] = [];
  let missingImages = 0;
  for (const clip of clips) {
    const clipDir = join(root, clip);
    const jsonPath = join(clipDir, `${clip}.json`);
    const text = await readText(jsonPath, "AFEW-VA annotation file");
    const annotation = parseJson(text, jsonPath);
    const frames = annotation.frames;
    if (typeof frames !== "object" || frames === null || Array.isArray(frames)) {
      throw new DataError('expected an object field "frames"', { file: jsonPath, line: 1 });
    }
    const actor = typeof annotation.actor === "string" && annotation.actor !== ""
      ? annotation.actor
      : clip;
    const files = new Set(await listDirectory(clipDir, "file"));
    for (const key of Object.keys(frames).sort()) {
      const where = { file: jsonPath, line: lineAt(text, text.indexOf(`"${key}"`)) };
      const frame = (frames as Record<string, unknown>)[key] as Record<string, unknown> | null;
      if (typeof frame !== "object" || frame === null) {
        throw new DataError(`frame "${key}" is not an object`, where);
      }
      const valence = labelValue(frame.valence, "valence", key, where);
      const arousal = labelValue(frame.arousal, "arousal", key, where);
      const landmarks = landmarkList(frame.landmarks, key, where);
      const imageName = IMAGE_EXTENSIONS.map((ext) => key + ext).find((name) => files.has(name));
      if (imageName === undefined) {
        missingImages++;
        continue;
      }
      all.push({
        image: join(clipDir, imageName),
        person: actor,
        valence,
        arousal,
        box: faceBoxFromLandmarks(landmarks, margin),
        landmarks,
      });
    }
  }
  if (all.length === 0) throw new DataError("AFEW-VA root has no usable frames", { file: root });

  let samples = all;
  if (split !== "all") {
    const sides = splitPersons(all.map((s) => s.person), trainFraction, options.seed ?? 0);
    samples = all.filter((s) => sides[split].has(s.person));
    if (samples.length === 0) {
      throw new DataError(
        `AFEW-VA split "${split}" is empty (${sides.train.size + sides.test.size} persons, ` +
          `trainFraction ${trainFraction})`,
        { file: root },
      );
    }
  }
  const summary = `readAfewVa ${root} [${split}]: ${samples.length} samples from ` +
    `${new Set(samples.map((s) => s.person)).size} persons; skipped ${missingImages} ` +
    `frames without an image file`;
  return { samples, skipped: missingImages, summary };
}

function parseJson(text: string, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /position (\d+)/.exec(message);
    const line = position ? lineAt(text, Number(position[1])) : /line (\d+)/.exec(message)?.[1];
    throw new DataError(`malformed JSON (${message})`, {
      file,
      line: line === undefined ? undefined : Number(line),
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataError("expected a JSON object at the top level", { file, line: 1 });
  }
  return value as Record<string, unknown>;
}

function labelValue(
  value: unknown,
  name: string,
  key: string,
  where: { file: string; line: number },
): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new DataError(
      `frame "${key}": ${name} must be a number, got ${JSON.stringify(value)}`,
      where,
    );
  }
  if (value < -10 || value > 10) {
    throw new DataError(`frame "${key}": ${name} ${value} is outside [-10, 10]`, where);
  }
  return value / 10;
}

function landmarkList(
  value: unknown,
  key: string,
  where: { file: string; line: number },
): Point[] {
  const ok = Array.isArray(value) && value.length === 68 &&
    value.every((p) =>
      Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1])
    );
  if (!ok) throw new DataError(`frame "${key}": landmarks must be 68 [x, y] number pairs`, where);
  return (value as number[][]).map((p): Point => [p[0], p[1]]);
}

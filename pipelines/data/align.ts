/**
 * Face alignment from landmarks: a similarity warp (rotation, uniform scale, shift) that puts the
 * eye corners and the nose, points that do not move with the expression, at fixed places of the
 * crop. Without it, per-frame head roll, shift and scale (a few pixels at 64x64) are as large as
 * the expression itself, so the autoencoder's cross-frame reconstruction can only learn a blurred
 * average mouth, and regressors spend capacity on pose. Both real datasets and the synthetic faces
 * carry 68 iBUG landmarks; faces without them are left as they are.
 */

import { DataError } from "./errors.ts";
import type { Box, FaceSample, Point } from "./types.ts";

/** iBUG indices of the expression-independent points: eye corners, nose bridge and base. */
export const STABLE_LANDMARKS = [36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35] as const;

/**
 * Where the stable points go, as fractions of the crop side (the mean over rendered synthetic
 * faces, so aligned synthetic faces keep their framing; real crops get the same framing).
 */
export const ALIGN_TEMPLATE: readonly Point[] = [
  [0.3143, 0.4847],
  [0.4255, 0.4846],
  [0.5737, 0.4844],
  [0.6848, 0.4844],
  [0.4996, 0.4959],
  [0.4996, 0.5357],
  [0.4997, 0.5754],
  [0.4997, 0.6152],
  [0.4595, 0.6243],
  [0.4796, 0.6266],
  [0.4997, 0.6289],
  [0.5198, 0.6266],
  [0.5399, 0.6243],
];

/** x' = a x - b y + tx, y' = b x + a y + ty. */
export interface Similarity {
  a: number;
  b: number;
  tx: number;
  ty: number;
}

/** Least-squares similarity transform taking `from[k]` to `to[k]`. */
export function fitSimilarity(from: readonly Point[], to: readonly Point[]): Similarity {
  if (from.length !== to.length || from.length < 2) {
    throw new Error(`fitSimilarity: need >= 2 point pairs, got ${from.length} and ${to.length}`);
  }
  const n = from.length;
  let fx = 0, fy = 0, gx = 0, gy = 0;
  for (let k = 0; k < n; k++) {
    fx += from[k][0] / n;
    fy += from[k][1] / n;
    gx += to[k][0] / n;
    gy += to[k][1] / n;
  }
  let dot = 0, cross = 0, norm = 0;
  for (let k = 0; k < n; k++) {
    const sx = from[k][0] - fx, sy = from[k][1] - fy;
    const dx = to[k][0] - gx, dy = to[k][1] - gy;
    dot += sx * dx + sy * dy;
    cross += sx * dy - sy * dx;
    norm += sx * sx + sy * sy;
  }
  if (!(norm > 1e-12)) throw new Error("fitSimilarity: the source points coincide");
  const a = dot / norm, b = cross / norm;
  return { a, b, tx: gx - (a * fx - b * fy), ty: gy - (b * fx + a * fy) };
}

/** Apply a similarity transform to a point. */
export function applySimilarity(t: Similarity, [x, y]: Point): Point {
  return [t.a * x - t.b * y + t.tx, t.b * x + t.a * y + t.ty];
}

function invert(t: Similarity): Similarity {
  const det = t.a * t.a + t.b * t.b;
  const a = t.a / det, b = -t.b / det;
  return { a, b, tx: -(a * t.tx - b * t.ty), ty: -(b * t.tx + a * t.ty) };
}

/** Landmarks of a sample in the pixels of its `size x size` crop (the crop is `box`, resized). */
export function landmarksInCrop(landmarks: readonly Point[], box: Box, size: number): Point[] {
  const [bx, by, bw, bh] = box;
  return landmarks.map(([x, y]): Point => [((x - bx) / bw) * size, ((y - by) / bh) * size]);
}

/**
 * Warp one CHW crop so its stable landmarks (crop pixels) land on {@link ALIGN_TEMPLATE}:
 * bilinear sampling, edges clamped. Returns the aligned image and all 68 landmarks moved with it.
 */
export function alignFace(
  image: Float32Array,
  size: number,
  landmarks: readonly Point[],
  out: Float32Array = new Float32Array(image.length),
): { image: Float32Array; landmarks: Point[] } {
  if (landmarks.length < 68) {
    throw new Error(`alignFace: need 68 landmarks, got ${landmarks.length}`);
  }
  const toTemplate = fitSimilarity(
    STABLE_LANDMARKS.map((k) => landmarks[k]),
    ALIGN_TEMPLATE.map(([x, y]): Point => [x * size, y * size]),
  );
  // Each output pixel centre maps back into the source crop.
  const back = invert(toTemplate);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const [sx, sy] = applySimilarity(back, [x + 0.5, y + 0.5]);
      const u = Math.min(Math.max(sx - 0.5, 0), size - 1);
      const v = Math.min(Math.max(sy - 0.5, 0), size - 1);
      const x0 = Math.floor(u), y0 = Math.floor(v);
      const x1 = Math.min(x0 + 1, size - 1), y1 = Math.min(y0 + 1, size - 1);
      const wx = u - x0, wy = v - y0;
      for (let c = 0; c < 3; c++) {
        const p = c * plane;
        const top = image[p + y0 * size + x0] * (1 - wx) + image[p + y0 * size + x1] * wx;
        const bottom = image[p + y1 * size + x0] * (1 - wx) + image[p + y1 * size + x1] * wx;
        out[p + y * size + x] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return { image: out, landmarks: landmarks.map((p) => applySimilarity(toTemplate, p)) };
}

/** Crops as the experiment holds them. */
export interface AlignableFaces {
  samples: FaceSample[];
  /** N x 3 x size x size. */
  images: Float32Array;
  size: number;
}

/**
 * Align every face of a set that has 68 landmarks (in place: images are overwritten; samples get
 * their landmarks in aligned-crop pixels and the box [0, 0, size, size]). Returns how many faces
 * were aligned.
 */
export function alignFaceSet(set: AlignableFaces): number {
  const plane = 3 * set.size * set.size;
  const scratch = new Float32Array(plane);
  let aligned = 0;
  set.samples.forEach((sample, i) => {
    if (!sample.landmarks || sample.landmarks.length < 68) return;
    const view = set.images.subarray(i * plane, (i + 1) * plane);
    const inCrop = landmarksInCrop(sample.landmarks, sample.box, set.size);
    const result = alignFace(view, set.size, inCrop, scratch);
    view.set(result.image);
    set.samples[i] = { ...sample, landmarks: result.landmarks, box: [0, 0, set.size, set.size] };
    aligned++;
  });
  return aligned;
}

/** 136 numbers x0, y0, x1, y1, ... as 68 points; null unless exactly 136 finite numbers. */
export function points68(values: readonly number[]): Point[] | null {
  if (values.length !== 136 || !values.every(Number.isFinite)) return null;
  const points: Point[] = [];
  for (let k = 0; k < 68; k++) points.push([values[2 * k], values[2 * k + 1]]);
  return points;
}

/**
 * 68 landmarks (image pixels) from the text of a file: JSON (68 [x, y] pairs, or 136 numbers),
 * or 136 numbers separated by spaces, commas, semicolons or newlines (AffectNet's
 * facial_landmarks field, a dlib dump). `file` names the source in errors.
 */
export function parseLandmarks(text: string, file: string): Point[] {
  let values: number[];
  const trimmed = text.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (error) {
      throw new DataError(`not valid JSON (${(error as Error).message})`, { file });
    }
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      parsed = (parsed as Record<string, unknown>).landmarks;
    }
    values = Array.isArray(parsed)
      ? parsed.flat().map((v) => (typeof v === "number" ? v : NaN))
      : [];
  } else {
    values = trimmed.split(/[\s,;]+/).filter((s) => s !== "").map(Number);
  }
  const points = points68(values);
  if (!points) {
    throw new DataError(
      `expected 68 landmarks (136 finite numbers, x then y), got ${values.length} values` +
        (values.every(Number.isFinite) ? "" : " (some not numbers)"),
      { file },
    );
  }
  return points;
}

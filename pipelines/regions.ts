/**
 * Expression-region weights for the reconstruction loss: pixels of the brows, eyes and mouth (from
 * the 68 iBUG landmarks that the synthetic faces and both real datasets carry) count more, so the
 * decoder cannot fit identity and ignore the expression the labels ask for.
 */

import type { Box, Point } from "./data/types.ts";

/** Landmark index ranges (iBUG 68) of the regions that carry the expression. */
export const EXPRESSION_REGIONS = {
  brows: [17, 27],
  eyes: [36, 48],
  mouth: [48, 68],
} as const;

/** Options of {@link expressionWeightMap}. */
export interface RegionWeightOptions {
  /** Extra weight inside a region (1 + emphasis there, 1 elsewhere, before normalization). */
  emphasis?: number;
  /** Region ellipses grow by this fraction of their radius (plus 1.5 px). Default 0.35. */
  grow?: number;
}

/**
 * A size x size map, mean 1, that is larger inside ellipses around each expression region of the
 * face. Landmarks are in source-image pixels; `box` is the crop the face was cut from. Without
 * landmarks the map is uniform (the paper's plain MSE).
 */
export function expressionWeightMap(
  landmarks: readonly Point[] | undefined,
  box: Box,
  size = 64,
  options: RegionWeightOptions = {},
): Float32Array {
  const emphasis = options.emphasis ?? 4;
  const map = new Float32Array(size * size).fill(1);
  if (!landmarks || landmarks.length < 68) return map;
  const mask = expressionMask(landmarks, box, size, options.grow);
  for (let i = 0; i < map.length; i++) map[i] = 1 + emphasis * mask[i];
  let total = 0;
  for (const w of map) total += w;
  const scale = map.length / total;
  for (let i = 0; i < map.length; i++) map[i] *= scale;
  return map;
}

/**
 * A size x size map in [0, 1]: 1 inside the ellipses around the brows, eyes and mouth (soft over
 * their outer fifth), 0 elsewhere. Without landmarks it is 1 everywhere (no region is known).
 * `grow` widens the ellipses by that fraction of their radius (plus 1.5 px); default 0.35.
 */
export function expressionMask(
  landmarks: readonly Point[] | undefined,
  box: Box,
  size = 64,
  grow = 0.35,
): Float32Array {
  if (!landmarks || landmarks.length < 68) return new Float32Array(size * size).fill(1);
  const map = new Float32Array(size * size);
  const [bx, by, bw, bh] = box;
  const toCrop = ([x, y]: Point): Point => [((x - bx) / bw) * size, ((y - by) / bh) * size];
  for (const [start, end] of Object.values(EXPRESSION_REGIONS)) {
    const points = landmarks.slice(start, end).map(toCrop);
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
    const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const rx = ((Math.max(...xs) - Math.min(...xs)) / 2) * (1 + grow) + 1.5;
    const ry = ((Math.max(...ys) - Math.min(...ys)) / 2) * (1 + grow) + 1.5;
    const x0 = Math.max(0, Math.floor(cx - rx)), x1 = Math.min(size - 1, Math.ceil(cx + rx));
    const y0 = Math.max(0, Math.floor(cy - ry)), y1 = Math.min(size - 1, Math.ceil(cy + ry));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const d = ((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2;
        // Soft edge over the outer fifth of the ellipse.
        const inside = Math.min(1, Math.max(0, (1 - d) / 0.2));
        map[y * size + x] = Math.max(map[y * size + x], inside);
      }
    }
  }
  return map;
}

/**
 * The mean of the samples' expression masks ({@link expressionMask}): where expressions live in
 * aligned faces of this data. Samples without landmarks are skipped; none at all gives zeros.
 */
export function meanExpressionMask(
  samples: readonly { landmarks?: readonly Point[]; box: Box }[],
  size = 64,
): Float32Array {
  const out = new Float32Array(size * size);
  let count = 0;
  for (const s of samples) {
    if (!s.landmarks || s.landmarks.length < 68) continue;
    const mask = expressionMask(s.landmarks, s.box, size);
    for (let i = 0; i < out.length; i++) out[i] += mask[i];
    count++;
  }
  if (count > 0) { for (let i = 0; i < out.length; i++) out[i] /= count; }
  return out;
}

/**
 * The ceiling on an editing decoder's blend mask from a mean expression mask: twice the mask,
 * capped at 1, so the decoder can fully redraw wherever the source was erased (and a margin
 * around it) and nowhere else.
 */
export function editLimitMap(meanMask: Float32Array): Float32Array {
  return meanMask.map((m) => Math.min(1, 2 * m));
}

/** The weight maps of a batch, repeated over the 3 colour channels: [n, 3, size, size]. */
export function batchWeights(maps: readonly Float32Array[], size: number): Float32Array {
  const plane = size * size;
  const out = new Float32Array(maps.length * 3 * plane);
  maps.forEach((map, k) => {
    for (let c = 0; c < 3; c++) out.set(map, (k * 3 + c) * plane);
  });
  return out;
}

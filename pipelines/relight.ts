/**
 * Relighting a same-person target frame to its source frame's light. The autoencoder learns from
 * pairs (I_i, I_j) of one person's frames: D(z_i, v_j, a_j) should look like I_j. Between frames the
 * light changes too (brightness, a gradient across the face), and the decoder cannot know I_j's
 * light from I_i, so it learns an average light, and its redrawn mouth and brows sit in skin of
 * another shade than the source around them: light or dark patches. Relit, the target differs from
 * the source only where the expression does, which is what the decoder is asked to change.
 *
 * The light change is modelled as a smooth gain field f(x, y) = c0 + c1 x + c2 y (x, y in [-1, 1]
 * across the image), shared by the colour channels, fitted by weighted least squares of
 * source ~ f * target over the pixels outside both faces' expression regions and away from
 * clipping; the relit target is f * target, clamped to [0, 1].
 */

/** Pixels this close to 0 or 1 in either face are left out of the fit (clipped, not lit). */
const CLIP_MARGIN = 0.01;

/**
 * The gain field's coefficients [c0, c1, c2] that best map `target` onto `source` (both 3 x S x S),
 * weighted per pixel by `weight` (S x S, e.g. 1 outside the expression regions, 0 inside). No
 * usable pixel, or a degenerate fit, gives [1, 0, 0] (leave the target as it is).
 */
export function fitGain(
  source: Float32Array,
  target: Float32Array,
  weight: Float32Array,
  side: number,
): [number, number, number] {
  const plane = side * side;
  if (source.length !== 3 * plane || target.length !== 3 * plane || weight.length !== plane) {
    throw new Error(
      `fitGain: expected 3 x ${side} x ${side} faces and a ${side} x ${side} weight, got ` +
        `${source.length}, ${target.length} and ${weight.length} values`,
    );
  }
  // Normal equations of min sum w (s - t (c0 + c1 x + c2 y))^2: A c = b with A = sum w t^2 u u^T,
  // b = sum w s t u, u = (1, x, y).
  const a = new Float64Array(9);
  const b = new Float64Array(3);
  for (let y = 0; y < side; y++) {
    const v = ((y + 0.5) / side) * 2 - 1;
    for (let x = 0; x < side; x++) {
      const k = y * side + x;
      const w = weight[k];
      if (!(w > 0)) continue;
      const u = ((x + 0.5) / side) * 2 - 1;
      const basis = [1, u, v];
      for (let c = 0; c < 3; c++) {
        const s = source[c * plane + k];
        const t = target[c * plane + k];
        if (s < CLIP_MARGIN || s > 1 - CLIP_MARGIN || t < CLIP_MARGIN || t > 1 - CLIP_MARGIN) {
          continue;
        }
        for (let p = 0; p < 3; p++) {
          b[p] += w * s * t * basis[p];
          for (let q = 0; q < 3; q++) a[p * 3 + q] += w * t * t * basis[p] * basis[q];
        }
      }
    }
  }
  const solution = solve3(a, b);
  return solution ?? [1, 0, 0];
}

/** `target` (3 x S x S) times the gain field, clamped to [0, 1]: a new array. */
export function applyGain(
  target: Float32Array,
  gain: readonly [number, number, number],
  side: number,
): Float32Array {
  const plane = side * side;
  const out = new Float32Array(target.length);
  for (let y = 0; y < side; y++) {
    const v = ((y + 0.5) / side) * 2 - 1;
    for (let x = 0; x < side; x++) {
      const u = ((x + 0.5) / side) * 2 - 1;
      const f = gain[0] + gain[1] * u + gain[2] * v;
      const k = y * side + x;
      for (let c = 0; c < 3; c++) {
        out[c * plane + k] = Math.min(1, Math.max(0, target[c * plane + k] * f));
      }
    }
  }
  return out;
}

/** Relight `target` to `source`'s light: {@link fitGain}, then {@link applyGain}. */
export function relightTo(
  source: Float32Array,
  target: Float32Array,
  weight: Float32Array,
  side: number,
): Float32Array {
  return applyGain(target, fitGain(source, target, weight, side), side);
}

/** Gaussian elimination with partial pivoting on a 3 x 3 system; null when (near) singular. */
function solve3(a: Float64Array, b: Float64Array): [number, number, number] | null {
  const m = [
    [a[0], a[1], a[2], b[0]],
    [a[3], a[4], a[5], b[1]],
    [a[6], a[7], a[8], b[2]],
  ];
  const scale = Math.max(Math.abs(a[0]), Math.abs(a[4]), Math.abs(a[8]));
  if (!(scale > 0)) return null;
  for (let col = 0; col < 3; col++) {
    let pivot = col;
    for (let r = col + 1; r < 3; r++) {
      if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    }
    if (Math.abs(m[pivot][col]) < 1e-9 * scale) return null;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let r = 0; r < 3; r++) {
      if (r === col) continue;
      const factor = m[r][col] / m[col][col];
      for (let c = col; c < 4; c++) m[r][c] -= factor * m[col][c];
    }
  }
  const out: [number, number, number] = [m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]];
  return out.every(Number.isFinite) ? out : null;
}

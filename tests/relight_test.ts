import assert from "node:assert/strict";
import { applyGain, fitGain, relightTo } from "../pipelines/relight.ts";

const side = 16;
const plane = side * side;
const coordinate = (i: number) => ((i + 0.5) / side) * 2 - 1;

/** A face-like image with values well inside (0, 1): a different ramp per channel. */
function face(): Float32Array {
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let k = 0; k < plane; k++) out[c * plane + k] = 0.3 + 0.1 * c + 0.2 * ((k * 7) % 11) / 11;
  }
  return out;
}

/** The source under another light: source / (c0 + c1 x + c2 y). */
function underLight(source: Float32Array, gain: [number, number, number]): Float32Array {
  const out = new Float32Array(source.length);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const f = gain[0] + gain[1] * coordinate(x) + gain[2] * coordinate(y);
      for (let c = 0; c < 3; c++) {
        out[c * plane + y * side + x] = source[c * plane + y * side + x] / f;
      }
    }
  }
  return out;
}

Deno.test("fitGain recovers the light change between two frames; relightTo undoes it", () => {
  const source = face();
  const target = underLight(source, [1.1, 0.15, -0.08]);
  const gain = fitGain(source, target, new Float32Array(plane).fill(1), side);
  gain.forEach((g, i) => assert.ok(Math.abs(g - [1.1, 0.15, -0.08][i]) < 1e-6, `c${i}: ${g}`));
  const relit = relightTo(source, target, new Float32Array(plane).fill(1), side);
  for (let i = 0; i < relit.length; i++) assert.ok(Math.abs(relit[i] - source[i]) < 1e-5);
});

Deno.test("fitGain ignores zero-weight pixels (the expression) and clipped ones", () => {
  const source = face();
  const target = underLight(source, [0.9, -0.1, 0.05]);
  const weight = new Float32Array(plane).fill(1);
  // A changed expression in a weight-0 block, and a clipped (white) pixel elsewhere.
  for (let y = 4; y < 9; y++) {
    for (let x = 5; x < 11; x++) {
      weight[y * side + x] = 0;
      for (let c = 0; c < 3; c++) target[c * plane + y * side + x] = 0.05;
    }
  }
  for (let c = 0; c < 3; c++) target[c * plane + 2] = 1;
  const gain = fitGain(source, target, weight, side);
  gain.forEach((g, i) => assert.ok(Math.abs(g - [0.9, -0.1, 0.05][i]) < 1e-6, `c${i}: ${g}`));
  // Outside the block the relit target is the source; values stay in [0, 1].
  const relit = applyGain(target, gain, side);
  assert.ok(Math.abs(relit[plane + 15 * side + 15] - source[plane + 15 * side + 15]) < 1e-5);
  assert.ok(relit.every((v) => v >= 0 && v <= 1));
});

Deno.test("fitGain: nothing to fit leaves the target as it is; wrong sizes are named", () => {
  const source = face();
  assert.deepEqual(fitGain(source, source, new Float32Array(plane), side), [1, 0, 0]);
  assert.deepEqual(
    fitGain(source, new Float32Array(3 * plane), new Float32Array(plane).fill(1), side),
    [
      1,
      0,
      0,
    ],
  );
  assert.throws(
    () => fitGain(source, source.subarray(1), new Float32Array(plane), side),
    /fitGain/,
  );
});

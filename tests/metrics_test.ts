import assert from "node:assert/strict";
import { ccc, pearson, rmse, sagr, summarize, vaMetrics } from "../pipelines/metrics.ts";

/** Asserts |actual - expected| <= 1e-12, the slack f64 rounding needs in these small cases. */
function assertClose(actual: number, expected: number, label = ""): void {
  assert.ok(
    Math.abs(actual - expected) <= 1e-12,
    `${label} expected ${expected}, got ${actual}`,
  );
}

Deno.test("hand-computed case: pred [1, 2, 3], truth [1, 3, 2]", () => {
  // Means 2 and 2; deviations [-1, 0, 1] and [-1, 1, 0].
  // cov = (1 + 0 + 0) / 3 = 1/3; var_p = var_t = 2/3.
  // pearson = (1/3) / (2/3) = 0.5; ccc = (2/3) / (2/3 + 2/3 + 0) = 0.5.
  // errors [0, -1, 1] -> rmse = sqrt(2/3).
  const pred = [1, 2, 3];
  const truth = [1, 3, 2];
  assertClose(rmse(pred, truth), Math.sqrt(2 / 3), "rmse");
  assertClose(pearson(pred, truth), 0.5, "pearson");
  assertClose(ccc(pred, truth), 0.5, "ccc");
  assert.equal(sagr(pred, truth), 1);
});

Deno.test("hand-computed case with a scale mismatch: pred [0, 2, 4], truth [1, 2, 3]", () => {
  // Means 2 and 2; deviations [-2, 0, 2] and [-1, 0, 1].
  // cov = 4/3, var_p = 8/3, var_t = 2/3 -> pearson = (4/3) / sqrt(16/9) = 1.
  // ccc = (8/3) / (8/3 + 2/3 + 0) = 0.8; errors [-1, 0, 1] -> rmse = sqrt(2/3).
  // Signs: pred 0 vs truth + disagrees, the other two agree -> sagr = 2/3.
  const pred = [0, 2, 4];
  const truth = [1, 2, 3];
  assertClose(pearson(pred, truth), 1, "pearson");
  assertClose(ccc(pred, truth), 0.8, "ccc");
  assertClose(rmse(pred, truth), Math.sqrt(2 / 3), "rmse");
  assertClose(sagr(pred, truth), 2 / 3, "sagr");
});

Deno.test("perfect prediction: rmse 0, corr 1, ccc 1, sagr 1", () => {
  const truth = new Float32Array([-0.8, -0.1, 0.25, 0.6, 0.9]);
  const pred = Float64Array.from(truth);
  assert.equal(rmse(pred, truth), 0);
  assertClose(pearson(pred, truth), 1, "pearson");
  assert.equal(ccc(pred, truth), 1);
  assert.equal(sagr(pred, truth), 1);
});

Deno.test("negated prediction: pred = -truth with truth [1, 2, 3]", () => {
  // Means -2 and 2; cov = -var = -2/3 -> pearson = -1.
  // ccc = -(4/3) / (2/3 + 2/3 + 4^2) = -(4/3) / (52/3) = -1/13.
  // errors [-2, -4, -6] -> rmse = sqrt(56/3); every sign flips -> sagr = 0.
  const truth = [1, 2, 3];
  const pred = [-1, -2, -3];
  assertClose(pearson(pred, truth), -1, "pearson");
  assertClose(ccc(pred, truth), -1 / 13, "ccc");
  assertClose(rmse(pred, truth), Math.sqrt(56 / 3), "rmse");
  assert.equal(sagr(pred, truth), 0);
});

Deno.test("shifted prediction: pearson 1 but ccc penalises the bias", () => {
  // pred = truth + 1 with truth [1, 2, 3]: cov = var = 2/3, mean gap 1.
  // ccc = (4/3) / (2/3 + 2/3 + 1) = 4/7; every error is 1 -> rmse = 1.
  const truth = [1, 2, 3];
  const pred = [2, 3, 4];
  assertClose(pearson(pred, truth), 1, "pearson");
  assertClose(ccc(pred, truth), 4 / 7, "ccc");
  assertClose(rmse(pred, truth), 1, "rmse");
});

Deno.test("constant predictions: pearson is NaN, ccc stays defined", () => {
  // var_p = 0 -> cov = 0, so ccc = 0 / (0 + 2/3 + 1.5^2) = 0.
  assert.ok(Number.isNaN(pearson([0.5, 0.5, 0.5], [1, 2, 3])));
  assert.ok(Number.isNaN(pearson([1, 2, 3], [0.5, 0.5, 0.5])));
  assert.equal(ccc([0.5, 0.5, 0.5], [1, 2, 3]), 0);
  // Both constant but different: 0 / (0 + 0 + 1^2) = 0.
  assert.equal(ccc([1, 1], [2, 2]), 0);
  // Both constant and equal: a perfect prediction, so ccc is 1. 0.1 * 3 / 3 is not exactly
  // 0.1 in f64, so this also checks that no rounding noise turns into a variance.
  assert.equal(ccc([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]), 1);
  assert.ok(Number.isNaN(pearson([0.1, 0.1, 0.1], [0.1, 0.1, 0.1])));
});

Deno.test("a single sample", () => {
  assert.equal(rmse([0.3], [0.3]), 0);
  assert.ok(Number.isNaN(pearson([0.3], [0.3])));
  assert.equal(ccc([0.3], [0.3]), 1);
  assert.equal(sagr([0.3], [0.3]), 1);
  // |0.3 - (-0.2)| = 0.5; ccc = 0 / (0.5^2) = 0; opposite signs -> sagr 0.
  assertClose(rmse([0.3], [-0.2]), 0.5, "rmse");
  assert.equal(ccc([0.3], [-0.2]), 0);
  assert.equal(sagr([0.3], [-0.2]), 0);
});

Deno.test("invalid inputs throw with the argument and index", () => {
  for (const metric of [rmse, pearson, ccc, sagr]) {
    assert.throws(() => metric([1, 2], [1, 2, 3]), /length mismatch, pred has 2 .* truth has 3/);
    assert.throws(() => metric([], []), /pred is empty/);
    assert.throws(() => metric([1, NaN, 3], [1, 2, 3]), /pred\[1\] is NaN/);
    assert.throws(() => metric([1, 2, 3], [1, 2, Infinity]), /truth\[2\] is Infinity/);
    assert.throws(() => metric(new Float32Array([-Infinity]), [1]), /pred\[0\] is -Infinity/);
  }
});

Deno.test("sagr zero policies", () => {
  const pred = [0, 0.5, -0.1, 0, 0.2];
  const truth = [0, 0, -0.3, 0.4, -0.1];
  // own-class: (0,0) agree, (+,0) no, (-,-) agree, (0,+) no, (+,-) no -> 2/5.
  assertClose(sagr(pred, truth), 0.4, "default");
  assertClose(sagr(pred, truth, { zero: "own-class" }), 0.4, "own-class");
  // positive: zeros become +: agree, agree, agree, agree, no -> 4/5.
  assertClose(sagr(pred, truth, { zero: "positive" }), 0.8, "positive");
  // exclude: the first two samples drop out; (-,-) agree, (0,+) no, (+,-) no -> 1/3.
  assertClose(sagr(pred, truth, { zero: "exclude" }), 1 / 3, "exclude");
  assert.ok(Number.isNaN(sagr([1, -1], [0, 0], { zero: "exclude" })));
  // -0 and 0 are one class.
  assert.equal(sagr([-0], [0]), 1);
  assert.throws(
    () => sagr([1], [1], { zero: "bogus" as "own-class" }),
    /unknown zero policy "bogus"/,
  );
});

Deno.test("summarize: mean and sample std over runs", () => {
  // Mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5 -> std = sqrt(5 / 3).
  const summary = summarize([1, 2, 3, 4]);
  assert.equal(summary.runs, 4);
  assertClose(summary.mean, 2.5, "mean");
  assertClose(summary.std, Math.sqrt(5 / 3), "std");
  assert.deepEqual(summarize([0.7]), { mean: 0.7, std: 0, runs: 1 });
  assert.ok(Number.isNaN(summarize([0.5, NaN]).mean));
  assert.throws(() => summarize([]), /values is empty/);
});

Deno.test("vaMetrics scores both dimensions", () => {
  const scores = vaMetrics([1, 2, 3], [2, 3, 4], [1, 3, 2], [1, 2, 3]);
  assertClose(scores.valence.rmse, Math.sqrt(2 / 3), "valence rmse");
  assertClose(scores.valence.corr, 0.5, "valence corr");
  assertClose(scores.valence.ccc, 0.5, "valence ccc");
  assert.equal(scores.valence.sagr, 1);
  assertClose(scores.arousal.rmse, 1, "arousal rmse");
  assertClose(scores.arousal.corr, 1, "arousal corr");
  assertClose(scores.arousal.ccc, 4 / 7, "arousal ccc");
  assert.equal(scores.arousal.sagr, 1);
  assert.throws(
    () => vaMetrics([1], [NaN], [1], [1]),
    /vaMetrics \(arousal\): rmse: pred\[0\] is NaN/,
  );
});

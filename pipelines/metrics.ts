/**
 * Evaluation metrics for continuous valence/arousal regression: RMSE, Pearson correlation,
 * Lin's concordance correlation coefficient (CCC) and sign agreement (SAGR), plus helpers to
 * summarise a metric over several seeds.
 *
 * Every metric accepts plain number arrays or typed arrays and computes in f64. Inputs are
 * validated: mismatched lengths, empty inputs and non-finite values throw.
 *
 * @module
 */

/** A sequence of per-sample values: a plain array, a `Float32Array` or a `Float64Array`. */
export type Samples = ArrayLike<number>;

/**
 * How {@linkcode sagr} treats values that are exactly zero (`-0` counts as zero).
 *
 * - `"own-class"`: zero is its own sign class (`sign(0) = 0`), so a sample agrees only when
 *   both signs are equal; a zero ground truth agrees only with a prediction of exactly zero.
 *   This is the convention of Kossaifi et al. (AFEW-VA) and the AffectNet evaluations.
 * - `"positive"`: values `>= 0` count as positive, values `< 0` as negative, for both inputs.
 * - `"exclude"`: samples whose ground truth is zero are left out; among the rest a prediction
 *   of zero never agrees (its sign is 0, the truth's is ±1).
 */
export type SagrZeroPolicy = "own-class" | "positive" | "exclude";

/** Options for {@linkcode sagr}. */
export interface SagrOptions {
  /** Treatment of exact zeros; defaults to `"own-class"`. */
  zero?: SagrZeroPolicy;
}

/** The four scores reported per affect dimension. */
export interface DimensionScores {
  /** Root-mean-square error. */
  rmse: number;
  /** Pearson correlation coefficient (NaN when either input is constant). */
  corr: number;
  /** Lin's concordance correlation coefficient. */
  ccc: number;
  /** Sign agreement ratio in [0, 1]. */
  sagr: number;
}

/** Scores for both affect dimensions, as returned by {@linkcode vaMetrics}. */
export interface VaScores {
  /** Scores of the valence predictions. */
  valence: DimensionScores;
  /** Scores of the arousal predictions. */
  arousal: DimensionScores;
}

/** Mean and spread of one metric over repeated runs (e.g. seeds), from {@linkcode summarize}. */
export interface RunSummary {
  /** Arithmetic mean over the runs. */
  mean: number;
  /** Sample standard deviation (n - 1 denominator); 0 for a single run. */
  std: number;
  /** Number of runs summarised. */
  runs: number;
}

/** Throws unless `values` is non-empty and entirely finite. */
function assertFiniteSamples(metric: string, argName: string, values: Samples): void {
  if (values.length === 0) throw new Error(`${metric}: ${argName} is empty`);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new Error(`${metric}: ${argName}[${i}] is ${String(value)}, expected a finite number`);
    }
  }
}

/** Validates a prediction/ground-truth pair shared by every metric. */
function assertPair(metric: string, pred: Samples, truth: Samples): void {
  if (pred.length !== truth.length) {
    throw new Error(
      `${metric}: length mismatch, pred has ${pred.length} values but truth has ${truth.length}`,
    );
  }
  assertFiniteSamples(metric, "pred", pred);
  assertFiniteSamples(metric, "truth", truth);
}

/** First- and second-order moments of one sequence, with population (1/n) variance. */
interface Moments {
  mean: number;
  variance: number;
}

/**
 * Mean and population variance by the two-pass method. A constant sequence is detected
 * explicitly so its variance is exactly 0: `sum / n` can round away from the repeated value
 * (three times 0.1 averages to 0.10000000000000002), which would leave a spurious variance.
 */
function moments(values: Samples): Moments {
  const n = values.length;
  const first = values[0];
  let isConstant = true;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += values[i];
    if (values[i] !== first) isConstant = false;
  }
  if (isConstant) return { mean: first, variance: 0 };
  const mean = sum / n;
  let squares = 0;
  for (let i = 0; i < n; i++) {
    const deviation = values[i] - mean;
    squares += deviation * deviation;
  }
  return { mean, variance: squares / n };
}

/** Population (1/n) covariance of two equally long sequences around the given means. */
function covariance(pred: Samples, predMean: number, truth: Samples, truthMean: number): number {
  let sum = 0;
  for (let i = 0; i < pred.length; i++) sum += (pred[i] - predMean) * (truth[i] - truthMean);
  return sum / pred.length;
}

/** Rounding can push a correlation a hair past ±1; keep it inside its mathematical range. */
function clampUnit(value: number): number {
  return Math.min(1, Math.max(-1, value));
}

/**
 * Root-mean-square error `sqrt(mean((pred - truth)^2))`.
 *
 * @param pred Predicted values.
 * @param truth Ground-truth values, same length as `pred`.
 * @returns The RMSE, >= 0.
 * @throws {Error} On a length mismatch, empty input, or a NaN/Infinity in either argument.
 */
export function rmse(pred: Samples, truth: Samples): number {
  assertPair("rmse", pred, truth);
  let squares = 0;
  for (let i = 0; i < pred.length; i++) {
    const error = pred[i] - truth[i];
    squares += error * error;
  }
  return Math.sqrt(squares / pred.length);
}

/**
 * Pearson correlation coefficient `cov(pred, truth) / (sd(pred) * sd(truth))`.
 *
 * The coefficient is undefined when either input is constant (zero variance), including any
 * single-sample input; it then returns `NaN` rather than an arbitrary number.
 *
 * @param pred Predicted values.
 * @param truth Ground-truth values, same length as `pred`.
 * @returns The correlation in [-1, 1], or `NaN` when either input is constant.
 * @throws {Error} On a length mismatch, empty input, or a NaN/Infinity in either argument.
 */
export function pearson(pred: Samples, truth: Samples): number {
  assertPair("pearson", pred, truth);
  const p = moments(pred);
  const t = moments(truth);
  if (p.variance === 0 || t.variance === 0) return NaN;
  const cov = covariance(pred, p.mean, truth, t.mean);
  return clampUnit(cov / Math.sqrt(p.variance * t.variance));
}

/**
 * Lin's concordance correlation coefficient
 * `2 cov / (var(pred) + var(truth) + (mean(pred) - mean(truth))^2)`, with population (1/n)
 * variances and covariance.
 *
 * The denominator is zero only when both inputs are constant and equal to each other, i.e. the
 * prediction is perfect; that case returns 1. Any other constant input gives a finite value
 * (0, because the covariance vanishes).
 *
 * @param pred Predicted values.
 * @param truth Ground-truth values, same length as `pred`.
 * @returns The CCC in [-1, 1].
 * @throws {Error} On a length mismatch, empty input, or a NaN/Infinity in either argument.
 */
export function ccc(pred: Samples, truth: Samples): number {
  assertPair("ccc", pred, truth);
  const p = moments(pred);
  const t = moments(truth);
  const meanGap = p.mean - t.mean;
  const denominator = p.variance + t.variance + meanGap * meanGap;
  if (denominator === 0) return 1;
  const cov = covariance(pred, p.mean, truth, t.mean);
  return clampUnit((2 * cov) / denominator);
}

/**
 * Sign agreement ratio: the fraction of samples where `sign(pred) == sign(truth)`.
 *
 * By default zero is its own sign class (`sign(0) = 0`, the Kossaifi et al. convention), so a
 * ground truth of exactly 0 is matched only by a prediction of exactly 0. See
 * {@linkcode SagrZeroPolicy} for the alternatives `"positive"` and `"exclude"`.
 *
 * @param pred Predicted values.
 * @param truth Ground-truth values, same length as `pred`.
 * @param options `zero` selects the zero policy (default `"own-class"`).
 * @returns The agreement ratio in [0, 1]; with `"exclude"`, `NaN` if every ground truth is 0.
 * @throws {Error} On a length mismatch, empty input, a NaN/Infinity in either argument, or an
 *   unknown zero policy.
 */
export function sagr(pred: Samples, truth: Samples, options: SagrOptions = {}): number {
  assertPair("sagr", pred, truth);
  const policy = options.zero ?? "own-class";
  let agreeing = 0;
  let counted = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i];
    const t = truth[i];
    switch (policy) {
      case "own-class":
        counted++;
        // `===` makes -0 and 0 the same class.
        if (Math.sign(p) === Math.sign(t)) agreeing++;
        break;
      case "positive":
        counted++;
        if ((p >= 0) === (t >= 0)) agreeing++;
        break;
      case "exclude":
        if (t === 0) continue;
        counted++;
        if (Math.sign(p) === Math.sign(t)) agreeing++;
        break;
      default:
        throw new Error(
          `sagr: unknown zero policy ${JSON.stringify(policy)}, ` +
            `expected "own-class", "positive" or "exclude"`,
        );
    }
  }
  return counted === 0 ? NaN : agreeing / counted;
}

/**
 * Mean and sample standard deviation of one metric over repeated runs (e.g. training seeds).
 *
 * Non-finite values are not rejected: a run whose metric is `NaN` (say, a Pearson correlation
 * of a collapsed, constant predictor) makes the summary `NaN`, so it cannot go unnoticed.
 *
 * @param values One metric value per run.
 * @returns `{ mean, std, runs }`, with `std` using the n - 1 denominator and 0 for one run.
 * @throws {Error} If `values` is empty.
 */
export function summarize(values: Samples): RunSummary {
  const runs = values.length;
  if (runs === 0) throw new Error("summarize: values is empty");
  let sum = 0;
  for (let i = 0; i < runs; i++) sum += values[i];
  const mean = sum / runs;
  if (runs === 1) return { mean, std: 0, runs };
  let squares = 0;
  for (let i = 0; i < runs; i++) {
    const deviation = values[i] - mean;
    squares += deviation * deviation;
  }
  return { mean, std: Math.sqrt(squares / (runs - 1)), runs };
}

/** All four scores for one dimension; errors are prefixed with the dimension's name. */
function dimensionScores(
  dimension: string,
  pred: Samples,
  truth: Samples,
  options: SagrOptions,
): DimensionScores {
  try {
    return {
      rmse: rmse(pred, truth),
      corr: pearson(pred, truth),
      ccc: ccc(pred, truth),
      sagr: sagr(pred, truth, options),
    };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`vaMetrics (${dimension}): ${reason}`, { cause: error });
  }
}

/**
 * RMSE, Pearson correlation, CCC and SAGR for valence and arousal predictions.
 *
 * @param predValence Predicted valence per sample.
 * @param predArousal Predicted arousal per sample.
 * @param trueValence Ground-truth valence per sample.
 * @param trueArousal Ground-truth arousal per sample.
 * @param options Passed to {@linkcode sagr} for both dimensions.
 * @returns The scores per dimension.
 * @throws {Error} Under the same conditions as the individual metrics.
 */
export function vaMetrics(
  predValence: Samples,
  predArousal: Samples,
  trueValence: Samples,
  trueArousal: Samples,
  options: SagrOptions = {},
): VaScores {
  return {
    valence: dimensionScores("valence", predValence, trueValence, options),
    arousal: dimensionScores("arousal", predArousal, trueArousal, options),
  };
}

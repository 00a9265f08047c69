/**
 * V/A grid binning and the paper's baselines (under- and over-sampling per cell) plus uniform
 * targets in the unit disk.
 */
import { DataError } from "./errors.ts";
import { mulberry32, shuffleInPlace } from "./rng.ts";
import type { FaceSample, VaLabel } from "./types.ts";

/** Grid options shared by the binning helpers. */
export interface BinOptions {
  /** Cell side length over [-1, 1]^2. Default 0.1 (a 20 x 20 grid). */
  binSize?: number;
}

/** Number of cells along each axis for a given `binSize` (the last cell may be narrower). */
export function cellsPerAxis(binSize = 0.1): number {
  if (!(binSize > 0 && binSize <= 2)) {
    throw new DataError(`binSize must be in (0, 2], got ${binSize}`);
  }
  return Math.ceil(2 / binSize - 1e-9);
}

/** Index of a value along one axis; 1.0 (and anything above) falls in the last cell. */
export function axisBin(value: number, binSize = 0.1): number {
  const n = cellsPerAxis(binSize);
  // The epsilon keeps values such as -0.9 from rounding into the cell below.
  const index = Math.floor((value + 1) / binSize + 1e-9);
  return index < 0 ? 0 : index >= n ? n - 1 : index;
}

/** Row-major cell index `arousalBin * cellsPerAxis + valenceBin` of a label. */
export function vaCell(label: VaLabel, binSize = 0.1): number {
  return axisBin(label.arousal, binSize) * cellsPerAxis(binSize) + axisBin(label.valence, binSize);
}

/** Sample count per cell (length `cellsPerAxis^2`, row-major by arousal then valence). */
export function binCounts(labels: readonly VaLabel[], options: BinOptions = {}): Uint32Array {
  const binSize = options.binSize ?? 0.1;
  const n = cellsPerAxis(binSize);
  const counts = new Uint32Array(n * n);
  for (const label of labels) counts[vaCell(label, binSize)]++;
  return counts;
}

/** Options for the per-cell samplers. */
export interface CellSamplerOptions extends BinOptions {
  /** T_u for under-sampling (max per cell) or T_o for over-sampling (min per non-empty cell). */
  threshold: number;
  /** Seed for which samples are kept or replicated. Default 0. */
  seed?: number;
}

function cellMembers(labels: readonly VaLabel[], binSize: number): Map<number, number[]> {
  const cells = new Map<number, number[]>();
  labels.forEach((label, index) => {
    if (!Number.isFinite(label.valence) || !Number.isFinite(label.arousal)) {
      throw new DataError(`sample ${index} has a non-finite valence/arousal`);
    }
    const cell = vaCell(label, binSize);
    const members = cells.get(cell);
    if (members === undefined) cells.set(cell, [index]);
    else members.push(index);
  });
  return cells;
}

function checkThreshold(threshold: number, name: string): void {
  if (!Number.isInteger(threshold) || threshold < 1) {
    throw new DataError(`${name}: threshold must be a positive integer, got ${threshold}`);
  }
}

/**
 * Under-sampling: keeps at most `threshold` random samples per cell. Returns the kept indices
 * in ascending order.
 */
export function underSampleIndices(
  labels: readonly VaLabel[],
  options: CellSamplerOptions,
): number[] {
  checkThreshold(options.threshold, "underSample");
  const rng = mulberry32(options.seed ?? 0);
  const kept: number[] = [];
  const cells = cellMembers(labels, options.binSize ?? 0.1);
  for (const cell of [...cells.keys()].sort((a, b) => a - b)) {
    const members = cells.get(cell)!;
    if (members.length <= options.threshold) kept.push(...members);
    else kept.push(...shuffleInPlace([...members], rng).slice(0, options.threshold));
  }
  return kept.sort((a, b) => a - b);
}

/**
 * Over-sampling: replicates the samples of every non-empty cell with fewer than `threshold`
 * members until it has `threshold` (each member is repeated as evenly as possible, extra copies
 * chosen at random). Cells already at or above the threshold and empty cells are unchanged.
 * Returns indices (with repeats) in ascending order.
 */
export function overSampleIndices(
  labels: readonly VaLabel[],
  options: CellSamplerOptions,
): number[] {
  checkThreshold(options.threshold, "overSample");
  const rng = mulberry32(options.seed ?? 0);
  const out: number[] = [];
  const cells = cellMembers(labels, options.binSize ?? 0.1);
  for (const cell of [...cells.keys()].sort((a, b) => a - b)) {
    const members = cells.get(cell)!;
    out.push(...members);
    const missing = options.threshold - members.length;
    if (missing <= 0) continue;
    const fullRounds = Math.floor(missing / members.length);
    for (let round = 0; round < fullRounds; round++) out.push(...members);
    out.push(...shuffleInPlace([...members], rng).slice(0, missing % members.length));
  }
  return out.sort((a, b) => a - b);
}

/** `underSampleIndices` mapped back to the samples. */
export function underSample<T extends VaLabel>(
  samples: readonly T[],
  options: CellSamplerOptions,
): T[] {
  return underSampleIndices(samples, options).map((i) => samples[i]);
}

/** `overSampleIndices` mapped back to the samples (replicas are the same objects). */
export function overSample<T extends VaLabel>(
  samples: readonly T[],
  options: CellSamplerOptions,
): T[] {
  return overSampleIndices(samples, options).map((i) => samples[i]);
}

/** `n` seeded points uniform over the unit disk (r = sqrt(U), theta = 2 pi U). */
export function sampleUnitDisk(n: number, seed = 0): VaLabel[] {
  if (!Number.isInteger(n) || n < 0) throw new DataError(`sampleUnitDisk: bad count ${n}`);
  const rng = mulberry32(seed);
  const points: VaLabel[] = [];
  for (let i = 0; i < n; i++) {
    const radius = Math.sqrt(rng());
    const angle = 2 * Math.PI * rng();
    points.push({ valence: radius * Math.cos(angle), arousal: radius * Math.sin(angle) });
  }
  return points;
}

/** Options for `samePersonPairs`. */
export interface PairOptions {
  /** Seed for partner choice. Default 0. */
  seed?: number;
  /** Partners drawn per sample. Default 1. */
  pairsPerSample?: number;
  /** Minimum V/A distance between the two frames; must be > this. Default 0 (just different). */
  minDistance?: number;
  /**
   * Relative chance of each sample being drawn as a partner (default: all equal), e.g.
   * {@link inverseCellFrequency} so rare V/A labels are the decoder's target as often as common ones.
   */
  partnerWeights?: ArrayLike<number>;
}

/**
 * Per sample, 1 / (samples in its V/A cell): as partner weights, every occupied cell is drawn
 * about equally often (within what each person's frames offer).
 */
export function inverseCellFrequency(labels: readonly VaLabel[], binSize = 0.1): Float64Array {
  const counts = binCounts(labels, { binSize });
  return Float64Array.from(labels, (label) => 1 / counts[vaCell(label, binSize)]);
}

/**
 * Autoencoder pairs: for every sample `i`, random partners `j` showing the same person with a
 * different V/A label. Samples without any such partner get no pair.
 */
export function samePersonPairs(
  samples: readonly Pick<FaceSample, "person" | "valence" | "arousal">[],
  options: PairOptions = {},
): { i: number; j: number }[] {
  const rng = mulberry32(options.seed ?? 0);
  const perSample = options.pairsPerSample ?? 1;
  const minDistance = options.minDistance ?? 0;
  const byPerson = new Map<string, number[]>();
  samples.forEach((s, index) => {
    const list = byPerson.get(s.person);
    if (list === undefined) byPerson.set(s.person, [index]);
    else list.push(index);
  });
  const pairs: { i: number; j: number }[] = [];
  samples.forEach((s, i) => {
    const partners = byPerson.get(s.person)!.filter((j) =>
      Math.hypot(samples[j].valence - s.valence, samples[j].arousal - s.arousal) > minDistance
    );
    if (partners.length === 0) return;
    const weights = options.partnerWeights;
    const total = weights ? partners.reduce((sum, j) => sum + weights[j], 0) : 0;
    for (let k = 0; k < perSample; k++) {
      if (!weights) {
        pairs.push({ i, j: partners[Math.floor(rng() * partners.length)] });
        continue;
      }
      // Roulette over the partners' weights (the last one catches rounding).
      let pick = rng() * total;
      let chosen = partners[partners.length - 1];
      for (const j of partners) {
        pick -= weights[j];
        if (pick < 0) {
          chosen = j;
          break;
        }
      }
      pairs.push({ i, j: chosen });
    }
  });
  return pairs;
}

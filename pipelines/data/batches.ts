/** Mini-batch assembly with one-ahead prefetch, so the CPU copies batch k+1 while the GPU runs k. */
import { DataError } from "./errors.ts";
import { mulberry32, shuffleInPlace } from "./rng.ts";
import type { VaLabel } from "./types.ts";

/** One mini-batch; every array is freshly allocated, so the consumer may keep it. */
export interface Batch {
  /** `batch x 3 x S x S` float32. */
  images: Float32Array;
  /** Valence per face. */
  valence: Float32Array;
  /** Arousal per face. */
  arousal: Float32Array;
  /** Index of each face in the source arrays. */
  indices: Uint32Array;
}

/** Options for `batches`. */
export interface BatchOptions {
  /** Faces per batch. */
  batchSize: number;
  /** Shuffle the order (seeded). Default false. */
  shuffle?: boolean;
  /** Seed of the shuffle; use a different one per epoch. Default 0. */
  seed?: number;
  /** Drop a final batch smaller than `batchSize`. Default false. */
  dropLast?: boolean;
  /**
   * Only these indices (e.g. from `underSampleIndices`/`overSampleIndices`; repeats allowed).
   * Default: every face once.
   */
  order?: readonly number[];
  /** Called when batch `k` has been assembled (for instrumentation and tests). */
  onPrepared?: (batchIndex: number) => void;
}

/**
 * Yields mini-batches of `faces` (N x 3 x S x S) and their labels. Batch k+1 is assembled in a
 * macrotask scheduled as soon as batch k is handed out, so it is built while the consumer
 * awaits GPU work and is usually ready when asked for.
 */
export async function* batches(
  faces: Float32Array,
  labels: readonly VaLabel[],
  options: BatchOptions,
): AsyncGenerator<Batch, void, undefined> {
  const { batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new DataError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  }
  if (labels.length === 0) throw new DataError("batches: no samples");
  if (faces.length % labels.length !== 0) {
    throw new DataError(
      `batches: ${faces.length} face values do not split evenly over ${labels.length} labels`,
    );
  }
  const faceValues = faces.length / labels.length;
  const order = options.order ? [...options.order] : labels.map((_, i) => i);
  for (const index of order) {
    if (!Number.isInteger(index) || index < 0 || index >= labels.length) {
      throw new DataError(`batches: order holds out-of-range index ${index}`);
    }
  }
  if (options.shuffle) shuffleInPlace(order, mulberry32(options.seed ?? 0));
  const batchCount = options.dropLast
    ? Math.floor(order.length / batchSize)
    : Math.ceil(order.length / batchSize);

  const assemble = (k: number): Batch => {
    const picked = order.slice(k * batchSize, Math.min((k + 1) * batchSize, order.length));
    const images = new Float32Array(picked.length * faceValues);
    const valence = new Float32Array(picked.length);
    const arousal = new Float32Array(picked.length);
    picked.forEach((index, row) => {
      images.set(faces.subarray(index * faceValues, (index + 1) * faceValues), row * faceValues);
      valence[row] = labels[index].valence;
      arousal[row] = labels[index].arousal;
    });
    options.onPrepared?.(k);
    return { images, valence, arousal, indices: Uint32Array.from(picked) };
  };
  const prepare = (k: number) =>
    new Promise<Batch>((resolve, reject) =>
      setTimeout(() => {
        try {
          resolve(assemble(k));
        } catch (error) {
          reject(error);
        }
      }, 0)
    );

  let next = batchCount > 0 ? prepare(0) : undefined;
  for (let k = 0; k < batchCount; k++) {
    const batch = await next!;
    next = k + 1 < batchCount ? prepare(k + 1) : undefined;
    yield batch;
  }
}

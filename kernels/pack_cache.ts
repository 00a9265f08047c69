/**
 * Filters derived from weights (their packs into uniform-buffer windows: kernels/conv_ubo.ts,
 * kernels/conv_ubo_any.ts), kept while the weight is unwritten. Weights change only at an
 * optimizer's update, while every training step would otherwise pack each conv's filters right
 * before the conv reads them.
 */

import type { Backend } from "./backend.ts";

/** A weight's packed filters, kept while the weight is unwritten (see {@link cachedPack}). */
interface PackEntry {
  weight: GPUBuffer;
  filters: { packed: GPUBuffer };
  /** Record the pack again into `filters.packed`. */
  pack(): void;
  /** The weight's write version (Backend.writeVersion) when it was last packed. */
  version: number;
}

/** Per backend: weight buffer -> pack (kernel key and sizes) -> entry. */
const packCaches = new WeakMap<Backend, Map<GPUBuffer, Map<string, PackEntry>>>();

/** The backend's pack cache; a weight buffer given back to the pool takes its packs with it. */
function packCache(b: Backend): Map<GPUBuffer, Map<string, PackEntry>> {
  let cache = packCaches.get(b);
  if (!cache) {
    const entries = cache = new Map<GPUBuffer, Map<string, PackEntry>>();
    packCaches.set(b, cache);
    const previous = b.pool.onRelease;
    b.pool.onRelease = (buffer) => {
      previous?.(buffer);
      const packs = entries.get(buffer);
      if (!packs) return;
      entries.delete(buffer);
      for (const entry of packs.values()) b.pool.release(entry.filters.packed);
    };
  }
  return cache;
}

/**
 * Filters derived from the weight `w` (a pack into uniform windows), cached: `create` allocates
 * them (`filters.packed` belongs to the cache from then on: callers must not release it) and
 * returns `pack`, which records the pack into them; the pack runs at creation and again whenever
 * `w` was written since (Backend.writeVersion). {@link refreshPackedFilters} packs every changed
 * weight at once, where an optimizer calls it after its update. `key` names the pack and its sizes.
 */
export function cachedPack<T extends { packed: GPUBuffer }>(
  b: Backend,
  w: GPUBuffer,
  key: string,
  create: () => { filters: T; pack: () => void },
): T {
  const cache = packCache(b);
  const cached = cache.get(w)?.get(key);
  if (cached) {
    if (cached.version !== b.writeVersion(w)) {
      cached.pack();
      cached.version = b.writeVersion(w);
    }
    return cached.filters as T;
  }
  const { filters, pack } = create();
  pack();
  let packs = cache.get(w);
  if (!packs) cache.set(w, packs = new Map());
  packs.set(key, { weight: w, filters, pack, version: b.writeVersion(w) });
  return filters;
}

/**
 * Pack again, now, every cached filter whose weight was written since it was packed (an optimizer's
 * update), and submit. On llvmpipe a conv that reads, as its uniform window, filters packed in the
 * same submit cost far more than the pack: the demo-size step with its 17 packs recorded here,
 * after the optimizer's update, took 0.923 of the time of the same packs recorded before each conv
 * (round 16). Without the call the convs pack what changed themselves, as before.
 */
export function refreshPackedFilters(b: Backend): void {
  const cache = packCaches.get(b);
  if (!cache) return;
  let packed = false;
  for (const packs of cache.values()) {
    for (const entry of packs.values()) {
      const version = b.writeVersion(entry.weight);
      if (entry.version === version) continue;
      entry.pack();
      entry.version = version;
      packed = true;
    }
  }
  if (packed) b.flush();
}

/**
 * How filters pack into uniform windows of `windowFloats` floats: segments of `taps` x `j` floats
 * per "loop" channel for each block of j "block" channels, the loop channels cut into chunks so
 * that a segment (padded to 64 floats: 256 bytes, the uniform offset alignment) fits one window.
 * The packed buffer holds chunks * blocks * segFloats floats.
 */
export function windowSegments(
  blockC: number,
  loopC: number,
  taps: number,
  j: number,
  windowFloats: number,
): { blocks: number; chunks: number; loopChunk: number; segFloats: number; total: number } {
  const blocks = Math.ceil(blockC / j);
  const maxChunk = Math.floor(windowFloats / (taps * j));
  const chunks = Math.ceil(loopC / maxChunk);
  const loopChunk = Math.ceil(loopC / chunks);
  const segFloats = Math.ceil((loopChunk * taps * j) / 64) * 64;
  return { blocks, chunks, loopChunk, segFloats, total: chunks * blocks * segFloats };
}

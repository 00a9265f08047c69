/**
 * A pool of GPU storage buffers bucketed by size.
 *
 * Buffers released while commands that use them are still being recorded must not be handed out
 * again before those commands are submitted (a later `queue.writeBuffer` would land before them),
 * so `release` parks a buffer until `recycle()` is called right after the submit.
 */

/**
 * Usage flags of every pooled buffer: bound as storage or as a uniform-buffer operand (in windows
 * of at most 64 KiB), copied from and into.
 */
export const POOLED_BUFFER_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM |
  GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Smallest bucket: tiny tensors (scalars, biases) share one size class. */
const MIN_BUCKET_BYTES = 256;

/**
 * The size class of a request: the next of 2^k or 1.5 * 2^k, so at most a third is wasted and
 * repeated shapes hit the same bucket.
 */
export function bucketSize(bytes: number): number {
  if (bytes <= MIN_BUCKET_BYTES) return MIN_BUCKET_BYTES;
  const power = 2 ** Math.ceil(Math.log2(bytes));
  const threeQuarters = power * 0.75;
  return bytes <= threeQuarters ? threeQuarters : power;
}

/** Counters a caller can watch for leaks. */
export interface PoolStats {
  /** Bytes of buffers currently handed out (by bucket size). */
  bytesInUse: number;
  /** Bytes of all live GPU buffers the pool owns: in use, parked and free. */
  bytesAllocated: number;
  /** Number of `createBuffer` calls so far. */
  buffersCreated: number;
}

/** Size-bucketed buffer pool with deferred reuse. */
export class BufferPool {
  readonly #device: GPUDevice;
  readonly #free = new Map<number, GPUBuffer[]>();
  #parked: GPUBuffer[] = [];
  #parkedBytes = 0;
  #bytesInUse = 0;
  #bytesAllocated = 0;
  #buffersCreated = 0;
  /** Creation order of the pool's buffers (free lists hand out the oldest first). */
  readonly #ids = new WeakMap<GPUBuffer, number>();

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** A buffer of at least `bytes` bytes (its `size` is the bucket size). */
  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.#free.get(size);
    let buffer = list?.pop();
    if (!buffer) {
      buffer = this.#device.createBuffer({ size, usage: POOLED_BUFFER_USAGE });
      this.#ids.set(buffer, this.#buffersCreated);
      this.#bytesAllocated += size;
      this.#buffersCreated++;
    }
    this.#bytesInUse += size;
    return buffer;
  }

  /**
   * Called with every buffer given back, before it can be handed out again (kernels/pack_cache.ts
   * drops the packed filters it keeps for a weight buffer that goes back).
   */
  onRelease: ((buffer: GPUBuffer) => void) | null = null;

  /** Give a buffer back; it becomes reusable after the next `recycle()`. */
  release(buffer: GPUBuffer): void {
    this.onRelease?.(buffer);
    this.#bytesInUse -= buffer.size;
    this.#parked.push(buffer);
    this.#parkedBytes += buffer.size;
  }

  /** Bytes parked since the last submit (the recorder flushes early when this grows large). */
  get parkedBytes(): number {
    return this.#parkedBytes;
  }

  /**
   * Called after a submit: parked buffers become free for reuse. Each free list is kept sorted so
   * that `acquire` hands out the oldest free buffer: a training step that acquires and releases the
   * same sizes in the same order then gets the same buffers step after step (period 1 or 2), which
   * keeps the backend's bind-group cache warm.
   */
  recycle(): void {
    const touched = new Set<GPUBuffer[]>();
    for (const buffer of this.#parked) {
      let list = this.#free.get(buffer.size);
      if (!list) this.#free.set(buffer.size, list = []);
      list.push(buffer);
      touched.add(list);
    }
    const ids = this.#ids;
    for (const list of touched) list.sort((a, b) => (ids.get(b) ?? -1) - (ids.get(a) ?? -1));
    this.#parked = [];
    this.#parkedBytes = 0;
  }

  /** Destroy all free buffers (parked ones stay until recycled). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const buffer of list) {
        this.#bytesAllocated -= buffer.size;
        buffer.destroy();
      }
    }
    this.#free.clear();
  }

  /** Current counters. */
  stats(): PoolStats {
    return {
      bytesInUse: this.#bytesInUse,
      bytesAllocated: this.#bytesAllocated,
      buffersCreated: this.#buffersCreated,
    };
  }
}

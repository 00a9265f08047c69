/** The user-facing device: creates tensors on a {@link Backend}. */

import { Backend, type BackendOptions } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { shapeSize, Storage, Tensor } from "./tensor.ts";

/** Options of {@link Device.create}. */
export type DeviceOptions = BackendOptions;

/** Options for new tensors. */
export interface TensorOptions {
  /** Whether gradients should flow to this tensor (a leaf such as a parameter). */
  requiresGrad?: boolean;
}

/** A seeded normal generator (splitmix32 + Box-Muller), so runs are reproducible. */
export function seededRandom(seed: number): { uniform(): number; normal(): number } {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return (z + 0.5) / 4294967296;
  };
  let spare: number | null = null;
  const normal = () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
  return { uniform, normal };
}

/** A GPU device and the factory of tensors on it. */
export class Device {
  /** Kernels, buffer pool, pipeline cache and command recorder. */
  readonly backend: Backend;

  private constructor(backend: Backend) {
    this.backend = backend;
  }

  /**
   * Open the best WebGPU adapter (a real GPU if there is one, else a CPU rasterizer such as Mesa's
   * llvmpipe) with the adapter's own limits. Throws a message saying what to install when none.
   */
  static async create(options: DeviceOptions = {}): Promise<Device> {
    return new Device(await Backend.create(options));
  }

  /** The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  get adapterName(): string {
    return this.backend.adapterName;
  }

  /** The WebGPU backend Deno was asked for (DENO_WEBGPU_BACKEND) or "auto". */
  get backendName(): string {
    return this.backend.backendName;
  }

  /** Memory and dispatch counters: bytesInUse, bytesAllocated, submits, dispatches, ... */
  stats(): ReturnType<Backend["stats"]> {
    return this.backend.stats();
  }

  /** Allocate an uninitialized tensor. */
  empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
    const size = shapeSize(shape);
    const bytes = size * 4;
    if (bytes > this.backend.maxBindingBytes) {
      throw new Error(
        `tensor [${shape.join(", ")}] needs ${bytes} bytes, above this adapter's largest ` +
          `storage binding (${this.backend.maxBindingBytes} bytes): use a smaller batch`,
      );
    }
    const storage = new Storage(this, this.backend.pool.acquire(Math.max(bytes, 4)));
    return new Tensor(this, storage, shape, options.requiresGrad ?? false);
  }

  /**
   * A tensor from CPU data (copied). `shape` defaults to [data.length]. Non-finite values are an
   * error, since they would poison training silently.
   */
  tensor(
    data: ArrayLike<number>,
    shape: readonly number[] = [data.length],
    options: TensorOptions = {},
  ): Tensor {
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new Error(
        `device.tensor: ${data.length} values do not fill shape [${shape.join(", ")}] (${size})`,
      );
    }
    const values = data instanceof Float32Array ? data : Float32Array.from(data);
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        throw new Error(`device.tensor: value ${i} is ${values[i]} (only finite numbers allowed)`);
      }
    }
    const t = this.empty(shape, options);
    if (size > 0) this.backend.write(t.buffer, values);
    return t;
  }

  /** A tensor filled with `value`. */
  full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
    const t = this.empty(shape, options);
    ops.fill(this.backend, t.buffer, t.size, value);
    return t;
  }

  /** A tensor of zeros. */
  zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return this.full(shape, 0, options);
  }

  #zeroStorages = new Map<number, Storage>();

  /**
   * A tensor of zeros sharing one buffer, filled once, with every other such tensor of its size:
   * for results known to be zero every time (a conv bias's gradient before a training-mode batch
   * norm) without a fill per use. It must never be written (no op here writes its inputs).
   */
  sharedZeros(shape: readonly number[]): Tensor {
    const size = shapeSize(shape);
    let storage = this.#zeroStorages.get(size);
    if (!storage) {
      const zeros = this.zeros([size]);
      storage = zeros.storage.retain();
      zeros.dispose();
      this.#zeroStorages.set(size, storage);
    }
    return new Tensor(this, storage.retain(), shape);
  }

  /** A tensor of ones. */
  ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return this.full(shape, 1, options);
  }

  /** Standard normal samples from a seeded generator (reproducible). */
  randn(shape: readonly number[], seed: number, options: TensorOptions = {}): Tensor {
    const random = seededRandom(seed);
    const data = new Float32Array(shapeSize(shape));
    for (let i = 0; i < data.length; i++) data[i] = random.normal();
    return this.tensor(data, shape, options);
  }

  /** Uniform samples in [low, high) from a seeded generator. */
  rand(
    shape: readonly number[],
    seed: number,
    low = 0,
    high = 1,
    options: TensorOptions = {},
  ): Tensor {
    const random = seededRandom(seed);
    const data = new Float32Array(shapeSize(shape));
    for (let i = 0; i < data.length; i++) data[i] = low + (high - low) * random.uniform();
    return this.tensor(data, shape, options);
  }

  /** Submit all recorded GPU work now (it is otherwise submitted at the next readback). */
  flush(): void {
    this.backend.flush();
  }

  /** Wait until the GPU has finished everything submitted. */
  sync(): Promise<void> {
    return this.backend.sync();
  }

  /** Release cached free GPU buffers. */
  trim(): void {
    this.backend.trim();
  }

  /** Destroy the underlying GPU device. */
  destroy(): void {
    this.backend.destroy();
  }
}

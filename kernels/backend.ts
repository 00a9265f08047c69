/**
 * The GPU backend: adapter and device set-up, the buffer pool, the pipeline cache and the command
 * recorder. It knows nothing about tensors or autograd; launchers in kernels/ops.ts record
 * dispatches through it.
 */

import { BufferPool, type PoolStats } from "./pool.ts";
import { envVar } from "./env.ts";

/**
 * How a kernel binds one buffer: read-only or read-write storage, or a uniform-buffer operand
 * (`var<uniform>`, at most maxUniformBufferBindingSize bytes at a 256-byte aligned offset; CPU
 * rasterizers read uniform operands much faster than storage). The uniform block, if any, is
 * always the last binding.
 */
export type BindingKind = "read" | "readWrite" | "uniform";

/** A compiled-on-demand compute kernel: WGSL plus its binding layout. */
export interface KernelSource {
  /** Cache key: kernel family name plus the specialization flags. */
  readonly key: string;
  /** Full WGSL module with an entry point named `main`. */
  readonly code: string;
  /** Storage bindings 0..n-1 in order; binding n is the uniform block when `uniforms` is set. */
  readonly bindings: readonly BindingKind[];
  /** Whether the kernel declares a uniform block at binding `bindings.length`. */
  readonly uniforms: boolean;
}

/** A buffer range bound to one storage binding. */
export interface BufferBinding {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

/** Options of {@link Backend.create}. */
export interface BackendOptions {
  /** Submit after every dispatch and copy (debugging; results must not change). */
  flushEveryOp?: boolean;
  /** Use this adapter instead of requesting one. */
  adapter?: GPUAdapter;
  /** Adapter power preference; default "high-performance" so a real GPU beats a CPU rasterizer. */
  powerPreference?: GPUPowerPreference;
}

/** Limits we request from the adapter: the adapter's own values, not the spec minimums. */
const REQUESTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxUniformBufferBindingSize",
  "maxBindGroups",
] as const;

const UNIFORM_CHUNK_BYTES = 64 * 1024;
/** Bind groups kept for reuse (the cache is dropped whole when it reaches this size). */
const MAX_CACHED_BIND_GROUPS = 8192;
/** Submit early once this many dispatches are recorded, to bound driver-side command memory. */
const MAX_DISPATCHES_PER_SUBMIT = 8192;
/** Submit early once this many bytes of released buffers wait for a submit before reuse. */
const MAX_PARKED_BYTES = 512 * 1024 * 1024;

/** Thrown for GPU validation errors, device loss and missing adapters. */
export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

interface UniformChunk {
  buffer: GPUBuffer;
  data: Uint8Array;
  used: number;
}

/** Device, pool, pipeline cache and recorder in one object. */
export class Backend {
  /** The WebGPU device. */
  readonly device: GPUDevice;
  /** Adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "NVIDIA H100". */
  readonly adapterName: string;
  /** True for software adapters such as llvmpipe. */
  readonly isFallbackAdapter: boolean;
  /**
   * A CPU rasterizer (llvmpipe, lavapipe, SwiftShader, or any fallback adapter): its threads are
   * SIMD lanes of CPU threads, so register spills are cheap and kernels pick larger register tiles;
   * its fixed kernel defaults are the rules measured there.
   */
  readonly isCpuRasterizer: boolean;
  /** Buffer pool shared by all tensors of this device. */
  readonly pool: BufferPool;
  /** Submit after every dispatch and copy when true. */
  flushEveryOp: boolean;
  /** Reuse bind groups of identical buffer bindings (default true; benchmarks compare). */
  cacheBindGroups = true;

  readonly #pipelines = new Map<
    string,
    { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }
  >();
  readonly #uniformAlign: number;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #dispatchesInEncoder = 0;
  #uniformChunks: UniformChunk[] = [];
  #freeUniformBuffers: GPUBuffer[] = [];
  #errors: string[] = [];
  #lost: string | null = null;
  #submits = 0;
  #dispatches = 0;
  #profile: { querySet: GPUQuerySet; keys: string[]; capacity: number; detail: boolean } | null =
    null;
  readonly #bindGroups = new Map<string, GPUBindGroup>();
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 0;
  #bindGroupsCreated = 0;

  private constructor(adapter: GPUAdapter, device: GPUDevice, flushEveryOp: boolean) {
    this.device = device;
    const info = adapter.info;
    this.adapterName = info.description || info.device || info.vendor || "unknown adapter";
    this.isFallbackAdapter = Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter);
    this.isCpuRasterizer = this.isFallbackAdapter ||
      /llvmpipe|lavapipe|swiftshader/i.test(this.adapterName);
    this.pool = new BufferPool(device);
    this.flushEveryOp = flushEveryOp;
    this.#uniformAlign = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
    // Uncaptured errors are otherwise dropped silently: keep them and throw at the next sync point.
    device.addEventListener("uncapturederror", (event) => {
      this.#errors.push((event as GPUUncapturedErrorEvent).error.message);
    });
    device.lost.then((info) => {
      this.#lost = `${info.reason}: ${info.message}`;
    });
  }

  /** Request an adapter and a device with the adapter's own limits. */
  static async create(options: BackendOptions = {}): Promise<Backend> {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new GpuError(
        "WebGPU is not available in this runtime. Run with Deno 2.x (WebGPU is built in).",
      );
    }
    const adapter = options.adapter ?? await navigator.gpu.requestAdapter({
      powerPreference: options.powerPreference ?? "high-performance",
    });
    if (!adapter) {
      throw new GpuError(
        "No WebGPU adapter found. On a machine without a GPU install Mesa's software Vulkan " +
          "driver (Debian/Ubuntu: `apt-get install -y mesa-vulkan-drivers`), or unset " +
          "DENO_WEBGPU_BACKEND so Deno can fall back to OpenGL (llvmpipe).",
      );
    }
    const requiredLimits: Record<string, number> = {};
    for (const name of REQUESTED_LIMITS) {
      const value = (adapter.limits as unknown as Record<string, number>)[name];
      if (typeof value === "number") requiredLimits[name] = value;
    }
    const requiredFeatures: GPUFeatureName[] = [];
    if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    return new Backend(adapter, device, options.flushEveryOp ?? false);
  }

  /** Which backend Deno uses ("vulkan", "gl", ...), from DENO_WEBGPU_BACKEND when set. */
  get backendName(): string {
    return envVar("DENO_WEBGPU_BACKEND") ?? "auto";
  }

  /** Largest uniform-buffer binding in bytes (64 KiB on most adapters). */
  get maxUniformBindingBytes(): number {
    return this.device.limits.maxUniformBufferBindingSize;
  }

  /** Alignment of uniform-buffer binding offsets in bytes. */
  get uniformOffsetAlignment(): number {
    return this.#uniformAlign;
  }

  /** Largest storage binding in bytes. */
  get maxBindingBytes(): number {
    return this.device.limits.maxStorageBufferBindingSize;
  }

  /** Pool counters plus submit, dispatch, pipeline and bind-group counts. */
  stats(): PoolStats & {
    submits: number;
    dispatches: number;
    pipelines: number;
    bindGroupsCreated: number;
  } {
    return {
      ...this.pool.stats(),
      submits: this.#submits,
      dispatches: this.#dispatches,
      pipelines: this.#pipelines.size,
      bindGroupsCreated: this.#bindGroupsCreated,
    };
  }

  /** The cached pipeline for a kernel, compiling it on first use. */
  pipeline(kernel: KernelSource): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    const cached = this.#pipelines.get(kernel.key);
    if (cached) return cached;
    const entries: GPUBindGroupLayoutEntry[] = kernel.bindings.map((kind, binding) => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: {
        type: kind === "read" ? "read-only-storage" : kind === "uniform" ? "uniform" : "storage",
      },
    }));
    if (kernel.uniforms) {
      entries.push({
        binding: kernel.bindings.length,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform" },
      });
    }
    this.device.pushErrorScope("validation");
    const layout = this.device.createBindGroupLayout({ label: kernel.key, entries });
    const module = this.device.createShaderModule({ label: kernel.key, code: kernel.code });
    const pipeline = this.device.createComputePipeline({
      label: kernel.key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    // The error scope resolves asynchronously; remember failures and report at the next sync.
    this.device.popErrorScope().then((error) => {
      if (error) this.#errors.push(`kernel ${kernel.key}: ${error.message}`);
    });
    const entry = { pipeline, layout };
    this.#pipelines.set(kernel.key, entry);
    return entry;
  }

  readonly #writeVersions = new WeakMap<GPUBuffer, number>();
  #writeClock = 0;

  /**
   * A number that changes whenever a write to `buffer` is recorded (a dispatch binding it
   * read-write, an upload, a copy into it): data derived from the buffer stays valid while it is
   * unchanged. 0 for a buffer never written through this backend.
   */
  writeVersion(buffer: GPUBuffer): number {
    return this.#writeVersions.get(buffer) ?? 0;
  }

  #noteWrite(buffer: GPUBuffer): void {
    this.#writeVersions.set(buffer, ++this.#writeClock);
  }

  /** Upload bytes into a buffer (ordered before the next submit). */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.#noteWrite(buffer);
    this.device.queue.writeBuffer(
      buffer,
      byteOffset,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  /** Record one dispatch. `uniforms` holds the kernel's uniform block (4-byte scalars). */
  dispatch(
    kernel: KernelSource,
    buffers: readonly (GPUBuffer | BufferBinding)[],
    uniforms: ArrayBufferView | null,
    workgroups: readonly [number, number?, number?],
  ): void {
    if (buffers.length !== kernel.bindings.length) {
      throw new GpuError(
        `kernel ${kernel.key} takes ${kernel.bindings.length} buffers, got ${buffers.length}`,
      );
    }
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const maxPerDim = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxPerDim || y > maxPerDim || z > maxPerDim) {
      throw new GpuError(`kernel ${kernel.key}: grid [${x}, ${y}, ${z}] exceeds ${maxPerDim}`);
    }
    const { pipeline, layout } = this.pipeline(kernel);
    let cacheKey = kernel.key;
    const entries: GPUBindGroupEntry[] = buffers.map((b, binding) => {
      const range = "buffer" in b && !(b instanceof GPUBuffer) ? b : { buffer: b as GPUBuffer };
      if (kernel.bindings[binding] === "readWrite") this.#noteWrite(range.buffer);
      const offset = range.offset ?? 0;
      cacheKey += `|${this.#bufferId(range.buffer)}:${offset}:${range.size ?? ""}`;
      return { binding, resource: { buffer: range.buffer, offset, size: range.size } };
    });
    if (kernel.uniforms) {
      if (!uniforms) throw new GpuError(`kernel ${kernel.key} needs uniforms`);
      const slot = this.#uniformSlot(uniforms);
      cacheKey += `|${this.#bufferId(slot.buffer)}:${slot.offset}:${slot.size}`;
      entries.push({ binding: buffers.length, resource: slot });
    }
    const bindGroup = this.#bindGroup(cacheKey, layout, entries);
    const profile = this.#profile;
    if (profile && profile.keys.length < profile.capacity) {
      // Profiling: one timestamped pass per dispatch.
      this.#endPass();
      const i = profile.keys.length;
      profile.keys.push(profile.detail ? `${kernel.key} [${x},${y},${z}]` : kernel.key);
      const pass = this.#commandEncoder().beginComputePass({
        timestampWrites: {
          querySet: profile.querySet,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    } else {
      const pass = this.#computePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
    }
    this.#dispatchesInEncoder++;
    this.#dispatches++;
    if (
      this.flushEveryOp || this.#dispatchesInEncoder >= MAX_DISPATCHES_PER_SUBMIT ||
      this.pool.parkedBytes >= MAX_PARKED_BYTES
    ) {
      this.flush();
    }
  }

  /**
   * The bind group of these entries, from the cache when the same kernel saw the same buffer
   * ranges before: a training step binds the same pooled buffers (and uniform-arena slots) step
   * after step, and createBindGroup costs ~20 us of CPU per dispatch.
   */
  #bindGroup(key: string, layout: GPUBindGroupLayout, entries: GPUBindGroupEntry[]): GPUBindGroup {
    if (!this.cacheBindGroups) return this.device.createBindGroup({ layout, entries });
    const cached = this.#bindGroups.get(key);
    if (cached) return cached;
    // Bounded: entries keep their buffers reachable (unpooled buffers would otherwise pile up).
    if (this.#bindGroups.size >= MAX_CACHED_BIND_GROUPS) this.#bindGroups.clear();
    const bindGroup = this.device.createBindGroup({ layout, entries });
    this.#bindGroupsCreated++;
    this.#bindGroups.set(key, bindGroup);
    return bindGroup;
  }

  /** A number naming a buffer object for bind-group cache keys. */
  #bufferId(buffer: GPUBuffer): number {
    let id = this.#bufferIds.get(buffer);
    if (id === undefined) {
      id = this.#nextBufferId++;
      this.#bufferIds.set(buffer, id);
    }
    return id;
  }

  /** Record a buffer-to-buffer copy. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    this.#noteWrite(dst);
    this.#endPass();
    this.#commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    if (this.flushEveryOp) this.flush();
  }

  /** True when the device supports timestamp queries (needed by {@link startProfile}). */
  get canProfile(): boolean {
    return this.device.features.has("timestamp-query");
  }

  /**
   * Start timing every dispatch (one timestamped compute pass each, at most `capacity / 2`
   * dispatches) until {@link stopProfile}; with `detail` each key also carries its grid. Profiling only: it changes how work is batched.
   */
  startProfile(capacity = 4096, detail = false): void {
    capacity = Math.min(capacity, 4096); // WebGPU's limit per query set
    if (!this.canProfile) throw new GpuError("timestamp-query is not supported by this device");
    this.#profile?.querySet.destroy();
    this.#endPass();
    const querySet = this.device.createQuerySet({ type: "timestamp", count: capacity });
    this.#profile = { querySet, keys: [], capacity: Math.floor(capacity / 2), detail };
  }

  /** Stop profiling; returns each profiled dispatch's kernel key and GPU time in milliseconds. */
  async stopProfile(): Promise<{ key: string; ms: number }[]> {
    const profile = this.#profile;
    if (!profile) return [];
    this.#profile = null;
    const n = profile.keys.length;
    if (n === 0) {
      profile.querySet.destroy();
      return [];
    }
    const bytes = 16 * n;
    const resolved = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.#endPass();
    this.#commandEncoder().resolveQuerySet(profile.querySet, 0, 2 * n, resolved, 0);
    const data = new BigUint64Array(await this.read(resolved, bytes));
    resolved.destroy();
    profile.querySet.destroy();
    const period = 1e-6; // timestamps are in nanoseconds
    return profile.keys.map((key, i) => ({
      key,
      ms: Number(data[2 * i + 1] - data[2 * i]) * period,
    }));
  }

  /** Submit everything recorded so far; released buffers become reusable. */
  flush(): void {
    this.#throwPendingErrors();
    this.#endPass();
    const encoder = this.#encoder;
    if (encoder) {
      for (const chunk of this.#uniformChunks) {
        this.device.queue.writeBuffer(
          chunk.buffer,
          0,
          chunk.data.buffer as ArrayBuffer,
          0,
          chunk.used,
        );
      }
      this.device.queue.submit([encoder.finish()]);
      this.#submits++;
      this.#encoder = null;
      this.#dispatchesInEncoder = 0;
      // Reversed, so the next submit takes the chunks in the same order (bind-group cache hits).
      for (const chunk of this.#uniformChunks.reverse()) {
        this.#freeUniformBuffers.push(chunk.buffer);
      }
      this.#uniformChunks = [];
    }
    this.pool.recycle();
  }

  /** Copy `bytes` bytes of a buffer back to the CPU. Submits pending work. */
  async read(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.copy(buffer, offset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (error) {
      staging.destroy();
      this.#throwPendingErrors();
      throw new GpuError(`readback failed: ${(error as Error).message}`);
    }
    const result = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.#throwPendingErrors();
    return result;
  }

  /** Wait until the GPU has finished all submitted work (flushes first). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.#throwPendingErrors();
  }

  /** Release GPU memory held by the pool's free lists. */
  trim(): void {
    // Cached bind groups may name the buffers destroyed here.
    this.#bindGroups.clear();
    this.pool.trim();
    for (const b of this.#freeUniformBuffers) b.destroy();
    this.#freeUniformBuffers = [];
  }

  /** Destroy the device; the backend is unusable afterwards. */
  destroy(): void {
    this.trim();
    this.device.destroy();
  }

  #commandEncoder(): GPUCommandEncoder {
    if (!this.#encoder) this.#encoder = this.device.createCommandEncoder();
    return this.#encoder;
  }

  #computePass(): GPUComputePassEncoder {
    if (!this.#pass) this.#pass = this.#commandEncoder().beginComputePass();
    return this.#pass;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  /** A slot in this submit's uniform arena, written in one `writeBuffer` per chunk at flush. */
  #uniformSlot(data: ArrayBufferView): GPUBufferBinding {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    let chunk = this.#uniformChunks[this.#uniformChunks.length - 1];
    if (!chunk || chunk.used + size > UNIFORM_CHUNK_BYTES) {
      const buffer = this.#freeUniformBuffers.pop() ?? this.device.createBuffer({
        size: UNIFORM_CHUNK_BYTES,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      chunk = { buffer, data: new Uint8Array(UNIFORM_CHUNK_BYTES), used: 0 };
      this.#uniformChunks.push(chunk);
    }
    const offset = chunk.used;
    chunk.data.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    chunk.used = Math.ceil((offset + size) / this.#uniformAlign) * this.#uniformAlign;
    return { buffer: chunk.buffer, offset, size };
  }

  #throwPendingErrors(): void {
    if (this.#lost) throw new GpuError(`GPU device lost (${this.#lost})`);
    if (this.#errors.length) {
      const messages = this.#errors.splice(0);
      throw new GpuError(`GPU error: ${messages.join("\n")}`);
    }
  }
}

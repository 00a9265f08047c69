/**
 * Where the 3x3 forward's time goes on a CPU rasterizer: a standalone probe (raw WebGPU, not an
 * engine kernel) that times the ubo forward's structure (kernels/wgsl/conv_ubo.ts: J output
 * channels x R rows x P column quads per thread, weights in a uniform buffer) with one operand
 * path changed at a time, interleaved in one process:
 *
 * - `storage`: the engine's kernel: x from a storage buffer (per-lane loads).
 * - `texture`: x from an rgba32float texture_2d_array (layer n, row c * H + h) via textureLoad.
 * - `weights-fixed`: every input channel reads the first channel's weights at a constant offset,
 *   so the uniform loads need no per-lane address and can leave the loop. Its results are wrong
 *   (reported, not checked): it bounds what cheaper weight loads could gain.
 *
 * Every correct variant is checked against a float64 reference on 400 outputs (borders included).
 * The row loads are the engine's (conv_ubo.ts's tileRowLoads); the texture variant passes its own
 * load.
 *
 *   deno run -A bench/conv_probe.ts [--batch 64] [--channels 32] [--size 64]
 *     [--tiles "8,4,2;8,2,1"] [--rounds 2]
 */

import { tileRowLoads, tileRowTap } from "../kernels/wgsl/conv_ubo.ts";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const N = Number(flag("batch") ?? 64);
const C = Number(flag("channels") ?? 32);
const O = C;
const H = Number(flag("size") ?? 64);
const W = H;
const tiles = (flag("tiles") ?? "8,4,2;8,2,1").split(";").map((s) => s.split(",").map(Number));
const rounds = Number(flag("rounds") ?? 2);
const quadsW = W / 4;
type Variant = "storage" | "texture" | "weights-fixed";

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("no WebGPU adapter");
const limits = adapter.limits;
const device = await adapter.requestDevice({
  requiredLimits: {
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
    maxBufferSize: limits.maxBufferSize,
    maxTextureArrayLayers: limits.maxTextureArrayLayers,
  },
});
if (N > limits.maxTextureArrayLayers || C * H > limits.maxTextureDimension2D) {
  throw new Error(`batch ${N} or channels x size ${C * H} exceed the adapter's texture limits`);
}

const x = new Float32Array(N * C * H * W).map((_, i) => Math.sin(i * 12.9898) * 0.5);
const w = new Float32Array(O * C * 9).map((_, i) => Math.cos(i * 7.1) * 0.3);
function reference(n: number, o: number, h: number, col: number): number {
  let sum = 0;
  for (let c = 0; c < C; c++) {
    for (let kh = 0; kh < 3; kh++) {
      for (let kw = 0; kw < 3; kw++) {
        const ih = h + kh - 1, iw = col + kw - 1;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
        sum += x[((n * C + c) * H + ih) * W + iw] * w[((o * C + c) * 3 + kh) * 3 + kw];
      }
    }
  }
  return sum;
}

function buffer(
  data: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer> | number,
  usage: number,
): GPUBuffer {
  const size = typeof data === "number" ? data : data.byteLength;
  const made = device.createBuffer({
    size,
    usage: usage | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  });
  if (typeof data !== "number") device.queue.writeBuffer(made, 0, data);
  return made;
}
const xBuffer = buffer(x, GPUBufferUsage.STORAGE);
const yBuffer = buffer(N * O * H * W * 4, GPUBufferUsage.STORAGE);
const xTexture = device.createTexture({
  size: [quadsW, C * H, N],
  format: "rgba32float",
  usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
});
device.queue.writeTexture({ texture: xTexture }, x, {
  bytesPerRow: quadsW * 16,
  rowsPerImage: C * H,
}, [quadsW, C * H, N]);

/** Weights of each block of J output channels as [ic][tap][j], one 64 KiB window per block. */
function packedWeights(J: number): GPUBuffer {
  const windowFloats = 16384;
  if (C * 9 * J > windowFloats) throw new Error("the weights of one block exceed 64 KiB");
  const packed = new Float32Array((O / J) * windowFloats);
  for (let block = 0; block < O / J; block++) {
    for (let c = 0; c < C; c++) {
      for (let tap = 0; tap < 9; tap++) {
        for (let j = 0; j < J; j++) {
          packed[block * windowFloats + (c * 9 + tap) * J + j] =
            w[((block * J + j) * C + c) * 9 + tap];
        }
      }
    }
  }
  return buffer(packed, GPUBufferUsage.UNIFORM);
}

function kernelSource(variant: Variant, J: number, R: number, P: number): string {
  const accs: string[] = [], stores: string[] = [], body: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let j = 0; j < J; j++) {
        accs.push(`var a${r}_${p}_${j} = vec4f(0.0);`);
        stores.push(
          `if (oh + ${r}u < params.H) { store(n, oc0 + ${j}u, oh + ${r}u, ow0 + ${
            4 * p
          }u, a${r}_${p}_${j}); }`,
        );
      }
    }
  }
  for (let k = 0; k < R + 2; k++) {
    const textureLoad = (p: number, _c: string, ih: string) =>
      `textureLoad(xt, vec2i(i32(quadW) + ${p}, i32(ic * params.H) + ${ih}), i32(n), 0)`;
    const rowLoads = variant === "texture"
      ? tileRowLoads("oh", "base", k - 1, P, textureLoad)
      : tileRowLoads("oh", "base", k - 1, P);
    body.push(`{`, ...rowLoads.map((line) => `  ${line}`));
    for (let r = 0; r < R; r++) {
      const kh = k - r;
      if (kh < 0 || kh > 2) continue;
      for (let kw = 0; kw < 3; kw++) {
        for (let i = 0; i < J / 4; i++) {
          body.push(`  let w${r}_${kw}_${i} = w[wRow + ${(kh * 3 + kw) * J / 4 + i}u];`);
        }
        for (let p = 0; p < P; p++) {
          const tap = tileRowTap(kw, p);
          for (let j = 0; j < J; j++) {
            const acc = `a${r}_${p}_${j}`;
            body.push(`  ${acc} = fma(vec4f(w${r}_${kw}_${j >> 2}[${j & 3}]), ${tap}, ${acc});`);
          }
        }
      }
    }
    body.push(`}`);
  }
  const input = variant === "texture"
    ? "@group(0) @binding(0) var xt: texture_2d_array<f32>;"
    : "@group(0) @binding(0) var<storage, read> x: array<vec4f>;";
  return `${input}
@group(0) @binding(1) var<uniform> w: array<vec4f, 4096>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
struct Params { batch: u32, inC: u32, H: u32, W: u32, outC: u32, quadsW: u32, block: u32, pad: u32 }
@group(0) @binding(3) var<uniform> params: Params;
fn store(n: u32, oc: u32, oh: u32, ow0: u32, v: vec4f) {
  let at = ((n * params.outC + oc) * params.H + oh) * params.W + ow0;
  y[at] = v.x;
  y[at + 1u] = v.y;
  y[at + 2u] = v.z;
  y[at + 3u] = v.w;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x * 64u + lid;
  let groupsW = params.quadsW / ${P}u;
  let rowGroups = (params.H + ${R - 1}u) / ${R}u;
  if (t >= groupsW * rowGroups * params.batch) { return; }
  let rest = t / groupsW;
  let quadW = (t % groupsW) * ${P}u;
  let oh = (rest % rowGroups) * ${R}u;
  let n = rest / rowGroups;
  let ow0 = quadW * 4u;
  let oc0 = params.block * ${J}u;
  let hasLeft = quadW > 0u;
  let hasRight = quadW + ${P}u < params.quadsW;
  ${accs.join("\n  ")}
  var base = (n * params.inC * params.H + oh) * params.quadsW + quadW;
  for (var ic = 0u; ic < params.inC; ic++) {
    let wRow = ${variant === "weights-fixed" ? "0u" : `ic * ${9 * J / 4}u`};
    ${body.join("\n    ")}
    base += params.H * params.quadsW;
  }
  ${stores.join("\n  ")}
}`;
}

async function time(variant: Variant, J: number, R: number, P: number): Promise<string> {
  const module = device.createShaderModule({ code: kernelSource(variant, J, R, P) });
  for (const m of (await module.getCompilationInfo()).messages) {
    if (m.type === "error") throw new Error(`${variant}: ${m.message} (line ${m.lineNum})`);
  }
  const stage = GPUShaderStage.COMPUTE;
  const layout = device.createBindGroupLayout({
    entries: [
      variant === "texture"
        ? {
          binding: 0,
          visibility: stage,
          texture: { sampleType: "unfilterable-float", viewDimension: "2d-array" },
        }
        : { binding: 0, visibility: stage, buffer: { type: "read-only-storage" } },
      { binding: 1, visibility: stage, buffer: { type: "uniform" } },
      { binding: 2, visibility: stage, buffer: { type: "storage" } },
      { binding: 3, visibility: stage, buffer: { type: "uniform" } },
    ],
  });
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: "main" },
  });
  const weights = packedWeights(J);
  const view = xTexture.createView({ dimension: "2d-array" });
  const groups: GPUBindGroup[] = [];
  for (let block = 0; block < O / J; block++) {
    const params = buffer(
      new Uint32Array([N, C, H, W, O, quadsW, block, 0]),
      GPUBufferUsage.UNIFORM,
    );
    groups.push(device.createBindGroup({
      layout,
      entries: [
        { binding: 0, resource: variant === "texture" ? view : { buffer: xBuffer } },
        { binding: 1, resource: { buffer: weights, offset: block * 65536, size: 65536 } },
        { binding: 2, resource: { buffer: yBuffer } },
        { binding: 3, resource: { buffer: params } },
      ],
    }));
  }
  const threads = N * Math.ceil(H / R) * (quadsW / P);
  const run = async (reps: number) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    for (let i = 0; i < reps; i++) {
      for (const group of groups) {
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(Math.ceil(threads / 64));
      }
    }
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run(1);
  let check = "results not checked (wrong by design)";
  if (variant !== "weights-fixed") {
    const readback = device.createBuffer({
      size: yBuffer.size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(yBuffer, 0, readback, 0, yBuffer.size);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const y = new Float32Array(readback.getMappedRange().slice(0));
    readback.destroy();
    let maxError = 0;
    for (let k = 0; k < 400; k++) {
      const n = (k * 7) % N, o = (k * 5) % O;
      const h = [0, H - 1, (k * 13) % H][k % 3];
      const col = [W - 1, 0, (k * 11) % W, (k * 3) % W, (k * 17) % W][k % 5];
      maxError = Math.max(
        maxError,
        Math.abs(y[((n * O + o) * H + h) * W + col] - reference(n, o, h, col)),
      );
    }
    if (maxError > 1e-4) throw new Error(`${variant} J${J} ${R}x${P}: max error ${maxError}`);
    check = `max error ${maxError.toExponential(1)}`;
  }
  // The fence floor (an empty submit + wait) is ~11 ms on llvmpipe; time ~3 passes per submit.
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await run(3);
    times.push((performance.now() - started - 11) / 3);
  }
  times.sort((a, b) => a - b);
  const ms = times[1];
  const gflops = 2 * N * O * H * W * C * 9 / ms / 1e6;
  return `${variant.padEnd(14)} J ${J}, ${R} x ${P}: ${ms.toFixed(1).padStart(7)} ms ${
    gflops.toFixed(1).padStart(6)
  } GFLOP/s  (${check})`;
}

console.log(`${adapter.info?.description || "adapter"}: conv 3x3 ${C}->${O} @${H}, batch ${N}`);
for (let round = 0; round < rounds; round++) {
  for (const [J, R, P] of tiles) {
    for (const variant of ["storage", "texture", "weights-fixed"] as const) {
      console.log(`round ${round + 1}  ${await time(variant, J, R, P)}`);
    }
  }
}

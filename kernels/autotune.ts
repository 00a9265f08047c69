/**
 * Conv variant autotuner: times the applicable variants of each pass for a shape on this adapter,
 * keeps the fastest per adapter + pass + shape, and caches the choices on disk in
 * `.cache/autotune-<adapter>.json` under the project root (gitignored).
 *
 * Launchers record synchronously and cannot wait for the GPU, so tuning is an explicit async step:
 * {@link autotuneConv} with the conv geometries of a model. The training loops capture the shapes
 * of their first step ({@link captureConvShapes}) and tune them after it; the benchmark tunes its
 * layer shapes up front.
 * Launchers then read the cached choice ({@link tunedConvVariant}); shapes never tuned use the
 * fixed default of kernels/ops.ts. `VA_AUTOTUNE=0` (or {@link setAutotuneEnabled}) disables
 * both the tuning and the cache, so every launch uses the fixed default (deterministic runs).
 */

import type { Backend } from "./backend.ts";
import * as ops from "./ops.ts";
import { envVar } from "./env.ts";

/**
 * The candidates of a pass and shape on `b`: those that apply, less the gemm ones on CPU rasterizers
 * (workgroup-memory tiles run as per-lane scalar loops there: not worth the timing).
 */
function candidatesFor(b: Backend, pass: ops.ConvPass, g: ops.Conv2dGeometry): ops.ConvVariant[] {
  return ops.CONV_VARIANTS.filter((variant) =>
    (!ops.isGemmVariant(variant) || !b.isCpuRasterizer) &&
    ops.conv2dVariant(b, pass, g, { variant }) === variant
  );
}

interface TunerState {
  enabled: boolean;
  loaded: boolean;
  path: string | null;
  choices: Map<string, { variant: ops.ConvVariant; ms: Record<string, number> }>;
  /** Conv shapes launched since captureConvShapes started, by shape key. */
  captured: Map<string, ops.Conv2dGeometry> | null;
}

const states = new WeakMap<Backend, TunerState>();
/** Timing rounds per variant (the median is kept). */
const TUNING_ROUNDS = 3;
/**
 * A variant slower than this many times the fastest in the first round is not timed again: the
 * machines drift by up to a third between rounds, never by half, and the losers are the slowest to
 * time (on an H200 ubo-any took 268 ms per call where gemm took 3.5).
 */
const PRUNE_FACTOR = 2;
/**
 * Revision of the conv kernels the cached timings were measured with: a cache written by other
 * kernels is ignored (and rewritten at the next tuning), since its choices compared old code. CPU
 * rasterizers and GPUs tune among different candidates (no gemm variants on CPU rasterizers), so
 * each kind has its own: a change that only one kind runs re-times only that kind's caches (on
 * llvmpipe the benchmark's 27 entries took 8.4 minutes to tune before the first round's losers
 * were dropped, {@link PRUNE_FACTOR}; that halved the time of 18 demo-size entries).
 */
export const CPU_KERNELS_REVISION = 15;
/**
 * See {@link CPU_KERNELS_REVISION}: real GPUs' (revision 15: the "gemm-wide" candidate; 16: the
 * gemm kernels' loads unrolled, gemm-wide's quads strided; 17, and CPU 15: the ubo and sub-pixel
 * kernels' multiply-adds grouped by accumulator; 18: the "gemm-flat" candidate).
 */
export const GPU_KERNELS_REVISION = 18;

/** The kernel revision of `b`'s kind (CPU rasterizer or GPU). */
export function kernelsRevision(b: Backend): number {
  return b.isCpuRasterizer ? CPU_KERNELS_REVISION : GPU_KERNELS_REVISION;
}

/** VA_AUTOTUNE, or undefined when unset or unreadable (no env permission: the defaults). */
function autotuneEnv(): string | undefined {
  return envVar("VA_AUTOTUNE");
}

function envEnabled(): boolean {
  return autotuneEnv() !== "0";
}

function cachePath(b: Backend): string | null {
  try {
    const root = new URL("../", import.meta.url);
    if (root.protocol !== "file:") return null;
    const name = b.adapterName.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
    return `${decodeURIComponent(root.pathname)}.cache/autotune-${name}.json`;
  } catch {
    return null;
  }
}

function state(b: Backend): TunerState {
  let s = states.get(b);
  if (!s) {
    s = {
      enabled: envEnabled(),
      loaded: false,
      path: cachePath(b),
      choices: new Map(),
      captured: null,
    };
    states.set(b, s);
  }
  if (s.enabled && !s.loaded) {
    s.loaded = true;
    try {
      if (s.path) {
        const json = JSON.parse(Deno.readTextFileSync(s.path));
        if (json.revision !== kernelsRevision(b)) throw new Error("stale cache");
        for (const [key, value] of Object.entries(json.choices ?? {})) {
          const entry = value as { variant: ops.ConvVariant; ms: Record<string, number> };
          if (ops.CONV_VARIANTS.includes(entry.variant)) s.choices.set(key, entry);
        }
      }
    } catch { /* no cache yet, or no read permission */ }
  }
  return s;
}

/**
 * Whether training loops should tune at a shape's first use on `b`: `VA_AUTOTUNE=1` yes, `=0` no;
 * by default only on real GPUs. On CPU rasterizers (llvmpipe, lavapipe, SwiftShader) the fixed
 * defaults are themselves the rules measured there, and tuning the demo's shapes cost 112 s and
 * gave no faster step (bench/README.md, round 4), so the cached choices are used but no new ones
 * are timed.
 */
export function tuneAtFirstUse(b: Backend): boolean {
  const env = autotuneEnv();
  if (env === "1") return autotuneEnabled(b);
  if (env === "0") return false;
  return autotuneEnabled(b) && !b.isCpuRasterizer;
}

/** Turn the tuner and its cache on or off for one backend (default: on unless VA_AUTOTUNE=0). */
export function setAutotuneEnabled(b: Backend, enabled: boolean): void {
  state(b).enabled = enabled;
}

/** Whether tuned choices are used on this backend. */
export function autotuneEnabled(b: Backend): boolean {
  return state(b).enabled;
}

/** Cache key of a pass and shape. */
export function convKey(pass: ops.ConvPass, g: ops.Conv2dGeometry): string {
  return `${pass}:${g.batch}x${g.inC}x${g.inH}x${g.inW}->${g.outC}x${g.outH}x${g.outW}` +
    `:k${g.kH}x${g.kW}:s${g.stride}:p${g.pad}`;
}

/** The cached choice for a pass and shape, or null (untuned, or tuning disabled). */
export function tunedConvVariant(
  b: Backend,
  pass: ops.ConvPass,
  g: ops.Conv2dGeometry,
): ops.ConvVariant | null {
  const s = state(b);
  if (!s.enabled) return null;
  if (s.captured) {
    const shape = convKey("forward", g).slice("forward:".length);
    if (!s.captured.has(shape)) s.captured.set(shape, { ...g });
  }
  return s.choices.get(convKey(pass, g))?.variant ?? null;
}

/**
 * Start noting the conv shapes launched on `b` (those whose variant is not forced); the returned
 * function stops and gives them, each once. The training loops capture their first step and tune
 * what it used, so the autotuner runs at a shape's first use.
 */
export function captureConvShapes(b: Backend): () => ops.Conv2dGeometry[] {
  const s = state(b);
  const captured = new Map<string, ops.Conv2dGeometry>();
  s.captured = captured;
  return () => {
    if (s.captured === captured) s.captured = null;
    return [...captured.values()];
  };
}

/** Where the choices are cached for `b` (null: memory only). Tests point it at a temp file. */
export function setAutotuneCachePath(b: Backend, path: string | null): void {
  const s = state(b);
  s.path = path;
  s.loaded = false;
  s.choices.clear();
}

/** The timings behind a cached choice (ms per call per variant), for reports. */
export function tunedConvTimings(
  b: Backend,
  pass: ops.ConvPass,
  g: ops.Conv2dGeometry,
): Record<string, number> | null {
  return state(b).choices.get(convKey(pass, g))?.ms ?? null;
}

async function timeOnce(b: Backend, record: () => void, floorMs: number): Promise<number> {
  record(); // warm-up: compiles the pipeline
  await b.sync();
  let t0 = performance.now();
  record();
  await b.sync();
  const once = Math.max(0.05, performance.now() - t0 - floorMs);
  const reps = Math.max(1, Math.min(20, Math.round(150 / once)));
  // A call long enough to be timed alone was timed already.
  if (reps === 1) return once;
  t0 = performance.now();
  for (let i = 0; i < reps; i++) record();
  await b.sync();
  return Math.max(0.001, performance.now() - t0 - floorMs) / reps;
}

/**
 * Time every applicable variant of each pass for each geometry not tuned yet, remember the fastest
 * and save the cache. Returns the number of (pass, shape) entries tuned now. Does nothing when
 * tuning is disabled.
 */
export async function autotuneConv(
  b: Backend,
  geometries: readonly ops.Conv2dGeometry[],
  passes: readonly ops.ConvPass[] = ["forward", "backwardInput", "backwardWeight"],
): Promise<number> {
  const s = state(b);
  if (!s.enabled) return 0;
  await b.sync();
  const t0 = performance.now();
  await b.sync();
  const floorMs = performance.now() - t0;
  let tuned = 0;
  for (const g of geometries) {
    const todo = passes.filter((pass) => {
      if (s.choices.has(convKey(pass, g))) return false;
      return candidatesFor(b, pass, g).length > 1;
    });
    if (!todo.length) continue;
    const xSize = g.batch * g.inC * g.inH * g.inW;
    const wSize = g.outC * g.inC * g.kH * g.kW;
    const ySize = g.batch * g.outC * g.outH * g.outW;
    const x = b.pool.acquire(xSize * 4);
    const w = b.pool.acquire(wSize * 4);
    const y = b.pool.acquire(ySize * 4);
    ops.fill(b, x, xSize, 0.5);
    ops.fill(b, w, wSize, 0.01);
    ops.fill(b, y, ySize, 0.25);
    for (const pass of todo) {
      const variants = candidatesFor(b, pass, g);
      const record = (variant: ops.ConvVariant) => {
        const options = { variant };
        return pass === "forward"
          ? () => ops.conv2dForward(b, x, w, null, y, g, options)
          : pass === "backwardInput"
          ? () => ops.conv2dBackwardInput(b, y, w, x, g, options)
          : () => ops.conv2dBackwardWeight(b, y, x, w, g, options);
      };
      // Shared machines drift: interleave the variants over rounds and keep each one's median.
      const samples = new Map<ops.ConvVariant, number[]>(variants.map((v) => [v, []]));
      const failures = new Map<ops.ConvVariant, string>();
      for (let round = 0; round < TUNING_ROUNDS; round++) {
        const timed = round === 0 ? variants : stillContending(samples, PRUNE_FACTOR);
        for (const variant of timed) {
          if (failures.has(variant)) continue;
          try {
            samples.get(variant)!.push(await timeOnce(b, record(variant), floorMs));
          } catch (error) {
            // A variant this adapter cannot build or run (a driver's limits: on an H200 one
            // register blocking took 69 s to compile and then failed) is left out, not fatal.
            failures.set(variant, (error as Error).message);
          }
        }
      }
      const key = convKey(pass, g);
      for (const [variant, message] of failures) {
        console.warn(
          `autotune: ${variant} failed for ${key} on ${b.adapterName}, left out: ` +
            message.slice(0, 300),
        );
      }
      const choice = fastestVariant(samples, failures);
      if (!choice) {
        throw new Error(`autotune: every variant failed for ${key}: ${[...failures.values()][0]}`);
      }
      s.choices.set(key, choice);
      tuned++;
    }
    for (const buffer of [x, w, y]) b.pool.release(buffer);
    b.flush();
  }
  if (tuned) save(s, b);
  return tuned;
}

/**
 * The variants whose first time is within `factor` of the fastest first time (those timed again
 * after the first round); variants without a time (failed) are left out.
 */
export function stillContending(
  samples: ReadonlyMap<ops.ConvVariant, readonly number[]>,
  factor: number,
): ops.ConvVariant[] {
  const first = [...samples].filter(([, times]) => times.length > 0);
  const best = Math.min(...first.map(([, times]) => times[0]));
  return first.filter(([, times]) => times[0] <= factor * best).map(([variant]) => variant);
}

/**
 * The variant with the lowest median time and every timed variant's median, leaving out those in
 * `failures`; null when none is left.
 */
export function fastestVariant(
  samples: ReadonlyMap<ops.ConvVariant, readonly number[]>,
  failures: ReadonlyMap<ops.ConvVariant, string> = new Map(),
): { variant: ops.ConvVariant; ms: Record<string, number> } | null {
  const ms: Record<string, number> = {};
  for (const [variant, times] of samples) {
    if (failures.has(variant) || times.length === 0) continue;
    ms[variant] = [...times].sort((p, q) => p - q)[Math.floor(times.length / 2)];
  }
  const ranked = Object.entries(ms).sort((a, c) => a[1] - c[1]);
  return ranked.length ? { variant: ranked[0][0] as ops.ConvVariant, ms } : null;
}

function save(s: TunerState, b: Backend): void {
  if (!s.path) return;
  try {
    const dir = s.path.slice(0, s.path.lastIndexOf("/"));
    Deno.mkdirSync(dir, { recursive: true });
    const choices = Object.fromEntries(s.choices);
    Deno.writeTextFileSync(
      s.path,
      JSON.stringify({ adapter: b.adapterName, revision: kernelsRevision(b), choices }, null, 1) +
        "\n",
    );
  } catch { /* read-only checkout or no write permission: keep the choices in memory */ }
}

/**
 * Timing helpers for kernel benchmarks: a kernel's dispatches are recorded many times into one
 * submit, so the ~11 ms submit-and-wait floor of Deno's WebGPU is amortized (and subtracted).
 */

import type { Backend } from "../kernels/backend.ts";

/** One timed measurement. */
export interface Timing {
  /** Milliseconds per call (median over rounds). */
  ms: number;
  /** Calls recorded per submit in each round. */
  reps: number;
}

/** Wall time of an empty submit plus wait (the fence floor), median of a few. */
export async function fenceFloorMs(b: Backend, rounds = 5): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await b.sync();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Median of a list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Time `record` (which records one call's dispatches): one warm-up submit, an estimate from one
 * call, then `rounds` submits of `reps` calls each, sized so a round lasts about `targetMs`.
 */
export async function timeRecorded(
  b: Backend,
  record: () => void,
  floorMs: number,
  { targetMs = 300, rounds = 3, maxReps = 200 } = {},
): Promise<Timing> {
  record();
  await b.sync();
  let t0 = performance.now();
  record();
  await b.sync();
  const once = Math.max(0.01, performance.now() - t0 - floorMs);
  const reps = Math.max(1, Math.min(maxReps, Math.round(targetMs / once)));
  const perCall: number[] = [];
  for (let r = 0; r < rounds; r++) {
    t0 = performance.now();
    for (let i = 0; i < reps; i++) record();
    await b.sync();
    perCall.push(Math.max(0, performance.now() - t0 - floorMs) / reps);
  }
  return { ms: median(perCall), reps };
}

/** Format a number with a fixed number of significant-ish decimals for the table. */
export function fmt(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(digits);
}

/** Render rows as a Markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(header),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
  ].join("\n");
}

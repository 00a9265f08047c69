/**
 * A progress line for long-running work (training epochs, feature extraction, evaluation).
 *
 * On a terminal the line is redrawn in place; in a log file (CI) a full line is printed at most
 * every `minIntervalMs`, so logs stay short but still show that the job is alive.
 *
 * ```ts
 * const progress = new Progress({ label: "train", total: 500, unit: "img" });
 * for (let step = 1; step <= 500; step++) progress.update({ step, items: 64, loss: 0.1 });
 * progress.done("loss 0.0412 after 500 steps");
 * ```
 *
 * @module
 */

/** Options for {@linkcode Progress}. */
export interface ProgressOptions {
  /** Name shown at the start of the line, e.g. "train" or "eval under-0.5". */
  label: string;
  /** Steps in the whole job, or per epoch when updates carry `epoch`/`epochs`. Enables the ETA. */
  total?: number;
  /** Name of the items counted by `update({ items })`, shown as "<unit>/s". Default "it". */
  unit?: string;
  /** Print nothing but the summary line of {@linkcode Progress.done}. */
  quiet?: boolean;
  /** Receives the output text (already with "\r"/"\n"). Default: standard error. */
  write?: (text: string) => void;
  /** Whether the output is a terminal. Default: false with `write`, else whether stderr is one. */
  isTty?: boolean;
  /** Clock in milliseconds. Default `performance.now`; tests pass a fake one. */
  now?: () => number;
  /** Least time between two printed lines when not on a terminal. Default 10 000 ms. */
  minIntervalMs?: number;
  /** Least time between two redraws on a terminal. Default 100 ms. */
  ttyIntervalMs?: number;
  /** Time window over which items/s and steps/s are averaged. Default 30 000 ms. */
  rateWindowMs?: number;
}

/** One report of progress, passed to {@linkcode Progress.update}. */
export interface ProgressUpdate {
  /** Steps done so far (within the current epoch when `epoch`/`epochs` are given). */
  step: number;
  /** Items processed since the previous update (e.g. the batch size), for the items/s rate. */
  items?: number;
  /** Current loss, shown with 4 significant digits. */
  loss?: number;
  /** Further numbers to show, e.g. `{ lr: 1e-4, ccc: 0.42 }`. */
  values?: Record<string, number>;
  /** Current epoch, counted from 1. */
  epoch?: number;
  /** Number of epochs. */
  epochs?: number;
}

/** A point of the rate window: time and cumulative counters. */
interface RateSample {
  timeMs: number;
  globalStep: number;
  items: number;
}

const CLEAR_TO_END = "\x1b[K";
const encoder = new TextEncoder();

/** Writes all of `text` to standard error (writeSync may write only part of it). */
function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
}

/**
 * Formats a duration as "m:ss" below an hour and "h:mm:ss" from an hour on; seconds are
 * rounded down. Negative or non-finite durations give "?:??".
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?:??";
  const whole = Math.floor(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

/** A number with 4 significant digits ("0.1235", "1.235e-5"); NaN stays "NaN". */
function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return "0";
  // toPrecision alone writes 1e-4 as "0.0001000"; exponents read better that small or large.
  const magnitude = Math.abs(value);
  return magnitude < 1e-3 || magnitude >= 1e5 ? value.toExponential(3) : value.toPrecision(4);
}

/** A rate with about three significant digits, without exponent notation. */
function formatRate(perSecond: number): string {
  if (perSecond >= 100) return perSecond.toFixed(0);
  if (perSecond >= 10) return perSecond.toFixed(1);
  return perSecond.toFixed(2);
}

/**
 * A progress line: label, epoch, step, loss and other values, throughput, elapsed time and ETA.
 * For example `train  epoch 2/10  step 120/500  loss 0.1235  lr 1.000e-4  35.2 img/s  1:02
 * eta 3:10`.
 */
export class Progress {
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #unit: string;
  readonly #quiet: boolean;
  readonly #write: (text: string) => void;
  readonly #isTty: boolean;
  readonly #now: () => number;
  readonly #minIntervalMs: number;
  readonly #ttyIntervalMs: number;
  readonly #rateWindowMs: number;
  readonly #startMs: number;
  #samples: RateSample[];
  #items = 0;
  #countsItems = false;
  #last: ProgressUpdate = { step: 0 };
  #lastPrintMs: number | undefined;
  #printedLast = false;
  #finished = false;

  /** Starts the clock; nothing is printed until the first update. */
  constructor(options: ProgressOptions) {
    this.#label = options.label;
    this.#total = options.total;
    this.#unit = options.unit ?? "it";
    this.#quiet = options.quiet ?? false;
    this.#write = options.write ?? writeStderr;
    this.#isTty = options.isTty ?? (options.write ? false : Deno.stderr.isTerminal());
    this.#now = options.now ?? (() => performance.now());
    this.#minIntervalMs = options.minIntervalMs ?? 10_000;
    this.#ttyIntervalMs = options.ttyIntervalMs ?? 100;
    this.#rateWindowMs = options.rateWindowMs ?? 30_000;
    this.#startMs = this.#now();
    this.#samples = [{ timeMs: this.#startMs, globalStep: 0, items: 0 }];
  }

  /** Records progress and prints a line if the output policy allows one now. */
  update(update: ProgressUpdate): void {
    if (this.#finished) return;
    const nowMs = this.#now();
    this.#last = update;
    if (update.items !== undefined) {
      this.#items += update.items;
      this.#countsItems = true;
    }
    this.#samples.push({ timeMs: nowMs, globalStep: this.#globalStep(update), items: this.#items });
    // Keep one sample at or before the window start so the rate always spans the full window.
    while (this.#samples.length > 2 && this.#samples[1].timeMs <= nowMs - this.#rateWindowMs) {
      this.#samples.shift();
    }
    this.#printedLast = false;
    if (this.#quiet) return;
    const interval = this.#isTty ? this.#ttyIntervalMs : this.#minIntervalMs;
    if (this.#lastPrintMs !== undefined && nowMs - this.#lastPrintMs < interval) return;
    this.#print(this.line(), nowMs);
  }

  /**
   * Finishes: prints the final state (unless quiet or already printed in a log) and then
   * `summary` on its own line. Later calls to `update` and `done` do nothing.
   */
  done(summary?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.#quiet) {
      if (this.#isTty || !this.#printedLast) this.#print(this.line({ final: true }), this.#now());
      if (this.#isTty) this.#write("\n");
    }
    if (summary !== undefined) this.#write(`${summary}\n`);
  }

  /** The current progress line, without "\r" or "\n"; `final` drops the ETA. */
  line(options: { final?: boolean } = {}): string {
    const update = this.#last;
    const nowMs = this.#now();
    const parts = [this.#label];
    if (update.epoch !== undefined) {
      parts.push(`epoch ${update.epoch}${update.epochs !== undefined ? `/${update.epochs}` : ""}`);
    }
    parts.push(`step ${update.step}${this.#total !== undefined ? `/${this.#total}` : ""}`);
    if (update.loss !== undefined) parts.push(`loss ${formatValue(update.loss)}`);
    for (const [name, value] of Object.entries(update.values ?? {})) {
      parts.push(`${name} ${formatValue(value)}`);
    }
    const first = this.#samples[0];
    const latest = this.#samples[this.#samples.length - 1];
    // Under a fifth of a second the rate is noise (the first step would show millions per second).
    const spanSeconds = (latest.timeMs - first.timeMs) / 1000;
    if (spanSeconds >= 0.2) {
      // Without item counts the throughput is in steps, so the unit must say so.
      const rate = this.#countsItems
        ? `${formatRate((latest.items - first.items) / spanSeconds)} ${this.#unit}/s`
        : `${formatRate((latest.globalStep - first.globalStep) / spanSeconds)} step/s`;
      parts.push(rate);
    }
    parts.push(formatDuration((nowMs - this.#startMs) / 1000));
    if (!options.final) {
      const eta = this.#etaSeconds(first, latest, spanSeconds);
      if (eta !== undefined) parts.push(`eta ${formatDuration(eta)}`);
    }
    return parts.join("  ");
  }

  /** Step counted from the start of the job, so that the rate and ETA span epochs. */
  #globalStep(update: ProgressUpdate): number {
    if (update.epoch !== undefined && this.#total !== undefined) {
      return (update.epoch - 1) * this.#total + update.step;
    }
    return update.step;
  }

  /** Seconds left at the windowed step rate, or undefined without a total or a rate. */
  #etaSeconds(first: RateSample, latest: RateSample, spanSeconds: number): number | undefined {
    if (this.#total === undefined) return undefined;
    const epochs = this.#last.epoch !== undefined ? (this.#last.epochs ?? this.#last.epoch) : 1;
    const remaining = Math.max(0, epochs * this.#total - latest.globalStep);
    if (remaining === 0) return 0;
    const stepRate = spanSeconds >= 0.2 ? (latest.globalStep - first.globalStep) / spanSeconds : 0;
    return stepRate > 0 ? remaining / stepRate : undefined;
  }

  #print(text: string, nowMs: number): void {
    if (this.#isTty) {
      this.#write(`\r${text}${CLEAR_TO_END}`);
    } else {
      this.#write(`${text}\n`);
    }
    this.#lastPrintMs = nowMs;
    this.#printedLast = true;
  }
}

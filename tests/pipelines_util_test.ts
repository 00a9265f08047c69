import assert from "node:assert/strict";
import { Image } from "imagescript";
import { summarize } from "../pipelines/metrics.ts";
import { scheduledLr } from "../pipelines/training.ts";
import {
  drawingError,
  drawingGridPng,
  quadrantErrors,
  renderTruth,
} from "../pipelines/fidelity.ts";
import * as data from "../pipelines/data/mod.ts";
import { barChartPng, lineChartPng } from "../pipelines/plots.ts";
import { formatDuration, Progress, type ProgressOptions } from "../pipelines/progress.ts";
import {
  formatSummary,
  markdownTable,
  metricsTable,
  paperTables,
  type StrategyMetrics,
  type Summary,
} from "../pipelines/report.ts";

// ---------------------------------------------------------------------------------------------
// Progress

/** A Progress on a fake clock whose output is collected in `out`. */
function fakeProgress(options: Partial<ProgressOptions> & { isTty: boolean }) {
  const clock = { ms: 0 };
  const out: string[] = [];
  const progress = new Progress({
    label: "train",
    write: (text) => out.push(text),
    now: () => clock.ms,
    ...options,
  });
  return { progress, out, clock };
}

Deno.test("formatDuration: m:ss below an hour, h:mm:ss above, ?:?? when unknown", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(59.9), "0:59");
  assert.equal(formatDuration(61), "1:01");
  assert.equal(formatDuration(3599), "59:59");
  assert.equal(formatDuration(3600), "1:00:00");
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(36000 + 61), "10:01:01");
  assert.equal(formatDuration(NaN), "?:??");
  assert.equal(formatDuration(Infinity), "?:??");
  assert.equal(formatDuration(-1), "?:??");
});

Deno.test("Progress off a terminal: first line at once, then at most every minIntervalMs", () => {
  const { progress, out, clock } = fakeProgress({ isTty: false, total: 100, unit: "img" });
  for (let step = 1; step <= 25; step++) {
    clock.ms = step * 1000;
    progress.update({ step, items: 32, loss: 0.123456 });
  }
  // Steady 1 step/s and 32 img/s: at step 1, 99 steps are left -> 1:39.
  assert.deepEqual(out, [
    "train  step 1/100  loss 0.1235  32.0 img/s  0:01  eta 1:39\n",
    "train  step 11/100  loss 0.1235  32.0 img/s  0:11  eta 1:29\n",
    "train  step 21/100  loss 0.1235  32.0 img/s  0:21  eta 1:19\n",
  ]);
  clock.ms = 25_500;
  progress.done("finished: loss 0.1235");
  // The last update (step 25) was not printed yet, so done() prints it without an ETA.
  assert.deepEqual(out.slice(3), [
    "train  step 25/100  loss 0.1235  32.0 img/s  0:25\n",
    "finished: loss 0.1235\n",
  ]);
  progress.update({ step: 26 });
  progress.done("again");
  assert.equal(out.length, 5, "nothing is printed after done()");
});

Deno.test("Progress on a terminal rewrites one line with \\r and clear-to-end", () => {
  const { progress, out, clock } = fakeProgress({ isTty: true, total: 10 });
  clock.ms = 500;
  progress.update({ step: 1, values: { lr: 0.0001, ccc: 0.42 } });
  clock.ms = 550; // within the 100 ms redraw interval: skipped
  progress.update({ step: 2 });
  clock.ms = 1000;
  progress.update({ step: 2 });
  assert.deepEqual(out, [
    "\rtrain  step 1/10  lr 1.000e-4  ccc 0.4200  2.00 step/s  0:00  eta 0:04\x1b[K",
    "\rtrain  step 2/10  2.00 step/s  0:01  eta 0:04\x1b[K",
  ]);
  clock.ms = 5000;
  progress.done("ok");
  assert.deepEqual(out.slice(2), ["\rtrain  step 2/10  2.00 step/s  0:05\x1b[K", "\n", "ok\n"]);
});

Deno.test("Progress: items/s and ETA follow the recent window, epochs count toward the ETA", () => {
  const { progress, out, clock } = fakeProgress({
    isTty: false,
    total: 10,
    unit: "img",
    minIntervalMs: 0,
    rateWindowMs: 4000,
  });
  // Epoch 1: one step (8 images) per second. Epoch 2: two steps per second.
  for (let step = 1; step <= 10; step++) {
    clock.ms = step * 1000;
    progress.update({ step, items: 8, epoch: 1, epochs: 3 });
  }
  for (let step = 1; step <= 10; step++) {
    clock.ms = 10_000 + step * 500;
    progress.update({ step, items: 8, epoch: 2, epochs: 3 });
  }
  // At 15 s the 4 s window holds only epoch-2 steps: 2 steps/s = 16 img/s; 10 steps are left.
  assert.equal(
    out.at(-1),
    "train  epoch 2/3  step 10/10  16.0 img/s  0:15  eta 0:05\n",
  );
  // Halfway through epoch 1 the rate was 1 step/s with 25 of 30 steps left.
  assert.equal(out[4], "train  epoch 1/3  step 5/10  8.00 img/s  0:05  eta 0:25\n");
});

Deno.test("Progress without a total shows no ETA; quiet prints only the summary", () => {
  const loud = fakeProgress({ isTty: false });
  loud.clock.ms = 2000;
  loud.progress.update({ step: 4 });
  assert.deepEqual(loud.out, ["train  step 4  2.00 step/s  0:02\n"]);

  const quiet = fakeProgress({ isTty: true, quiet: true, total: 5 });
  for (let step = 1; step <= 5; step++) {
    quiet.clock.ms = step * 1000;
    quiet.progress.update({ step, loss: 1 });
  }
  quiet.progress.done();
  assert.deepEqual(quiet.out, []);
  const quietWithSummary = fakeProgress({ isTty: false, quiet: true });
  quietWithSummary.progress.update({ step: 1 });
  quietWithSummary.progress.done("summary line");
  assert.deepEqual(quietWithSummary.out, ["summary line\n"]);
});

// ---------------------------------------------------------------------------------------------
// Charts

type Rgb = [number, number, number];
const BLUE: Rgb = [31, 119, 180]; // first series colour
const ORANGE: Rgb = [255, 127, 14]; // second series colour

/** Pixel coordinates whose colour is exactly `colour`. */
function pixelsOf(image: Image, colour: Rgb): { x: number; y: number }[] {
  const found: { x: number; y: number }[] = [];
  const data = image.bitmap;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const p = (y * image.width + x) * 4;
      if (data[p] === colour[0] && data[p + 1] === colour[1] && data[p + 2] === colour[2]) {
        found.push({ x, y });
      }
    }
  }
  return found;
}

/** Decodes a PNG and checks its size. */
async function decodePng(bytes: Uint8Array, width: number, height: number): Promise<Image> {
  assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "PNG signature");
  const image = await Image.decode(bytes);
  assert.ok(image instanceof Image);
  assert.equal(image.width, width);
  assert.equal(image.height, height);
  return image;
}

/** Pixels of `colour` in the plot, i.e. left of the legend (which starts past 80% width). */
function plotPixels(image: Image, colour: Rgb) {
  return pixelsOf(image, colour).filter((p) => p.x < image.width * 0.8);
}

Deno.test("lineChartPng draws each series as a continuous line in its own colour", async () => {
  const rising = Array.from({ length: 100 }, (_, i) => ({ x: i, y: i / 10 }));
  // Kept apart from `rising` so neither line hides the other where they would cross.
  const falling = Array.from({ length: 100 }, (_, i) => ({ x: i, y: 20 - i / 10 }));
  const png = await lineChartPng(
    [{ name: "rising", points: rising }, { name: "falling", points: falling }],
    { title: "Loss", xLabel: "step", yLabel: "loss" },
  );
  const image = await decodePng(png, 640, 360);
  for (const [colour, goesUp] of [[BLUE, true], [ORANGE, false]] as const) {
    const line = plotPixels(image, colour);
    assert.ok(line.length > 300, `expected a drawn line, got ${line.length} pixels`);
    const columns = new Set(line.map((p) => p.x));
    const minX = Math.min(...columns), maxX = Math.max(...columns);
    assert.ok(maxX - minX > 400, "the line spans most of the width");
    for (let x = minX; x <= maxX; x++) assert.ok(columns.has(x), `gap in the line at x=${x}`);
    const leftY = Math.min(...line.filter((p) => p.x === minX).map((p) => p.y));
    const rightY = Math.min(...line.filter((p) => p.x === maxX).map((p) => p.y));
    // Screen y grows downwards, so a rising series ends higher (smaller y) than it starts.
    assert.equal(rightY < leftY, goesUp);
  }
  // The legend has a swatch of each colour to the right of the plot.
  for (const colour of [BLUE, ORANGE]) {
    assert.ok(pixelsOf(image, colour).some((p) => p.x > image.width * 0.8), "legend swatch");
  }
});

Deno.test("lineChartPng: empty input, a single point, constants, NaN/Infinity and logY", async () => {
  await decodePng(await lineChartPng([]), 640, 360);
  await decodePng(await lineChartPng([{ name: "empty", points: [] }]), 640, 360);
  const allNaN = [{ name: "nan", points: [{ x: NaN, y: 1 }, { x: 1, y: NaN }] }];
  const nanImage = await decodePng(
    await lineChartPng(allNaN, { width: 300, height: 200 }),
    300,
    200,
  );
  assert.equal(plotPixels(nanImage, BLUE).length, 0, "nothing drawn for all-NaN points");

  const one = await decodePng(
    await lineChartPng([{ name: "one", points: [{ x: 3, y: 0.5 }] }], { width: 320, height: 240 }),
    320,
    240,
  );
  assert.ok(plotPixels(one, BLUE).length >= 9, "a single point shows as a marker");

  const constant = Array.from({ length: 50 }, (_, i) => ({ x: i, y: 2 }));
  const flat = plotPixels(
    await decodePng(await lineChartPng([{ name: "c", points: constant }]), 640, 360),
    BLUE,
  );
  const rows = new Set(flat.map((p) => p.y));
  assert.ok(rows.size <= 5, `a constant series is a horizontal line, got ${rows.size} rows`);

  const gappy = [
    { x: 0, y: 1 },
    { x: 1, y: NaN },
    { x: 2, y: 3 },
    { x: Infinity, y: 2 },
    { x: 3, y: -Infinity },
    { x: 4, y: 2 },
  ];
  const gapImage = await decodePng(await lineChartPng([{ name: "g", points: gappy }]), 640, 360);
  const gapLine = plotPixels(gapImage, BLUE);
  const xs = gapLine.map((p) => p.x);
  // Infinity must not stretch the x axis: the finite points still span most of the plot.
  assert.ok(Math.max(...xs) - Math.min(...xs) > 400);

  const logPoints = [{ x: 0, y: 0 }, { x: 1, y: -1 }, { x: 2, y: 1e-3 }, { x: 3, y: 1 }];
  const logImage = await decodePng(
    await lineChartPng([{ name: "log", points: logPoints }], { logY: true }),
    640,
    360,
  );
  assert.ok(plotPixels(logImage, BLUE).length > 50, "positive points drawn on a log axis");
});

Deno.test("barChartPng: grouped bars coloured by name with error bars", async () => {
  const png = await barChartPng(
    [
      {
        label: "CCC V",
        values: [{ name: "original", mean: 0.4, std: 0.1 }, { name: "gen", mean: 0.5 }],
      },
      {
        label: "CCC A",
        values: [{ name: "original", mean: -0.2, std: 0.05 }, { name: "gen", mean: NaN }],
      },
    ],
    { title: "CCC", width: 500, height: 300 },
  );
  const image = await decodePng(png, 500, 300);
  const blue = plotPixels(image, BLUE);
  const orange = plotPixels(image, ORANGE);
  assert.ok(blue.length > 500 && orange.length > 500, "both names have bars");
  // "original" has two bars (one per group), "gen" one: the NaN mean is not drawn.
  const blueColumns = [...new Set(blue.map((p) => p.x))].sort((a, b) => a - b);
  const splits = blueColumns.filter((x, k) => k > 0 && x !== blueColumns[k - 1] + 1).length;
  assert.equal(splits, 1, "two separate blue bars");
  // Error bar: black pixels above the top of the first blue bar, in its centre column.
  const splitAt = blueColumns.findIndex((x, k) => k > 0 && x !== blueColumns[k - 1] + 1);
  const barLeft = blueColumns[0], barRight = blueColumns[splitAt - 1];
  const barTop = Math.min(...blue.filter((p) => p.x <= barRight).map((p) => p.y));
  const centre = barLeft + Math.floor((barRight - barLeft + 1) / 2);
  const black = pixelsOf(image, [0, 0, 0]).filter((p) => p.x === centre && p.y < barTop);
  assert.ok(black.length >= 5, `error bar above the bar, got ${black.length} pixels`);

  await decodePng(await barChartPng([]), 640, 360);
  await decodePng(
    await barChartPng([{ label: "x", values: [{ name: "a", mean: NaN }] }]),
    640,
    360,
  );
});

// ---------------------------------------------------------------------------------------------
// Report

/** A summary over `runs` runs (the per-run values themselves do not matter to formatting). */
function summary(mean: number, std: number, runs = 3): Summary {
  return { mean, std, runs: Array<number>(runs).fill(mean) };
}

/** Metrics where every score of a dimension shares `mean`, except RMSE = 1 - mean. */
function metrics(valence: number, arousal: number, std = 0.01): StrategyMetrics {
  const scores = (mean: number) => ({
    rmse: summary(1 - mean, std),
    corr: summary(mean, std),
    ccc: summary(mean, std),
    sagr: summary(mean, std),
  });
  return { valence: scores(valence), arousal: scores(arousal) };
}

Deno.test("formatSummary: mean ± std, n/a for NaN, no ± for a single run", () => {
  assert.equal(formatSummary(summary(0.12345, 0.0041)), "0.123 ± 0.004");
  assert.equal(formatSummary(summary(0.12345, 0.0041), 2), "0.12 ± 0.00");
  assert.equal(formatSummary(summary(NaN, 0.1)), "n/a");
  assert.equal(formatSummary(summary(0.5, 0, 1)), "0.500");
  assert.equal(formatSummary(summary(-0.0001, 0.0002)), "0.000 ± 0.000");
  // The RunSummary of metrics.ts (runs as a count) works too.
  assert.equal(formatSummary(summarize([0.1, 0.3])), "0.200 ± 0.141");
  assert.equal(formatSummary(summarize([0.25])), "0.250");
});

Deno.test("markdownTable escapes pipes, pads short rows and aligns columns", () => {
  assert.equal(
    markdownTable(["a|b", "c"], [["x|y", "1"], ["z"]], [undefined, "right"]),
    "| a\\|b | c |\n| --- | ---: |\n| x\\|y | 1 |\n| z |  |\n",
  );
  assert.equal(markdownTable(["h"], [], ["center"]), "| h |\n| :---: |\n");
  assert.throws(() => markdownTable(["h"], [["1", "2"]]), /row 0 has 2 cells/);
});

const HEADER =
  "| Strategy | RMSE V | RMSE A | CORR V | CORR A | CCC V | CCC A | SAGR V | SAGR A |\n" +
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

Deno.test("metricsTable: columns, formatting and best-per-column bolding", () => {
  const rows = [
    { name: "a", metrics: metrics(0.4, 0.3) },
    { name: "b|c", metrics: metrics(0.5, 0.2) },
  ];
  rows[1].metrics.arousal.corr = summary(NaN, NaN);
  assert.equal(
    metricsTable(rows),
    HEADER +
      "| a | 0.600 ± 0.010 | 0.700 ± 0.010 | 0.400 ± 0.010 | 0.300 ± 0.010 | 0.400 ± 0.010 | " +
      "0.300 ± 0.010 | 0.400 ± 0.010 | 0.300 ± 0.010 |\n" +
      "| b\\|c | 0.500 ± 0.010 | 0.800 ± 0.010 | 0.500 ± 0.010 | n/a | 0.500 ± 0.010 | " +
      "0.200 ± 0.010 | 0.500 ± 0.010 | 0.200 ± 0.010 |\n",
  );
  // Lowest RMSE and highest of the rest; a column with one finite mean (CORR A) is not bolded.
  assert.equal(
    metricsTable(rows, { boldBest: true }),
    HEADER +
      "| a | 0.600 ± 0.010 | **0.700 ± 0.010** | 0.400 ± 0.010 | 0.300 ± 0.010 | 0.400 ± 0.010 | " +
      "**0.300 ± 0.010** | 0.400 ± 0.010 | **0.300 ± 0.010** |\n" +
      "| b\\|c | **0.500 ± 0.010** | 0.800 ± 0.010 | **0.500 ± 0.010** | n/a | " +
      "**0.500 ± 0.010** | 0.200 ± 0.010 | **0.500 ± 0.010** | 0.200 ± 0.010 |\n",
  );
});

/** The Strategy column of each table in `markdown`, keyed by the table's heading. */
function tableRows(markdown: string): Record<string, string[]> {
  const tables: Record<string, string[]> = {};
  let current = "";
  for (const line of markdown.split("\n")) {
    if (line.startsWith("### ")) tables[current = line.slice(4)] = [];
    else if (line.startsWith("| ") && !line.startsWith("| Strategy") && !line.startsWith("| ---")) {
      tables[current].push(line.split(" | ")[0].slice(2));
    }
  }
  return tables;
}

Deno.test("paperTables: thresholds sorted numerically, best under/over in Table 3", () => {
  const strategies: Record<string, StrategyMetrics> = {
    "generated+real": metrics(0.3, 0.3),
    "under-10": metrics(0.2, 0.2),
    original: metrics(0.1, 0.1),
    "over-2": metrics(0.35, 0.1),
    "under-2": metrics(0.5, 0.1), // best under: 0.6
    "under-0.5": metrics(0.3, 0.25), // 0.55
    "over-1": metrics(0.2, 0.3), // best over: 0.5 vs 0.45
    generated: metrics(0.05, 0.05),
    "over-10": metrics(NaN, 0.1),
  };
  const markdown = paperTables(strategies);
  assert.deepEqual(tableRows(markdown), {
    "Table 1: Under-sampling": ["original", "under-0.5", "under-2", "under-10"],
    "Table 2: Over-sampling": ["original", "over-1", "over-2", "over-10"],
    "Table 3: Comparison": ["original", "under-2", "over-1", "generated", "generated+real"],
  });
  // Sections are separated by a blank line and each table follows its heading's blank line.
  assert.match(markdown, /^### Table 1: Under-sampling\n\n\| Strategy /);
  assert.match(markdown, /\|\n\n### Table 2: Over-sampling\n\n\| Strategy /);
});

Deno.test("paperTables: exact markdown of a small run, absent tables skipped", () => {
  const strategies = { original: metrics(0.1, 0.2), "under-1": metrics(0.3, 0.4) };
  assert.equal(
    paperTables(strategies, { digits: 2, headingLevel: 2 }),
    "## Table 1: Under-sampling\n\n" +
      HEADER +
      "| original | 0.90 ± 0.01 | 0.80 ± 0.01 | 0.10 ± 0.01 | 0.20 ± 0.01 | 0.10 ± 0.01 | " +
      "0.20 ± 0.01 | 0.10 ± 0.01 | 0.20 ± 0.01 |\n" +
      "| under-1 | **0.70 ± 0.01** | **0.60 ± 0.01** | **0.30 ± 0.01** | **0.40 ± 0.01** | " +
      "**0.30 ± 0.01** | **0.40 ± 0.01** | **0.30 ± 0.01** | **0.40 ± 0.01** |\n" +
      "\n## Table 3: Comparison\n\n" +
      HEADER +
      "| original | 0.90 ± 0.01 | 0.80 ± 0.01 | 0.10 ± 0.01 | 0.20 ± 0.01 | 0.10 ± 0.01 | " +
      "0.20 ± 0.01 | 0.10 ± 0.01 | 0.20 ± 0.01 |\n" +
      "| under-1 | **0.70 ± 0.01** | **0.60 ± 0.01** | **0.30 ± 0.01** | **0.40 ± 0.01** | " +
      "**0.30 ± 0.01** | **0.40 ± 0.01** | **0.30 ± 0.01** | **0.40 ± 0.01** |\n",
  );
  assert.deepEqual(Object.keys(tableRows(paperTables({ generated: metrics(0.1, 0.1) }))), [
    "Table 3: Comparison",
  ]);
  assert.equal(paperTables({}), "");
});

Deno.test("scheduledLr: constant by default, cosine from lr down towards 0", () => {
  const base = { lr: 0.01, steps: 100 };
  assert.equal(scheduledLr(base, 1), 0.01);
  assert.equal(scheduledLr({ ...base, schedule: "constant" }, 77), 0.01);
  const cosine = { ...base, schedule: "cosine" as const };
  assert.equal(scheduledLr(cosine, 1), 0.01);
  assert.ok(Math.abs(scheduledLr(cosine, 51) - 0.005) < 1e-12);
  assert.ok(scheduledLr(cosine, 100) < 0.01 * 0.001);
  for (let step = 2; step <= 100; step++) {
    assert.ok(scheduledLr(cosine, step) < scheduledLr(cosine, step - 1));
  }
});

Deno.test("quadrantErrors: mean prediction - truth per quadrant of the true labels", () => {
  const labels = [
    { valence: 0.5, arousal: 0.5 },
    { valence: 0.3, arousal: 0.1 },
    { valence: -0.5, arousal: 0.4 },
    { valence: 0, arousal: -0.2 }, // 0 counts as positive: v+a-
  ];
  const predictions = Float32Array.from([0.7, 0.5, 0.1, 0.1, 0.25, 0.3, -0.5, -0.5]);
  const errors = quadrantErrors(predictions, labels);
  assert.equal(errors["v+a+"]!.count, 2);
  assert.ok(Math.abs(errors["v+a+"]!.valence - (0.2 - 0.2) / 2) < 1e-6);
  assert.ok(Math.abs(errors["v+a+"]!.arousal - 0) < 1e-6);
  assert.ok(Math.abs(errors["v-a+"]!.valence - 0.75) < 1e-6);
  assert.ok(Math.abs(errors["v-a+"]!.arousal + 0.1) < 1e-6);
  assert.ok(Math.abs(errors["v+a-"]!.valence + 0.5) < 1e-6);
  assert.ok(Math.abs(errors["v+a-"]!.arousal + 0.3) < 1e-6);
  assert.equal(errors["v-a-"], null);
});

Deno.test("drawingError: RMSE overall, inside and outside the region maps", () => {
  // One face, 2 x 2, the region map covers the first pixel fully and the second by half.
  const truth = new Float32Array(12);
  const images = new Float32Array(12);
  for (let c = 0; c < 3; c++) {
    images[c * 4 + 0] = 0.4; // inside
    images[c * 4 + 1] = 0.2; // half inside
    images[c * 4 + 3] = 0.1; // outside
  }
  const error = drawingError(images, {
    images: truth,
    regions: [Float32Array.from([1, 0.5, 0, 0])],
  });
  assert.equal(error.count, 1);
  const close = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-6, `${x} vs ${y}`);
  close(error.rmse, Math.sqrt((0.16 + 0.04 + 0.01) / 4));
  close(error.regions, Math.sqrt((0.16 + 0.5 * 0.04) / 1.5));
  close(error.outside, Math.sqrt((0.5 * 0.04 + 0.01) / 2.5));
  assert.throws(
    () => drawingError(images.subarray(3), { images: truth, regions: [] }),
    /drawingError/,
  );
});

Deno.test("renderTruth: the shown labels give the aligned faces back; new ones move the regions", () => {
  const set = data.synthetic({ seed: 5, persons: 2, framesPerPerson: 3 });
  data.alignFaceSet(set);
  const shown = set.samples.map((s) => data.parseSyntheticId(s.image));
  const same = renderTruth(set.samples, shown, set.size, true)!;
  const zero = drawingError(set.images, same);
  assert.ok(zero.rmse < 1e-6, `the true render is the face itself: ${zero.rmse}`);
  // Opposite expressions: the unchanged face differs from its truth, mostly in the regions.
  const flipped = shown.map((l) => ({ valence: -l.valence, arousal: -l.arousal }));
  const truth = renderTruth(set.samples, flipped, set.size, true)!;
  const error = drawingError(set.images, truth);
  assert.ok(error.regions > 0.02, `the expression changed: ${error.regions}`);
  assert.ok(
    error.regions > 3 * error.outside,
    `in the regions: ${error.regions} vs ${error.outside}`,
  );
  assert.ok(truth.regions.every((m) => m.some((x) => x === 1) && m.every((x) => x >= 0 && x <= 1)));
  const real = [{ ...set.samples[0], image: "faces/001.png" }];
  assert.equal(renderTruth(real, [flipped[0]], set.size, true), null, "no truth for real faces");
});

Deno.test("drawingGridPng: source | re-generated | truth triplets, none without a truth", async () => {
  const set = data.synthetic({ seed: 5, persons: 2, framesPerPerson: 3 });
  const labels = set.samples.map((s) => ({ valence: -s.valence, arousal: s.arousal }));
  const truth = renderTruth(set.samples, labels, set.size, false)!;
  const regenerated = { images: set.images, labels };
  const png = await drawingGridPng(set.images, { regenerated, truth }, 2, 2);
  const image = await Image.decode(png!);
  // 2 rows of 2 triplets: 6 cells of 128 px (scale 2) and 2 px gaps across; captions 8 px high.
  assert.equal(image.width, 6 * 128 + 7 * 2);
  assert.equal(image.height, 2 * (128 + 8) + 3 * 2);
  assert.equal(await drawingGridPng(set.images, { regenerated, truth: null }), null);
});

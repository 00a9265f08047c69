/**
 * PNG charts for run reports: line charts (loss curves of several strategies on one chart) and
 * grouped bar charts with error bars (CCC of each strategy for valence and arousal).
 *
 * Charts are drawn pixel by pixel on the canvas of `data/pictures.ts`, with its built-in 3x5
 * font (upper case only), and encoded to PNG with imagescript.
 *
 * @module
 */
import { encodePngRgba } from "./data/image.ts";
import { Canvas, type Rgb, textWidth } from "./data/pictures.ts";

/** A point of a line series. Points with a NaN or infinite coordinate are skipped. */
export interface ChartPoint {
  /** Horizontal value, e.g. the training step. */
  x: number;
  /** Vertical value, e.g. the loss. */
  y: number;
}

/** One line of a {@linkcode lineChartPng}, drawn in its own colour and named in the legend. */
export interface LineSeries {
  /** Legend entry. */
  name: string;
  /** Points, joined in the given order. */
  points: readonly ChartPoint[];
}

/** Options shared by both chart kinds. */
export interface ChartOptions {
  /** Text above the chart. */
  title?: string;
  /** Caption of the horizontal axis, under the tick labels. */
  xLabel?: string;
  /** Caption of the vertical axis, above it. */
  yLabel?: string;
  /** Image width in pixels. Default 640. */
  width?: number;
  /** Image height in pixels. Default 360. */
  height?: number;
}

/** Options for {@linkcode lineChartPng}. */
export interface LineChartOptions extends ChartOptions {
  /** Logarithmic vertical axis; points with y <= 0 are then skipped. */
  logY?: boolean;
}

/** One bar of a {@linkcode barChartPng} group. */
export interface BarValue {
  /** Legend entry; the same name has the same colour in every group. */
  name: string;
  /** Bar height. A NaN mean is shown as "N/A" instead of a bar. */
  mean: number;
  /** Half-length of the error bar (mean ± std). Omitted or non-finite: no error bar. */
  std?: number;
}

/** A group of bars sharing one label under the horizontal axis, e.g. "CCC V". */
export interface BarGroup {
  /** Caption under the group. */
  label: string;
  /** Bars, left to right. */
  values: readonly BarValue[];
}

/** Options for {@linkcode barChartPng}. */
export type BarChartOptions = ChartOptions;

const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [228, 228, 228];
const AXIS_TEXT: Rgb = [60, 60, 60];

// Tableau 10: distinct hues that stay apart on white and for common colour-vision deficiencies.
const PALETTE: Rgb[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
  [23, 190, 207],
];

/** Colour of the `index`-th series; past the palette, hues step by the golden angle. */
function seriesColour(index: number): Rgb {
  if (index < PALETTE.length) return PALETTE[index];
  // HSL to RGB with lightness 0.45 and saturation 0.67 (chroma 0.3), dark enough on white.
  const hue = (index * 137.508) % 360;
  const f = (n: number) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.45 - 0.3 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** A value axis: its domain (in log10 units when `log`), tick positions and their labels. */
interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
  labels: string[];
}

/** Where on the axis `value` lies, 0 at `lo` and 1 at `hi`. */
function axisFraction(axis: Axis, value: number): number {
  const v = axis.log ? Math.log10(value) : value;
  return (v - axis.lo) / (axis.hi - axis.lo);
}

/** A 1, 2 or 5 times a power of ten close to `span / count`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / magnitude;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude;
}

/** Tick label with as many decimals as the step needs; "-0" is shown as "0". */
function linearLabel(value: number, step: number, largest: number): string {
  if (largest >= 1e6) return value === 0 ? "0" : value.toExponential(2);
  const decimals = Math.min(10, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  const text = value.toFixed(decimals);
  return Number(text) === 0 ? (0).toFixed(decimals) : text;
}

/** A linear axis over [min, max] widened to whole ticks; an empty range is padded. */
function linearAxis(min: number, max: number, count: number): Axis {
  if (!(max > min)) {
    // A constant series: centre it rather than divide by a zero range.
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(k * step);
  const largest = Math.max(Math.abs(first * step), Math.abs(last * step));
  return {
    lo: first * step,
    hi: last * step,
    log: false,
    ticks,
    labels: ticks.map((t) => linearLabel(t, step, largest)),
  };
}

/** "0.01", "100" near 1 and "2E-5" far from it (the font has no lower case). */
function logLabel(value: number): string {
  const exponent = Math.floor(Math.log10(value) + 1e-9);
  const mantissa = Math.round(value / 10 ** exponent);
  if (exponent >= -3 && exponent <= 4) return String(mantissa * 10 ** exponent);
  return `${mantissa}E${exponent}`;
}

/** A log10 axis over positive [min, max], widened to whole decades. */
function logAxis(min: number, max: number): Axis {
  let lo = Math.floor(Math.log10(min) + 1e-9);
  let hi = Math.ceil(Math.log10(max) - 1e-9);
  if (hi <= lo) {
    // All values on one power of ten: show the decade on either side.
    lo -= 1;
    hi += 1;
  }
  const stride = Math.ceil((hi - lo) / 6);
  const ticks: number[] = [];
  for (let k = lo; k <= hi; k += stride) {
    ticks.push(10 ** k);
    // Few decades leave room for 2x and 5x ticks, which make values readable.
    if (hi - lo <= 2 && k < hi) ticks.push(2 * 10 ** k, 5 * 10 ** k);
  }
  return { lo, hi, log: true, ticks, labels: ticks.map(logLabel) };
}

/** Pixel rectangle of the plotting area. */
interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** A legend entry: a name and its colour. */
interface LegendEntry {
  name: string;
  colour: Rgb;
}

const LEGEND_MAX_CHARS = 28;

/** Legend text, cut so a long name cannot squeeze the plot away. */
function legendName(name: string): string {
  return name.length > LEGEND_MAX_CHARS ? `${name.slice(0, LEGEND_MAX_CHARS - 1)}_` : name;
}

/** Pixels the legend needs to the right of the plot (0 without entries). */
function legendWidth(entries: readonly LegendEntry[]): number {
  if (entries.length === 0) return 0;
  return 12 + 14 + Math.max(...entries.map((e) => textWidth(legendName(e.name)))) + 8;
}

/**
 * Places the plotting area: title and y caption on top, y tick labels on the left, x tick
 * labels and caption below, the legend on the right.
 */
function layout(
  options: ChartOptions,
  yAxisFor: (plotHeight: number) => Axis,
  legend: readonly LegendEntry[],
): { canvas: Canvas; frame: Frame; yAxis: Axis } {
  const width = Math.max(80, Math.round(options.width ?? 640));
  const height = Math.max(60, Math.round(options.height ?? 360));
  const top = (options.title ? 26 : 10) + (options.yLabel ? 12 : 0);
  const bottom = 8 + 5 + 6 + (options.xLabel ? 12 : 0);
  const plotHeight = Math.max(10, height - top - bottom);
  const yAxis = yAxisFor(plotHeight);
  const left = 10 + Math.max(...yAxis.labels.map((l) => textWidth(l)));
  const right = Math.max(12, legendWidth(legend));
  const plotWidth = Math.max(10, width - left - right);
  const canvas = new Canvas(width, height);
  if (options.title) {
    const x = Math.max(4, Math.floor((width - textWidth(options.title, 2)) / 2));
    canvas.text(x, 8, options.title, BLACK, 2);
  }
  if (options.yLabel) canvas.text(Math.max(2, left - 8), top - 11, options.yLabel, AXIS_TEXT);
  if (options.xLabel) {
    const x = left + Math.floor((plotWidth - textWidth(options.xLabel)) / 2);
    canvas.text(x, height - 10, options.xLabel, AXIS_TEXT);
  }
  return { canvas, frame: { left, top, width: plotWidth, height: plotHeight }, yAxis };
}

/** Pixel row of `value` on the vertical axis. */
function yPixel(frame: Frame, axis: Axis, value: number): number {
  return frame.top + Math.round((1 - axisFraction(axis, value)) * (frame.height - 1));
}

/** Pixel column of `value` on the horizontal axis. */
function xPixel(frame: Frame, axis: Axis, value: number): number {
  return frame.left + Math.round(axisFraction(axis, value) * (frame.width - 1));
}

/** Horizontal grid lines with labelled ticks on the left. */
function drawYAxis(canvas: Canvas, frame: Frame, axis: Axis): void {
  axis.ticks.forEach((tick, k) => {
    const y = yPixel(frame, axis, tick);
    canvas.fillRect(frame.left, y, frame.width, 1, GRID);
    canvas.fillRect(frame.left - 3, y, 3, 1, BLACK);
    const label = axis.labels[k];
    canvas.text(frame.left - 5 - textWidth(label), y - 2, label, AXIS_TEXT);
  });
}

/** Vertical grid lines with labelled ticks below the plot. */
function drawXAxis(canvas: Canvas, frame: Frame, axis: Axis): void {
  axis.ticks.forEach((tick, k) => {
    const x = xPixel(frame, axis, tick);
    canvas.fillRect(x, frame.top, 1, frame.height, GRID);
    canvas.fillRect(x, frame.top + frame.height, 1, 3, BLACK);
    const label = axis.labels[k];
    canvas.text(
      x - Math.floor(textWidth(label) / 2),
      frame.top + frame.height + 5,
      label,
      AXIS_TEXT,
    );
  });
}

/** The axis lines along the left and bottom edges of the plot. */
function drawFrame(canvas: Canvas, frame: Frame): void {
  canvas.fillRect(frame.left - 1, frame.top, 1, frame.height + 1, BLACK);
  canvas.fillRect(frame.left - 1, frame.top + frame.height, frame.width + 1, 1, BLACK);
}

/** Legend to the right of the plot, one entry per row, each with a line or box swatch. */
function drawLegend(
  canvas: Canvas,
  frame: Frame,
  entries: readonly LegendEntry[],
  swatch: "line" | "box",
): void {
  const x = frame.left + frame.width + 12;
  entries.forEach((entry, k) => {
    const y = frame.top + 2 + k * 11;
    if (swatch === "line") canvas.fillRect(x, y + 1, 12, 3, entry.colour);
    else canvas.fillRect(x + 2, y - 1, 8, 7, entry.colour);
    canvas.text(x + 16, y, legendName(entry.name), BLACK);
  });
}

/** "NO DATA" in the middle of an empty plot, so an empty chart is not mistaken for a bug. */
function drawNoData(canvas: Canvas, frame: Frame): void {
  const text = "NO DATA";
  canvas.text(
    frame.left + Math.floor((frame.width - textWidth(text, 2)) / 2),
    frame.top + Math.floor(frame.height / 2) - 5,
    text,
    AXIS_TEXT,
    2,
  );
}

/** A 2-pixel-thick segment (Bresenham), thick enough to stay visible when the PNG is scaled. */
function drawSegment(canvas: Canvas, x0: number, y0: number, x1: number, y1: number, c: Rgb) {
  const dx = Math.abs(x1 - x0), dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  let error = dx + dy;
  for (;;) {
    canvas.fillRect(x0, y0, 2, 2, c);
    if (x0 === x1 && y0 === y1) return;
    const doubled = 2 * error;
    if (doubled >= dy) {
      error += dy;
      x0 += sx;
    }
    if (doubled <= dx) {
      error += dx;
      y0 += sy;
    }
  }
}

// Sparse series (e.g. one validation score per epoch) get markers so single points show.
const MARKER_MAX_POINTS = 40;

/**
 * A line chart as PNG bytes: one coloured line per series with a legend, numeric tick labels
 * and light grid lines. Points with a non-finite coordinate (or y <= 0 with `logY`) are left
 * out and their neighbours joined; sparse series also get point markers. Empty input, a single
 * point or a constant series still give a valid chart.
 */
export async function lineChartPng(
  series: readonly LineSeries[],
  options: LineChartOptions = {},
): Promise<Uint8Array> {
  const logY = options.logY ?? false;
  const usable = series.map((s) =>
    s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!logY || p.y > 0))
  );
  const all = usable.flat();
  const xs = all.map((p) => p.x), ys = all.map((p) => p.y);
  const legend = series.map((s, k) => ({ name: s.name, colour: seriesColour(k) }));
  const { canvas, frame, yAxis } = layout(options, (plotHeight) => {
    const count = Math.min(8, Math.max(2, Math.floor(plotHeight / 40)));
    if (all.length === 0) return logY ? logAxis(1, 10) : linearAxis(0, 1, count);
    const min = Math.min(...ys), max = Math.max(...ys);
    return logY ? logAxis(min, max) : linearAxis(min, max, count);
  }, legend);
  const xCount = Math.min(10, Math.max(2, Math.floor(frame.width / 70)));
  const xAxis = all.length === 0
    ? linearAxis(0, 1, xCount)
    : linearAxis(Math.min(...xs), Math.max(...xs), xCount);
  drawYAxis(canvas, frame, yAxis);
  drawXAxis(canvas, frame, xAxis);
  drawFrame(canvas, frame);
  if (all.length === 0) drawNoData(canvas, frame);
  usable.forEach((points, k) => {
    const colour = seriesColour(k);
    const pixels = points.map((p) => [xPixel(frame, xAxis, p.x), yPixel(frame, yAxis, p.y)]);
    for (let i = 1; i < pixels.length; i++) {
      drawSegment(canvas, pixels[i - 1][0], pixels[i - 1][1], pixels[i][0], pixels[i][1], colour);
    }
    if (pixels.length <= MARKER_MAX_POINTS) {
      for (const [x, y] of pixels) canvas.fillRect(x - 2, y - 2, 5, 5, colour);
    }
  });
  drawLegend(canvas, frame, legend, "line");
  return await encodePngRgba(canvas);
}

/**
 * A grouped bar chart as PNG bytes: one group per entry of `groups` (caption below the axis),
 * one bar per value coloured by its name (same name, same colour across groups, named in the
 * legend), with mean ± std error bars. Bars grow from 0, so negative means point down.
 */
export async function barChartPng(
  groups: readonly BarGroup[],
  options: BarChartOptions = {},
): Promise<Uint8Array> {
  const names: string[] = [];
  for (const group of groups) {
    for (const value of group.values) if (!names.includes(value.name)) names.push(value.name);
  }
  const legend = names.map((name, k) => ({ name, colour: seriesColour(k) }));
  const extents = [0];
  for (const group of groups) {
    for (const { mean, std } of group.values) {
      if (!Number.isFinite(mean)) continue;
      const spread = std !== undefined && Number.isFinite(std) ? Math.abs(std) : 0;
      extents.push(mean - spread, mean + spread);
    }
  }
  const hasBars = extents.length > 1;
  const { canvas, frame, yAxis } = layout(options, (plotHeight) => {
    const count = Math.min(8, Math.max(2, Math.floor(plotHeight / 40)));
    return hasBars
      ? linearAxis(Math.min(...extents), Math.max(...extents), count)
      : linearAxis(0, 1, count);
  }, legend);
  drawYAxis(canvas, frame, yAxis);
  const zeroY = yPixel(frame, yAxis, 0);
  const groupWidth = frame.width / Math.max(1, groups.length);
  groups.forEach((group, g) => {
    const groupLeft = frame.left + g * groupWidth;
    const slotWidth = (groupWidth * 0.8) / Math.max(1, group.values.length);
    const barWidth = Math.max(1, Math.floor(slotWidth * 0.8));
    group.values.forEach((value, k) => {
      const x = Math.round(
        groupLeft + groupWidth * 0.1 + k * slotWidth + (slotWidth - barWidth) / 2,
      );
      if (!Number.isFinite(value.mean)) {
        canvas.text(x + Math.floor((barWidth - textWidth("N/A")) / 2), zeroY - 7, "N/A", AXIS_TEXT);
        return;
      }
      const meanY = yPixel(frame, yAxis, value.mean);
      const colour = seriesColour(names.indexOf(value.name));
      canvas.fillRect(x, Math.min(meanY, zeroY), barWidth, Math.abs(zeroY - meanY) + 1, colour);
      if (value.std !== undefined && Number.isFinite(value.std) && value.std !== 0) {
        const spread = Math.abs(value.std);
        const highY = yPixel(frame, yAxis, value.mean + spread);
        const lowY = yPixel(frame, yAxis, value.mean - spread);
        const centre = x + Math.floor(barWidth / 2);
        const cap = Math.max(3, Math.floor(barWidth / 3));
        canvas.fillRect(centre, highY, 1, lowY - highY + 1, BLACK);
        canvas.fillRect(centre - Math.floor(cap / 2), highY, cap, 1, BLACK);
        canvas.fillRect(centre - Math.floor(cap / 2), lowY, cap, 1, BLACK);
      }
    });
    const label = group.label;
    const labelX = Math.round(groupLeft + (groupWidth - textWidth(label)) / 2);
    canvas.text(labelX, frame.top + frame.height + 5, label, BLACK);
  });
  drawFrame(canvas, frame);
  // The zero line separates positive from negative bars when the axis spans both.
  if (yAxis.lo < 0) canvas.fillRect(frame.left, zeroY, frame.width, 1, BLACK);
  if (!hasBars) drawNoData(canvas, frame);
  drawLegend(canvas, frame, legend, "box");
  return await encodePngRgba(canvas);
}

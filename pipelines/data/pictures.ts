/**
 * PNG pictures for inspecting data: a V/A heat map, a labelled contact sheet and a generic image
 * grid. Text uses a built-in 3x5 pixel font (imagescript needs an external font file for text).
 */
import { DataError } from "./errors.ts";
import { encodePngRgba, type RgbaImage } from "./image.ts";
import { binCounts, cellsPerAxis } from "./samplers.ts";
import type { VaLabel } from "./types.ts";

/** An RGB colour, each channel 0-255. */
export type Rgb = [number, number, number];

// 3x5 glyphs: five rows, each a 3-bit mask (4 = left column, 2 = middle, 1 = right).
const GLYPHS: Record<string, string> = {
  "0": "75557",
  "1": "26227",
  "2": "71747",
  "3": "71317",
  "4": "55711",
  "5": "74717",
  "6": "74757",
  "7": "71122",
  "8": "75757",
  "9": "75717",
  A: "25755",
  B: "65656",
  C: "34443",
  D: "65556",
  E: "74647",
  F: "74644",
  G: "34553",
  H: "55755",
  I: "72227",
  J: "11152",
  K: "55655",
  L: "44447",
  M: "57755",
  N: "65555",
  O: "25552",
  P: "65644",
  Q: "25563",
  R: "65655",
  S: "34216",
  T: "72222",
  U: "55557",
  V: "55552",
  W: "55775",
  X: "55255",
  Y: "55222",
  Z: "71247",
  "-": "00700",
  "+": "02720",
  ".": "00002",
  ",": "00024",
  ":": "02020",
  "=": "07070",
  "/": "11244",
  "(": "12221",
  ")": "42224",
  _: "00007",
  "%": "51245",
  " ": "00000",
  "?": "71202",
  "#": "57575",
  "'": "22000",
};

/** A mutable RGBA canvas with the few drawing operations the pictures need. */
export class Canvas implements RgbaImage {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, fill: Rgb = [255, 255, 255]) {
    this.data = new Uint8Array(width * height * 4);
    this.fillRect(0, 0, width, height, fill);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const p = (y * this.width + x) * 4;
    this.data[p] = c[0];
    this.data[p + 1] = c[1];
    this.data[p + 2] = c[2];
    this.data[p + 3] = 255;
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    for (let j = Math.max(0, y); j < Math.min(this.height, y + h); j++) {
      for (let i = Math.max(0, x); i < Math.min(this.width, x + w); i++) this.set(i, j, c);
    }
  }

  /** Draws text with the 3x5 font, each font pixel `scale x scale`; unknown chars show "?". */
  text(x: number, y: number, text: string, c: Rgb, scale = 1): void {
    let cursor = x;
    for (const ch of text.toUpperCase()) {
      const rows = GLYPHS[ch] ?? GLYPHS["?"];
      for (let r = 0; r < 5; r++) {
        const mask = Number(rows[r]);
        for (let col = 0; col < 3; col++) {
          if (mask & (4 >> col)) {
            this.fillRect(cursor + col * scale, y + r * scale, scale, scale, c);
          }
        }
      }
      cursor += 4 * scale;
    }
  }

  /** Pastes a CHW float image at (x, y), each source pixel `scale x scale`. */
  paste(chw: Float32Array, size: number, x: number, y: number, scale = 1): void {
    const plane = size * size;
    for (let j = 0; j < size * scale; j++) {
      for (let i = 0; i < size * scale; i++) {
        const s = Math.floor(j / scale) * size + Math.floor(i / scale);
        this.set(x + i, y + j, [byte(chw[s]), byte(chw[plane + s]), byte(chw[2 * plane + s])]);
      }
    }
  }

  circle(cx: number, cy: number, radius: number, c: Rgb): void {
    const steps = Math.ceil(2 * Math.PI * radius * 2);
    for (let k = 0; k < steps; k++) {
      const t = (2 * Math.PI * k) / steps;
      this.set(Math.round(cx + radius * Math.cos(t)), Math.round(cy + radius * Math.sin(t)), c);
    }
  }
}

/** Pixel width of `text` in the built-in font at `scale`. */
export function textWidth(text: string, scale = 1): number {
  return text.length * 4 * scale - scale;
}

function byte(v: number): number {
  return Math.round((v <= 0 ? 0 : v >= 1 ? 1 : v) * 255);
}

// Perceptually ordered dark-blue -> teal -> green -> yellow ramp (viridis-like stops).
const RAMP: Rgb[] = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

/** Colour-map lookup for t in [0, 1]. */
function ramp(t: number): Rgb {
  const x = Math.min(Math.max(t, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2);
  const f = x - i;
  return RAMP[i].map((v, c) => Math.round(v + (RAMP[i + 1][c] - v) * f)) as Rgb;
}

/** Options for `vaHistogramPng`. */
export interface HistogramOptions {
  /** Cell side in V/A units. Default 0.1. */
  binSize?: number;
  /** Screen pixels per cell. Default 16. */
  cellPixels?: number;
  /** Title printed above the plot. */
  title?: string;
}

/**
 * 2-D V/A histogram as a PNG heat map: valence horizontal, arousal vertical (positive up),
 * log-scaled colours with a colour bar, axes through 0 and the unit circle. Empty cells are
 * drawn in light grey so they stand apart from sparse ones.
 */
export async function vaHistogramPng(
  labels: readonly VaLabel[],
  options: HistogramOptions = {},
): Promise<Uint8Array> {
  const binSize = options.binSize ?? 0.1;
  const cell = options.cellPixels ?? 16;
  const n = cellsPerAxis(binSize);
  const counts = binCounts(labels, { binSize });
  const max = Math.max(1, ...counts);
  const plot = n * cell;
  const left = 28, top = 22, right = 70, bottom = 30;
  const canvas = new Canvas(left + plot + right, top + plot + bottom);
  canvas.text(left, 6, options.title ?? `${labels.length} SAMPLES`, [0, 0, 0], 2);
  for (let row = 0; row < n; row++) { // row 0 = highest arousal
    for (let col = 0; col < n; col++) {
      const count = counts[(n - 1 - row) * n + col];
      const colour: Rgb = count === 0 ? [235, 235, 235] : ramp(Math.log1p(count) / Math.log1p(max));
      canvas.fillRect(left + col * cell, top + row * cell, cell, cell, colour);
    }
  }
  // Axes through (0, 0), unit circle, frame and tick labels; plot spans [-1, 1] on both axes.
  const toX = (v: number) => left + Math.round(((v + 1) / 2) * plot);
  const toY = (a: number) => top + Math.round(((1 - a) / 2) * plot);
  canvas.fillRect(left, toY(0), plot, 1, [120, 120, 120]);
  canvas.fillRect(toX(0), top, 1, plot, [120, 120, 120]);
  canvas.circle(toX(0), toY(0), plot / 2, [220, 40, 40]);
  for (
    const [x, y, w, h] of [[left - 1, top - 1, plot + 2, 1], [left - 1, top + plot, plot + 2, 1], [
      left - 1,
      top - 1,
      1,
      plot + 2,
    ], [left + plot, top - 1, 1, plot + 2]]
  ) canvas.fillRect(x, y, w, h, [0, 0, 0]);
  for (const v of [-1, 0, 1]) {
    const label = String(v);
    canvas.text(toX(v) - Math.floor(textWidth(label) / 2), top + plot + 4, label, [0, 0, 0]);
    canvas.text(left - 4 - textWidth(label), toY(v) - 2, label, [0, 0, 0]);
  }
  canvas.text(
    left + plot / 2 - textWidth("VALENCE", 2) / 2,
    top + plot + 14,
    "VALENCE",
    [0, 0, 0],
    2,
  );
  canvas.text(left + 4, top + 3, "AROUSAL", [0, 0, 0]);
  // Colour bar (log scale) with its end values.
  const barX = left + plot + 12;
  for (let j = 0; j < plot; j++) {
    canvas.fillRect(barX, top + j, 12, 1, ramp(1 - j / (plot - 1)));
  }
  canvas.text(barX + 16, top, String(max), [0, 0, 0]);
  canvas.text(barX + 16, top + plot - 5, "1", [0, 0, 0]);
  canvas.text(barX + 16, top + plot / 2 - 2, "LOG", [0, 0, 0]);
  return await encodePngRgba(canvas);
}

/** Side length of a square CHW image with `values` floats. */
function chwSide(values: number): number {
  const size = Math.round(Math.sqrt(values / 3));
  if (size < 1 || 3 * size * size !== values) {
    throw new DataError(`expected a square 3-channel CHW image, got ${values} values`);
  }
  return size;
}

/** Options for `imageGrid`. */
export interface ImageGridOptions {
  /** Caption under each image (row-major, same order as the images). */
  labels?: readonly string[];
  /** Integer upscale factor per image. Default 1. */
  scale?: number;
  /** Gap between cells in pixels. Default 2. */
  padding?: number;
}

/**
 * Lays square CHW images out in a `rows x cols` grid (row-major; missing cells stay white) with
 * optional captions, and returns PNG bytes. All images must have the same size.
 */
export async function imageGrid(
  images: readonly Float32Array[],
  rows: number,
  cols: number,
  options: ImageGridOptions = {},
): Promise<Uint8Array> {
  if (images.length === 0) throw new DataError("imageGrid: no images");
  if (images.length > rows * cols) {
    throw new DataError(`imageGrid: ${images.length} images do not fit ${rows}x${cols}`);
  }
  const size = chwSide(images[0].length);
  if (images.some((im) => im.length !== images[0].length)) {
    throw new DataError("imageGrid: images differ in size");
  }
  const scale = options.scale ?? 1;
  const padding = options.padding ?? 2;
  const captionHeight = options.labels ? 8 : 0;
  const cellW = size * scale, cellH = size * scale + captionHeight;
  const canvas = new Canvas(
    cols * cellW + (cols + 1) * padding,
    rows * cellH + (rows + 1) * padding,
  );
  images.forEach((image, k) => {
    const x = padding + (k % cols) * (cellW + padding);
    const y = padding + Math.floor(k / cols) * (cellH + padding);
    canvas.paste(image, size, x, y, scale);
    const label = options.labels?.[k];
    if (label !== undefined) {
      const maxChars = Math.max(1, Math.floor((cellW + 1) / 4));
      canvas.text(x, y + size * scale + 2, label.slice(0, maxChars), [0, 0, 0]);
    }
  });
  return await encodePngRgba(canvas);
}

/** A face's caption: its V/A as "V+0.52 A-0.31". */
export function vaCaption({ valence, arousal }: VaLabel): string {
  const signed = (v: number) => (v >= 0 ? "+" : "-") + Math.abs(v).toFixed(2);
  return `V${signed(valence)} A${signed(arousal)}`;
}

/** Options for `contactSheetPng`. */
export interface ContactSheetOptions {
  /** Faces per row. Default 8. */
  columns?: number;
  /** Integer upscale per face. Default 2. */
  scale?: number;
  /** Show at most this many faces. Default 64. */
  maxCount?: number;
}

/**
 * Contact sheet of faces (N x 3 x S x S) with their labels: each face is captioned
 * "V+0.52 A-0.31" and has two small bars under it (valence green/red, arousal orange/blue)
 * growing left or right from a centre tick, readable even when scaled down.
 */
export async function contactSheetPng(
  faces: Float32Array,
  labels: readonly VaLabel[],
  options: ContactSheetOptions = {},
): Promise<Uint8Array> {
  if (labels.length === 0) throw new DataError("contactSheetPng: no samples");
  const size = chwSide(faces.length / labels.length);
  const count = Math.min(labels.length, options.maxCount ?? 64);
  const columns = Math.min(options.columns ?? 8, count);
  const scale = options.scale ?? 2;
  const rowsCount = Math.ceil(count / columns);
  const cellW = Math.max(size * scale, textWidth("V+0.00 A+0.00")), cellH = size * scale + 20;
  const pad = 4;
  const canvas = new Canvas(columns * (cellW + pad) + pad, rowsCount * (cellH + pad) + pad);
  const plane = 3 * size * size;
  for (let k = 0; k < count; k++) {
    const x = pad + (k % columns) * (cellW + pad);
    const y = pad + Math.floor(k / columns) * (cellH + pad);
    canvas.paste(faces.subarray(k * plane, (k + 1) * plane), size, x, y, scale);
    const { valence, arousal } = labels[k];
    const textY = y + size * scale + 2;
    canvas.text(x, textY, vaCaption(labels[k]), [0, 0, 0]);
    const bar = (value: number, barY: number, positive: Rgb, negative: Rgb) => {
      const half = Math.floor(cellW / 2);
      const length = Math.round(Math.min(1, Math.abs(value)) * half);
      const start = value >= 0 ? x + half : x + half - length;
      canvas.fillRect(x, barY, cellW, 3, [225, 225, 225]);
      canvas.fillRect(start, barY, length, 3, value >= 0 ? positive : negative);
      canvas.fillRect(x + half, barY - 1, 1, 5, [0, 0, 0]);
    };
    bar(valence, textY + 7, [40, 160, 60], [200, 40, 40]);
    bar(arousal, textY + 12, [240, 140, 20], [50, 90, 200]);
  }
  return await encodePngRgba(canvas);
}

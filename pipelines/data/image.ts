import { Image } from "imagescript";
import { DataError } from "./errors.ts";
import type { Box } from "./types.ts";

/** An interleaved 8-bit RGBA image (HWC), as decoders and PNG encoders use. */
export interface RgbaImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `width * height * 4` bytes, row-major RGBA. */
  data: Uint8Array | Uint8ClampedArray;
}

/**
 * Decodes PNG or JPEG bytes into RGBA. Throws a `DataError` naming `source` when the bytes are
 * not a decodable PNG/JPEG, so callers can count and skip bad files.
 */
export async function decodeImage(bytes: Uint8Array, source = "<bytes>"): Promise<RgbaImage> {
  const isPng = bytes.length > 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e;
  const isJpeg = bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8;
  if (!isPng && !isJpeg) throw new DataError("not a PNG or JPEG file", { file: source });
  let decoded: Image;
  try {
    decoded = await Image.decode(bytes);
  } catch (error) {
    throw new DataError(`cannot decode image (${errorText(error)})`, { file: source });
  }
  if (!(decoded instanceof Image) || decoded.width < 1 || decoded.height < 1) {
    throw new DataError("decoded to an empty image", { file: source });
  }
  return { width: decoded.width, height: decoded.height, data: decoded.bitmap };
}

/** Reads and decodes an image file; see `decodeImage`. */
export async function readImageFile(path: string): Promise<RgbaImage> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new DataError(`cannot read image (${errorText(error)})`, { file: path });
  }
  return await decodeImage(bytes, path);
}

/** Options for `cropResize`. */
export interface CropOptions {
  /** Output side length in pixels (the output is square). Default 64. */
  size?: number;
  /** Grow the box by this fraction of its width/height on every side before clamping. */
  margin?: number;
}

/**
 * Crops `box` (grown by `margin`, then clamped to the image) and resizes it to `size x size`,
 * returning CHW float32 RGB in [0, 1]. Downscaling averages the exact source area under each
 * output pixel (so no aliasing when shrinking a 500-px face to 64 px); upscaling is bilinear
 * with half-pixel centres. Alpha is ignored.
 */
export function cropResize(image: RgbaImage, box: Box, options: CropOptions = {}): Float32Array {
  const size = options.size ?? 64;
  const margin = options.margin ?? 0;
  const [bx, by, bw, bh] = box;
  if (![bx, by, bw, bh].every(Number.isFinite) || bw <= 0 || bh <= 0) {
    throw new DataError(`invalid crop box [${box.join(", ")}]`);
  }
  const x0 = clamp(bx - margin * bw, 0, image.width);
  const x1 = clamp(bx + bw + margin * bw, 0, image.width);
  const y0 = clamp(by - margin * bh, 0, image.height);
  const y1 = clamp(by + bh + margin * bh, 0, image.height);
  if (x1 - x0 <= 0 || y1 - y0 <= 0) {
    throw new DataError(
      `crop box [${box.join(", ")}] lies outside the ${image.width}x${image.height} image`,
    );
  }
  const columns = resampleWeights(x0, x1, size, image.width);
  const rows = resampleWeights(y0, y1, size, image.height);

  // Horizontal pass over only the source rows the vertical pass will touch.
  const firstRow = Math.min(...rows.map((r) => r.first));
  const lastRow = Math.max(...rows.map((r) => r.first + r.weights.length - 1));
  const rowCount = lastRow - firstRow + 1;
  const horizontal = new Float32Array(rowCount * size * 3);
  const src = image.data;
  for (let r = 0; r < rowCount; r++) {
    const rowBase = (firstRow + r) * image.width * 4;
    for (let j = 0; j < size; j++) {
      const { first, weights } = columns[j];
      let red = 0, green = 0, blue = 0;
      for (let k = 0; k < weights.length; k++) {
        const p = rowBase + (first + k) * 4;
        const w = weights[k];
        red += w * src[p];
        green += w * src[p + 1];
        blue += w * src[p + 2];
      }
      const t = (r * size + j) * 3;
      horizontal[t] = red;
      horizontal[t + 1] = green;
      horizontal[t + 2] = blue;
    }
  }
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < size; i++) {
    const { first, weights } = rows[i];
    for (let j = 0; j < size; j++) {
      let red = 0, green = 0, blue = 0;
      for (let k = 0; k < weights.length; k++) {
        const t = ((first - firstRow + k) * size + j) * 3;
        const w = weights[k];
        red += w * horizontal[t];
        green += w * horizontal[t + 1];
        blue += w * horizontal[t + 2];
      }
      const o = i * size + j;
      out[o] = red / 255;
      out[plane + o] = green / 255;
      out[2 * plane + o] = blue / 255;
    }
  }
  return out;
}

/** Source pixels and weights contributing to one output pixel along one axis. */
interface AxisTap {
  first: number;
  weights: number[];
}

/** 1-D resampling taps for mapping source interval [start, end) onto `count` output pixels. */
function resampleWeights(start: number, end: number, count: number, limit: number): AxisTap[] {
  const step = (end - start) / count;
  const taps: AxisTap[] = [];
  for (let i = 0; i < count; i++) {
    if (step >= 1) {
      // Area average: weight = overlap of source pixel [k, k+1) with the output footprint.
      const lo = start + i * step;
      const hi = lo + step;
      const first = Math.min(Math.floor(lo), limit - 1);
      const last = Math.min(Math.ceil(hi) - 1, limit - 1);
      const weights: number[] = [];
      for (let k = first; k <= last; k++) {
        weights.push(Math.max(0, Math.min(hi, k + 1) - Math.max(lo, k)) / step);
      }
      taps.push({ first, weights });
    } else {
      // Bilinear between the two nearest source pixel centres, clamped at the image border.
      const centre = start + (i + 0.5) * step - 0.5;
      const left = Math.floor(centre);
      const frac = centre - left;
      const a = clamp(left, 0, limit - 1);
      const b = clamp(left + 1, 0, limit - 1);
      if (a === b) taps.push({ first: a, weights: [1] });
      else taps.push({ first: a, weights: [1 - frac, frac] });
    }
  }
  return taps;
}

/** Converts CHW float RGB in [0, 1] to opaque RGBA bytes (values are clamped and rounded). */
export function chwToRgba(chw: Float32Array, width: number, height = width): RgbaImage {
  const plane = width * height;
  if (chw.length !== 3 * plane) {
    throw new DataError(`CHW image has ${chw.length} values, expected 3 x ${width} x ${height}`);
  }
  const data = new Uint8Array(plane * 4);
  for (let i = 0; i < plane; i++) {
    data[i * 4] = toByte(chw[i]);
    data[i * 4 + 1] = toByte(chw[plane + i]);
    data[i * 4 + 2] = toByte(chw[2 * plane + i]);
    data[i * 4 + 3] = 255;
  }
  return { width, height, data };
}

/** Converts RGBA bytes to CHW float RGB in [0, 1] without resizing. */
export function rgbaToChw(image: RgbaImage): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = image.data[i * 4] / 255;
    out[plane + i] = image.data[i * 4 + 1] / 255;
    out[2 * plane + i] = image.data[i * 4 + 2] / 255;
  }
  return out;
}

/** Encodes an RGBA image as PNG bytes. */
export async function encodePngRgba(image: RgbaImage): Promise<Uint8Array> {
  const out = new Image(image.width, image.height);
  out.bitmap.set(image.data);
  return await out.encode();
}

/** Encodes a CHW float image in [0, 1] (square unless `height` is given) as PNG bytes. */
export async function encodePngChw(
  chw: Float32Array,
  width: number,
  height = width,
): Promise<Uint8Array> {
  return await encodePngRgba(chwToRgba(chw, width, height));
}

/** Encodes a CHW float image in [0, 1] as JPEG bytes (quality 1-100). */
export async function encodeJpegChw(
  chw: Float32Array,
  width: number,
  height = width,
  quality = 95,
): Promise<Uint8Array> {
  const rgba = chwToRgba(chw, width, height);
  const out = new Image(width, height);
  out.bitmap.set(rgba.data);
  return await out.encodeJPEG(quality as Parameters<Image["encodeJPEG"]>[0]);
}

/**
 * Reads an image's pixel size from its PNG IHDR or JPEG SOF header without decoding pixels;
 * returns undefined when the bytes are neither.
 */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 24 && bytes[0] === 0x89 && bytes[1] === 0x50) {
    return { width: view.getUint32(16), height: view.getUint32(20) };
  }
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let p = 2;
  while (p + 9 < bytes.length) {
    if (bytes[p] !== 0xff) return undefined;
    const marker = bytes[p + 1];
    if (marker === 0xff) { // fill byte
      p++;
      continue;
    }
    const isStartOfFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 &&
      marker !== 0xc8 && marker !== 0xcc;
    if (isStartOfFrame) return { width: view.getUint16(p + 7), height: view.getUint16(p + 5) };
    p += 2 + view.getUint16(p + 2);
  }
  return undefined;
}

function clamp(value: number, low: number, high: number): number {
  return value < low ? low : value > high ? high : value;
}

function toByte(value: number): number {
  return Math.round(clamp(value, 0, 1) * 255);
}

/** Short text for an unknown thrown value. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

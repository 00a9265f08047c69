/**
 * Turns samples into a face tensor (N x 3 x S x S float32 in [0, 1]): decode, crop by box,
 * resize; synthetic ids are re-rendered. An optional per-split cache file makes later epochs
 * skip decoding entirely.
 */
import { DataError } from "./errors.ts";
import { writeFileAtomic } from "./fs_util.ts";
import { cropResize, errorText, readImageFile } from "./image.ts";
import { isSyntheticId, parseSyntheticId, renderFace } from "./synthetic.ts";
import type { FaceSample } from "./types.ts";

/** What to do when an image cannot be read or decoded. */
export type BadImagePolicy = "skip" | "fail";

/** Options for `loadFaces` / `loadFaceSet`. */
export interface LoadFacesOptions {
  /** Output side length. Default 64 (use 224 for the regressor path). */
  size?: number;
  /** Extra margin around each box, as a fraction of its size per side. Default 0. */
  margin?: number;
  /**
   * Path of a cache file for this split. When it holds the same samples at the same size it is
   * used instead of decoding; otherwise (missing, stale, corrupt, truncated) it is rebuilt.
   * Cached pixels are stored as bytes, so with a cache every value is a multiple of 1/255
   * (first and later epochs return identical data).
   */
  cache?: string;
  /** "skip" (default): count bad images and leave them out / zero; "fail": throw. */
  onBadImage?: BadImagePolicy;
  /** Receives one summary line about skipped images and cache rebuilds. Default console.warn. */
  log?: (line: string) => void;
}

/** An image that could not be used, and why. */
export interface BadImage {
  /** Index in the input samples. */
  index: number;
  /** The sample's image path. */
  image: string;
  /** Decoder or file-system message. */
  reason: string;
}

/** Result of `loadFaceSet`: the usable faces and their samples, aligned. */
export interface FaceSet {
  /** `samples.length x 3 x size x size` float32 in [0, 1]. */
  faces: Float32Array;
  /** The input samples minus the bad ones, in input order. */
  samples: FaceSample[];
  /** Side length of each face. */
  size: number;
  /** How many samples were skipped. */
  skipped: number;
  /** The skipped samples with reasons. */
  badImages: BadImage[];
}

/**
 * Loads faces aligned with `samples`: entry k is sample k. A bad image under "skip" becomes an
 * all-zero face (counted in the summary line); use `loadFaceSet` to drop such samples instead.
 */
export async function loadFaces(
  samples: readonly FaceSample[],
  options: LoadFacesOptions = {},
): Promise<Float32Array> {
  return (await loadAll(samples, options)).faces;
}

/** Like `loadFaces`, but drops bad images and returns the remaining samples with their faces. */
export async function loadFaceSet(
  samples: readonly FaceSample[],
  options: LoadFacesOptions = {},
): Promise<FaceSet> {
  const { faces, ok, size, badImages } = await loadAll(samples, options);
  const plane = 3 * size * size;
  if (badImages.length === 0) {
    return { faces, samples: [...samples], size, skipped: 0, badImages };
  }
  const kept: FaceSample[] = [];
  const packed = new Float32Array((samples.length - badImages.length) * plane);
  samples.forEach((sample, i) => {
    if (ok[i] === 0) return;
    packed.set(faces.subarray(i * plane, (i + 1) * plane), kept.length * plane);
    kept.push(sample);
  });
  return { faces: packed, samples: kept, size, skipped: badImages.length, badImages };
}

interface Loaded {
  faces: Float32Array;
  ok: Uint8Array;
  size: number;
  badImages: BadImage[];
}

async function loadAll(samples: readonly FaceSample[], options: LoadFacesOptions): Promise<Loaded> {
  const size = options.size ?? 64;
  const margin = options.margin ?? 0;
  const policy = options.onBadImage ?? "skip";
  const log = options.log ?? ((line: string) => console.warn(line));
  if (!Number.isInteger(size) || size < 1) throw new DataError(`loadFaces: bad size ${size}`);
  if (policy !== "skip" && policy !== "fail") {
    throw new DataError(`loadFaces: onBadImage must be "skip" or "fail", got "${policy}"`);
  }
  if (samples.length === 0) throw new DataError("loadFaces: no samples to load");

  const key = options.cache === undefined ? undefined : await cacheKey(samples, size, margin);
  if (options.cache !== undefined && key !== undefined) {
    const cached = await readFaceCache(options.cache, key, samples.length, size);
    if (cached.hit) {
      const badImages = samples.flatMap((s, index) =>
        cached.ok[index] === 0 ? [{ index, image: s.image, reason: "bad image (cached)" }] : []
      );
      if (badImages.length > 0) summarise(badImages, samples.length, log);
      return { faces: cached.faces, ok: cached.ok, size, badImages };
    }
    if (cached.reason !== "missing") {
      log(`loadFaces: rebuilding cache ${options.cache}: ${cached.reason}`);
    }
  }

  const plane = 3 * size * size;
  const faces = new Float32Array(samples.length * plane);
  const ok = new Uint8Array(samples.length);
  const badImages: BadImage[] = [];
  for (let index = 0; index < samples.length; index++) {
    const sample = samples[index];
    const target = faces.subarray(index * plane, (index + 1) * plane);
    try {
      if (isSyntheticId(sample.image)) {
        // Rendered straight at the requested size; the box (whole image) is implied.
        renderFace(parseSyntheticId(sample.image), size, target);
      } else {
        target.set(cropResize(await readImageFile(sample.image), sample.box, { size, margin }));
      }
      ok[index] = 1;
    } catch (error) {
      if (policy === "fail") {
        throw new DataError(`loadFaces: sample ${index}: ${errorText(error)}`);
      }
      badImages.push({ index, image: sample.image, reason: errorText(error) });
    }
  }
  if (badImages.length > 0) summarise(badImages, samples.length, log);
  if (options.cache !== undefined && key !== undefined) {
    quantiseToBytes(faces);
    await writeFaceCache(options.cache, key, size, faces, ok);
  }
  return { faces, ok, size, badImages };
}

function summarise(badImages: BadImage[], total: number, log: (line: string) => void): void {
  const first = badImages[0];
  log(
    `loadFaces: skipped ${badImages.length} of ${total} images that could not be loaded ` +
      `(first: ${first.reason})`,
  );
}

function quantiseToBytes(faces: Float32Array): void {
  for (let i = 0; i < faces.length; i++) faces[i] = Math.round(faces[i] * 255) / 255;
}

// ---- cache file -------------------------------------------------------------------------
//
// Layout (little-endian):
//   0  "VAFACES1"            8-byte magic
//   8  u32 header bytes      (64)
//  12  u32 count            N faces
//  16  u32 size             S
//  20  u32 channels         3
//  24  32 bytes             SHA-256 of the sample list, size and margin
//  56  u32 checksum         FNV-1a over everything after the header
//  60  u32 reserved
//  64  N bytes              1 = face present, 0 = bad image
//  64+N  N*3*S*S bytes      pixels, value * 255 rounded
const CACHE_MAGIC = "VAFACES1";
const CACHE_HEADER_BYTES = 64;

/** SHA-256 over the sample list (image, box) plus size and margin: the cache's identity. */
export async function cacheKey(
  samples: readonly FaceSample[],
  size: number,
  margin: number,
): Promise<Uint8Array> {
  const description = JSON.stringify({
    size,
    margin,
    samples: samples.map((s) => [s.image, s.box]),
  });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(description));
  return new Uint8Array(digest);
}

/** Outcome of reading a cache file. */
export type CacheRead =
  | { hit: true; faces: Float32Array; ok: Uint8Array }
  | { hit: false; reason: string };

/**
 * Reads a face cache written by `writeFaceCache`. Returns a miss with a reason when the file is
 * missing, for different samples/size, truncated, or fails its checksum.
 */
export async function readFaceCache(
  path: string,
  key: Uint8Array,
  count: number,
  size: number,
): Promise<CacheRead> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    return { hit: false, reason: "missing" };
  }
  if (bytes.length < CACHE_HEADER_BYTES) return { hit: false, reason: "truncated header" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== CACHE_MAGIC) return { hit: false, reason: "not a face cache file" };
  if (view.getUint32(12, true) !== count || view.getUint32(16, true) !== size) {
    return { hit: false, reason: "different sample count or size" };
  }
  if (!key.every((b, i) => bytes[24 + i] === b)) return { hit: false, reason: "different samples" };
  const plane = 3 * size * size;
  const expectedLength = CACHE_HEADER_BYTES + count + count * plane;
  if (bytes.length !== expectedLength) {
    return { hit: false, reason: `truncated (${bytes.length} of ${expectedLength} bytes)` };
  }
  const body = bytes.subarray(CACHE_HEADER_BYTES);
  if (fnv1a(body) !== view.getUint32(56, true)) return { hit: false, reason: "checksum mismatch" };
  const ok = body.slice(0, count);
  const pixels = body.subarray(count);
  const faces = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) faces[i] = pixels[i] / 255;
  return { hit: true, faces, ok };
}

/** Writes a face cache atomically (temporary file, then rename). */
export async function writeFaceCache(
  path: string,
  key: Uint8Array,
  size: number,
  faces: Float32Array,
  ok: Uint8Array,
): Promise<void> {
  const count = ok.length;
  const bytes = new Uint8Array(CACHE_HEADER_BYTES + count + faces.length);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(CACHE_MAGIC), 0);
  view.setUint32(8, CACHE_HEADER_BYTES, true);
  view.setUint32(12, count, true);
  view.setUint32(16, size, true);
  view.setUint32(20, 3, true);
  bytes.set(key, 24);
  bytes.set(ok, CACHE_HEADER_BYTES);
  const pixels = bytes.subarray(CACHE_HEADER_BYTES + count);
  for (let i = 0; i < faces.length; i++) {
    const v = faces[i];
    pixels[i] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
  }
  view.setUint32(56, fnv1a(bytes.subarray(CACHE_HEADER_BYTES)), true);
  await writeFileAtomic(path, bytes);
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

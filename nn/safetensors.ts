/**
 * A self-contained codec for the Hugging Face safetensors format.
 *
 * Layout: an 8-byte little-endian unsigned length `N`, then `N` bytes of UTF-8 JSON header
 * (optionally padded with trailing spaces), then the data buffer. The header maps each tensor
 * name to `{ dtype, shape, data_offsets: [begin, end] }`, with offsets relative to the start of
 * the data buffer, plus an optional `"__metadata__"` object of string values. The tensors must
 * cover the data buffer exactly: no overlaps and no holes.
 *
 * All multi-byte values are read and written as little-endian through `DataView` or, when the
 * host itself is little-endian, through typed arrays; nothing assumes the platform byte order.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Element types this codec reads and writes. */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

/**
 * Decoded tensor elements. Each dtype keeps its natural typed array, except that F16 and BF16
 * widen to `Float32Array` and BOOL is a `Uint8Array` of 0/1.
 */
export type SafetensorsData =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/** One tensor decoded from a safetensors file. */
export interface SafetensorsEntry {
  /** Element type as stored in the file. */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Elements in row-major order; `data.length` is the product of `shape`. */
  data: SafetensorsData;
}

/** Everything a safetensors file holds. */
export interface SafetensorsContents {
  /** Tensors by name, in the order the header lists them. */
  tensors: Map<string, SafetensorsEntry>;
  /** The header's `"__metadata__"` strings; `{}` when absent. */
  metadata: Record<string, string>;
}

/**
 * One tensor to write. `data` may be a typed array or a plain array: numbers for every dtype
 * (F32/F16/BF16 round to nearest, ties to even; integer dtypes require integers in range; BOOL
 * requires 0 or 1), and additionally bigints for I64, whose plain numbers must be safe
 * integers.
 */
export interface SafetensorsTensorInput {
  /** Element type to store. */
  dtype: SafetensorsDtype;
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: readonly number[];
  /** Elements in row-major order; the length must equal the product of `shape`. */
  data: ArrayLike<number> | ArrayLike<bigint>;
}

/**
 * Tensors to write, in order. A `Map` keeps its insertion order exactly; a plain object follows
 * JavaScript property order, which lists integer-like names ("0", "12") first.
 */
export type SafetensorsTensors =
  | ReadonlyMap<string, SafetensorsTensorInput>
  | Readonly<Record<string, SafetensorsTensorInput>>;

/** A malformed safetensors file or an unwritable tensor; the message names the file. */
export class SafetensorsError extends Error {
  /** The file (or `"<memory>"`) the problem was found in. */
  readonly fileName: string;

  /**
   * @param fileName The file the problem concerns.
   * @param problem What is wrong, without the file name.
   */
  constructor(fileName: string, problem: string) {
    super(`${fileName}: ${problem}`);
    this.name = "SafetensorsError";
    this.fileName = fileName;
  }
}

const BYTES_PER_ELEMENT: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Inclusive value ranges that plain-number input for the integer dtypes must respect. */
const INTEGER_RANGE: Partial<Record<SafetensorsDtype, readonly [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-(2 ** 15), 2 ** 15 - 1],
  I8: [-(2 ** 7), 2 ** 7 - 1],
  U8: [0, 2 ** 8 - 1],
  BOOL: [0, 1],
};

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const METADATA_KEY = "__metadata__";
const LENGTH_PREFIX_BYTES = 8;
/** Header padding makes the data buffer start on this boundary. */
const DATA_ALIGNMENT = 8;

/** Typed-array views read in host byte order, so they are only usable on little-endian hosts. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === "string" && Object.hasOwn(BYTES_PER_ELEMENT, value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns the element count of `shape`, or a description of what is wrong with it. */
function elementCount(shape: unknown): number | string {
  if (!Array.isArray(shape)) return `shape ${JSON.stringify(shape)} is not an array`;
  let count = 1;
  for (const dimension of shape) {
    if (!Number.isSafeInteger(dimension) || dimension < 0) {
      return `shape ${JSON.stringify(shape)} must hold non-negative integers`;
    }
    count *= dimension;
  }
  if (!Number.isSafeInteger(count)) return `shape ${JSON.stringify(shape)} has too many elements`;
  return count;
}

// ---------------------------------------------------------------------------------------------
// 16-bit floats

let halfToFloatTable: Float32Array | undefined;

/** All 65536 F16 values, built on first use: one lookup per element beats bit twiddling. */
function halfToFloat(): Float32Array {
  if (halfToFloatTable) return halfToFloatTable;
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const mantissa = bits & 0x3ff;
    if (exponent === 0) table[bits] = sign * mantissa * 2 ** -24;
    else if (exponent === 0x1f) table[bits] = mantissa === 0 ? sign * Infinity : NaN;
    else table[bits] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  halfToFloatTable = table;
  return table;
}

function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  return fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/**
 * Bits of the IEEE-style binary float with the given field widths nearest to `value` (ties to
 * even), rounding straight from f64 so there is no double rounding through f32.
 */
function encodeSmallFloat(value: number, exponentBits: number, mantissaBits: number): number {
  const maxExponentField = (1 << exponentBits) - 1;
  if (Number.isNaN(value)) return (maxExponentField << mantissaBits) | (1 << (mantissaBits - 1));
  const sign = value < 0 || Object.is(value, -0) ? 1 << (exponentBits + mantissaBits) : 0;
  const infinity = sign | (maxExponentField << mantissaBits);
  const magnitude = Math.abs(value);
  if (magnitude === Infinity) return infinity;
  const bias = (1 << (exponentBits - 1)) - 1;
  const minNormalExponent = 1 - bias;
  if (magnitude < 2 ** minNormalExponent) {
    // Count in units of the smallest subnormal; rounding up to 1 << mantissaBits yields exactly
    // the encoding of the smallest normal number.
    return sign | roundHalfToEven(magnitude * 2 ** (mantissaBits - minNormalExponent));
  }
  // log2 can be off by one near powers of two; correct it so 2^exponent <= magnitude < 2^(e+1).
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--;
  else if (2 ** (exponent + 1) <= magnitude) exponent++;
  if (exponent > bias) return infinity;
  const mantissa = roundHalfToEven((magnitude / 2 ** exponent - 1) * 2 ** mantissaBits);
  // A mantissa rounded up to 1 << mantissaBits carries into the exponent, reaching infinity
  // past the largest finite value, which is the correct rounding.
  return sign | (((exponent + bias) << mantissaBits) + mantissa);
}

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Top-level keys of an already validated JSON object text, in source order. `JSON.parse`
 * alone would move integer-like names ("0", "12") to the front of the object.
 */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const char = json[i];
    if (char === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === "\\") i++;
      if (depth !== 1) continue;
      let next = i + 1;
      while (" \t\n\r".includes(json[next])) next++;
      if (json[next] === ":") keys.push(JSON.parse(json.slice(start, i + 1)));
    } else if (char === "{" || char === "[") {
      depth++;
    } else if (char === "}" || char === "]") {
      depth--;
    }
  }
  return keys;
}

/** A header entry after validation, before its bytes are decoded. */
interface TensorLayout {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  count: number;
  begin: number;
  end: number;
}

function parseLayout(
  fileName: string,
  name: string,
  info: unknown,
  dataBytes: number,
): TensorLayout {
  const fail = (problem: string) => new SafetensorsError(fileName, `tensor "${name}": ${problem}`);
  if (!isPlainObject(info)) throw fail("header entry is not a JSON object");
  const { dtype, shape, data_offsets: offsets } = info;
  if (!isDtype(dtype)) {
    throw fail(
      `unknown dtype ${JSON.stringify(dtype)} (supported: ${
        Object.keys(BYTES_PER_ELEMENT).join(", ")
      })`,
    );
  }
  const count = elementCount(shape);
  if (typeof count === "string") throw fail(count);
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw fail(
      `data_offsets ${JSON.stringify(offsets)} must be [begin, end] with 0 <= begin <= end`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataBytes) {
    throw fail(
      `data_offsets [${begin}, ${end}] run past the ${dataBytes}-byte data buffer ` +
        `(truncated file?)`,
    );
  }
  const expectedBytes = count * BYTES_PER_ELEMENT[dtype];
  if (end - begin !== expectedBytes) {
    throw fail(
      `data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape ` +
        `${JSON.stringify(shape)} of ${dtype} needs ${expectedBytes}`,
    );
  }
  return { name, dtype, shape: [...(shape as number[])], count, begin, end };
}

/** Throws unless the tensors tile the data buffer exactly, with no overlap and no hole. */
function assertContiguous(fileName: string, layouts: TensorLayout[], dataBytes: number): void {
  const byOffset = [...layouts].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorLayout | undefined;
  for (const layout of byOffset) {
    if (layout.begin < covered) {
      throw new SafetensorsError(
        fileName,
        `tensor "${layout.name}" at bytes [${layout.begin}, ${layout.end}) overlaps tensor ` +
          `"${previous?.name}" at [${previous?.begin}, ${previous?.end})`,
      );
    }
    if (layout.begin > covered) {
      throw new SafetensorsError(
        fileName,
        `bytes [${covered}, ${layout.begin}) of the data buffer belong to no tensor (hole)`,
      );
    }
    covered = layout.end;
    previous = layout;
  }
  if (covered < dataBytes) {
    throw new SafetensorsError(
      fileName,
      `bytes [${covered}, ${dataBytes}) at the end of the data buffer belong to no tensor (hole)`,
    );
  }
}

/**
 * Decodes one tensor from `bytes[start, start + count * size)`. Aligned data on a
 * little-endian host becomes a view sharing memory with `bytes`; otherwise the elements are
 * read through a DataView into a fresh (hence aligned) array.
 */
function decodeTensor(
  fileName: string,
  layout: TensorLayout,
  bytes: Uint8Array,
  start: number,
): SafetensorsData {
  const { dtype, count, name } = layout;
  const absolute = bytes.byteOffset + start;
  const byteLength = count * BYTES_PER_ELEMENT[dtype];
  const buffer = bytes.buffer;
  const view = new DataView(buffer, absolute, byteLength);
  const canView = HOST_IS_LITTLE_ENDIAN && absolute % BYTES_PER_ELEMENT[dtype] === 0;
  switch (dtype) {
    case "F64": {
      if (canView) return new Float64Array(buffer, absolute, count);
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    case "F32": {
      if (canView) return new Float32Array(buffer, absolute, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case "I64": {
      if (canView) return new BigInt64Array(buffer, absolute, count);
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getBigInt64(i * 8, true);
      return out;
    }
    case "I32": {
      if (canView) return new Int32Array(buffer, absolute, count);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      return out;
    }
    case "I16": {
      if (canView) return new Int16Array(buffer, absolute, count);
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(i * 2, true);
      return out;
    }
    case "F16": {
      const table = halfToFloat();
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)];
      return out;
    }
    case "BF16": {
      // BF16 is the upper half of an F32; both views of `out` use host order, so writing the
      // shifted bits through the integer view yields the right floats on any host.
      const out = new Float32Array(count);
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) outBits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    case "I8":
      return new Int8Array(buffer, absolute, count);
    case "U8":
      return new Uint8Array(buffer, absolute, count);
    case "BOOL": {
      const out = new Uint8Array(buffer, absolute, count);
      const bad = out.findIndex((value) => value > 1);
      if (bad >= 0) {
        throw new SafetensorsError(
          fileName,
          `tensor "${name}": BOOL element ${bad} is ${out[bad]}, expected 0 or 1`,
        );
      }
      return out;
    }
  }
}

/**
 * Decodes a complete safetensors file held in memory.
 *
 * Tensors whose data is suitably aligned are returned as views that share memory with
 * `bytes` (no copy); writing to them changes `bytes`. F16/BF16 tensors and unaligned data are
 * always copied into fresh arrays.
 *
 * @param bytes The whole file.
 * @param fileName Name used in error messages.
 * @returns The tensors in header order and the header metadata.
 * @throws {SafetensorsError} If the file is shorter than 8 bytes, the header length exceeds
 *   the file, the header is not UTF-8 JSON describing an object, a name repeats, the metadata
 *   is not an object of strings, a dtype is unknown, a shape is not an array of non-negative
 *   integers, data_offsets are malformed, out of range (truncated file) or disagree with the
 *   shape, tensors overlap or leave holes in the data buffer, or a BOOL byte is not 0 or 1.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  fileName = "<memory>",
): SafetensorsContents {
  if (bytes.length < LENGTH_PREFIX_BYTES) {
    throw new SafetensorsError(
      fileName,
      `file is ${bytes.length} bytes, shorter than the 8-byte header length prefix`,
    );
  }
  const headerBytes = new DataView(bytes.buffer, bytes.byteOffset, LENGTH_PREFIX_BYTES)
    .getBigUint64(0, true);
  const bytesAfterPrefix = bytes.length - LENGTH_PREFIX_BYTES;
  if (headerBytes > BigInt(bytesAfterPrefix)) {
    throw new SafetensorsError(
      fileName,
      `header length ${headerBytes} exceeds the ${bytesAfterPrefix} bytes after the length ` +
        `prefix (truncated or not a safetensors file)`,
    );
  }
  const dataStart = LENGTH_PREFIX_BYTES + Number(headerBytes);
  const dataBytes = bytes.length - dataStart;

  let headerText: string;
  try {
    headerText = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
      .decode(bytes.subarray(LENGTH_PREFIX_BYTES, dataStart));
  } catch {
    throw new SafetensorsError(fileName, "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new SafetensorsError(fileName, `header is not valid JSON (${reason})`);
  }
  if (!isPlainObject(header)) {
    throw new SafetensorsError(fileName, "header is not a JSON object");
  }

  const names = topLevelKeys(headerText);
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) {
      throw new SafetensorsError(fileName, `header lists "${name}" more than once`);
    }
    seen.add(name);
  }

  const metadata: Record<string, string> = {};
  if (Object.hasOwn(header, METADATA_KEY)) {
    const rawMetadata = header[METADATA_KEY];
    if (!isPlainObject(rawMetadata)) {
      throw new SafetensorsError(fileName, `"${METADATA_KEY}" is not a JSON object`);
    }
    for (const [key, value] of Object.entries(rawMetadata)) {
      if (typeof value !== "string") {
        throw new SafetensorsError(
          fileName,
          `"${METADATA_KEY}" value for "${key}" is ${JSON.stringify(value)}, not a string`,
        );
      }
      metadata[key] = value;
    }
  }

  const layouts = names
    .filter((name) => name !== METADATA_KEY)
    .map((name) => parseLayout(fileName, name, header[name], dataBytes));
  assertContiguous(fileName, layouts, dataBytes);

  const tensors = new Map<string, SafetensorsEntry>();
  for (const layout of layouts) {
    tensors.set(layout.name, {
      dtype: layout.dtype,
      shape: layout.shape,
      data: decodeTensor(fileName, layout, bytes, dataStart + layout.begin),
    });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Serialisation

/** The typed array whose bytes on a little-endian host already are the stored encoding. */
const NATIVE_ARRAY: Partial<Record<SafetensorsDtype, abstract new (length: number) => unknown>> = {
  F64: Float64Array,
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U8: Uint8Array,
};

/** Writes the elements of `tensor` little-endian into `out` starting at `position`. */
function encodeTensor(
  fileName: string,
  name: string,
  tensor: SafetensorsTensorInput,
  out: Uint8Array,
  position: number,
  count: number,
): void {
  const { dtype, data } = tensor;
  const fail = (problem: string) =>
    new SafetensorsError(fileName, `cannot write tensor "${name}": ${problem}`);
  const nativeArray = NATIVE_ARRAY[dtype];
  if (HOST_IS_LITTLE_ENDIAN && nativeArray && data instanceof nativeArray) {
    const typed = data as unknown as ArrayBufferView;
    out.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength), position);
    return;
  }
  const view = new DataView(
    out.buffer,
    out.byteOffset + position,
    count * BYTES_PER_ELEMENT[dtype],
  );
  const numberAt = (i: number): number => {
    const value = data[i];
    if (typeof value !== "number") {
      throw fail(`element ${i} is a ${typeof value}, ${dtype} needs numbers`);
    }
    return value;
  };

  if (dtype === "I64") {
    for (let i = 0; i < count; i++) {
      const value = data[i];
      let wide: bigint;
      if (typeof value === "bigint") {
        wide = value;
      } else if (Number.isSafeInteger(value)) {
        wide = BigInt(value);
      } else {
        throw fail(`element ${i} (${value}) is not a safe integer; pass a bigint for I64`);
      }
      if (wide < I64_MIN || wide > I64_MAX) throw fail(`element ${i} (${wide}) overflows I64`);
      view.setBigInt64(i * 8, wide, true);
    }
    return;
  }

  const range = INTEGER_RANGE[dtype];
  for (let i = 0; i < count; i++) {
    const value = numberAt(i);
    if (range && !(Number.isInteger(value) && value >= range[0] && value <= range[1])) {
      throw fail(`element ${i} (${value}) is not an integer in [${range[0]}, ${range[1]}]`);
    }
    switch (dtype) {
      case "F64":
        view.setFloat64(i * 8, value, true);
        break;
      case "F32":
        view.setFloat32(i * 4, value, true);
        break;
      case "F16":
        view.setUint16(i * 2, encodeSmallFloat(value, 5, 10), true);
        break;
      case "BF16":
        view.setUint16(i * 2, encodeSmallFloat(value, 8, 7), true);
        break;
      case "I32":
        view.setInt32(i * 4, value, true);
        break;
      case "I16":
        view.setInt16(i * 2, value, true);
        break;
      case "I8":
        view.setInt8(i, value);
        break;
      case "U8":
      case "BOOL":
        view.setUint8(i, value);
        break;
    }
  }
}

/**
 * Encodes tensors (and optional metadata) as a safetensors file.
 *
 * Tensors are stored in the given order, back to back. The header is padded with spaces to a
 * multiple of 8 bytes, so the data buffer starts 8-byte aligned; a tensor following one whose
 * size is not a multiple of the next item size is unaligned, which {@linkcode parseSafetensors}
 * handles by copying.
 *
 * @param tensors Tensors by name, in the order to write them.
 * @param metadata Free-form string pairs stored as `"__metadata__"` (omitted when empty).
 * @returns The complete file.
 * @throws {SafetensorsError} On a name equal to `"__metadata__"`, an unknown dtype, a bad
 *   shape, a data length that does not match the shape, a value the dtype cannot hold, or a
 *   non-string metadata value.
 */
export function serializeSafetensors(
  tensors: SafetensorsTensors,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  return encodeFile("<memory>", tensors, metadata);
}

/** {@linkcode serializeSafetensors}, naming `fileName` in its errors. */
function encodeFile(
  fileName: string,
  tensors: SafetensorsTensors,
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  const entries: [string, SafetensorsTensorInput][] = tensors instanceof Map
    ? [...tensors]
    : Object.entries(tensors as Readonly<Record<string, SafetensorsTensorInput>>);

  // The header is assembled by hand so that entries keep the caller's order even for
  // integer-like names, which a JS object would move to the front.
  const headerParts: string[] = [];
  const metadataEntries = Object.entries(metadata);
  for (const [key, value] of metadataEntries) {
    if (typeof value !== "string") {
      throw new SafetensorsError(
        fileName,
        `metadata value for "${key}" is a ${typeof value}, not a string`,
      );
    }
  }
  if (metadataEntries.length > 0) {
    headerParts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }

  const counts: number[] = [];
  let dataBytes = 0;
  for (const [name, tensor] of entries) {
    const fail = (problem: string) =>
      new SafetensorsError(fileName, `cannot write tensor "${name}": ${problem}`);
    if (name === METADATA_KEY) throw fail(`the name "${METADATA_KEY}" is reserved`);
    if (!isDtype(tensor.dtype)) throw fail(`unknown dtype ${JSON.stringify(tensor.dtype)}`);
    const count = elementCount(tensor.shape);
    if (typeof count === "string") throw fail(count);
    if (tensor.data.length !== count) {
      throw fail(
        `shape ${JSON.stringify(tensor.shape)} needs ${count} elements, data has ` +
          `${tensor.data.length}`,
      );
    }
    const begin = dataBytes;
    dataBytes += count * BYTES_PER_ELEMENT[tensor.dtype];
    counts.push(count);
    const info = {
      dtype: tensor.dtype,
      shape: [...tensor.shape],
      data_offsets: [begin, dataBytes],
    };
    headerParts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
  }

  const header = new TextEncoder().encode(`{${headerParts.join(",")}}`);
  const paddedHeaderBytes = Math.ceil(header.length / DATA_ALIGNMENT) * DATA_ALIGNMENT;
  const dataStart = LENGTH_PREFIX_BYTES + paddedHeaderBytes;
  const out = new Uint8Array(dataStart + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(paddedHeaderBytes), true);
  out.set(header, LENGTH_PREFIX_BYTES);
  out.fill(0x20, LENGTH_PREFIX_BYTES + header.length, dataStart);

  let position = dataStart;
  entries.forEach(([name, tensor], index) => {
    encodeTensor(fileName, name, tensor, out, position, counts[index]);
    position += counts[index] * BYTES_PER_ELEMENT[tensor.dtype];
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files

/**
 * Reads and decodes a safetensors file. Tensors may share memory with the file's bytes, which
 * nothing else references.
 *
 * @param path The file to read.
 * @returns The tensors in header order and the header metadata.
 * @throws {SafetensorsError} On a malformed file (see {@linkcode parseSafetensors}).
 * @throws {Deno.errors.NotFound} And other I/O errors from reading the file.
 */
export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  return parseSafetensors(await Deno.readFile(path), path);
}

/**
 * Encodes tensors and writes them to `path` atomically: the bytes go to a temporary file in
 * the same folder, are flushed to disk, and the temporary file is then renamed over `path`. A
 * reader therefore sees either the old file or the complete new one, never a partial write,
 * and a failure leaves the old file untouched and no temporary file behind.
 *
 * @param path Destination file; its folder must exist.
 * @param tensors Tensors by name, in the order to write them.
 * @param metadata Free-form string pairs stored as `"__metadata__"`.
 * @throws {SafetensorsError} If the tensors cannot be encoded (nothing is written then).
 * @throws {Deno.errors.PermissionDenied} And other I/O errors from writing or renaming.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: SafetensorsTensors,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const bytes = encodeFile(path, tensors, metadata);
  const tempPath = join(dirname(path), `.${basename(path)}.${crypto.randomUUID()}.tmp`);
  let created = false;
  try {
    const file = await Deno.open(tempPath, { write: true, createNew: true });
    created = true;
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(tempPath, path);
  } catch (error) {
    if (created) await Deno.remove(tempPath).catch(() => {});
    throw error;
  }
}

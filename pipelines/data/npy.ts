/** Minimal NumPy `.npy` reader/writer for the AffectNet 8-label release annotations. */
import { DataError } from "./errors.ts";

/** A parsed `.npy` array: numeric dtypes become numbers, `<U..` dtypes become strings. */
export interface NpyArray {
  /** NumPy dtype descriptor, e.g. `<f4` or `<U5`. */
  dtype: string;
  /** Array shape; `[]` for a 0-d scalar. */
  shape: number[];
  /** Values in C order. */
  values: number[] | string[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/**
 * Parses `.npy` bytes (format versions 1-3). Supported dtypes: little-endian or byte-order-free
 * f4, f8, i1/i2/i4/i8, u1/u2/u4, b1, and `<U<n>` unicode strings. Errors name `source`.
 */
export function parseNpy(bytes: Uint8Array, source = "<npy>"): NpyArray {
  const fail = (message: string): never => {
    throw new DataError(`invalid .npy file: ${message}`, { file: source });
  };
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) fail("missing \\x93NUMPY magic");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  let headerLength: number, headerStart: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail("truncated header");
    headerLength = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return fail(`unsupported format version ${major}`);
  }
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) fail("truncated header");
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(headerStart, dataStart),
  );
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    return fail(`cannot parse header ${JSON.stringify(header.trim())}`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (shape.some((n) => !Number.isInteger(n) || n < 0)) fail(`bad shape (${shapeText})`);
  if (fortran === "True" && shape.length > 1) fail("Fortran-order arrays are not supported");
  const count = shape.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(dataStart);
  const bodyView = new DataView(body.buffer, body.byteOffset, body.byteLength);

  const match = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  if (match === null) return fail(`unsupported dtype '${descr}'`);
  const [, order, kind, widthText] = match;
  const width = Number(widthText);
  if (order === ">" && width > 1) fail(`big-endian dtype '${descr}' is not supported`);
  const itemBytes = kind === "U" ? 4 * width : width;
  if (body.length < count * itemBytes) {
    fail(`data is truncated: ${body.length} bytes for ${count} items of '${descr}'`);
  }

  if (kind === "U") {
    const values: string[] = [];
    for (let i = 0; i < count; i++) {
      let text = "";
      for (let c = 0; c < width; c++) {
        const codePoint = bodyView.getUint32(i * itemBytes + 4 * c, true);
        if (codePoint === 0) break; // NumPy pads with NULs
        text += String.fromCodePoint(codePoint);
      }
      values.push(text);
    }
    return { dtype: descr, shape, values };
  }
  const read = numericReader(kind, width);
  if (read === undefined) return fail(`unsupported dtype '${descr}'`);
  const values: number[] = [];
  for (let i = 0; i < count; i++) values.push(read(bodyView, i * width));
  return { dtype: descr, shape, values };
}

function numericReader(
  kind: string,
  width: number,
): ((view: DataView, offset: number) => number) | undefined {
  switch (`${kind}${width}`) {
    case "f4":
      return (v, o) => v.getFloat32(o, true);
    case "f8":
      return (v, o) => v.getFloat64(o, true);
    case "i1":
      return (v, o) => v.getInt8(o);
    case "i2":
      return (v, o) => v.getInt16(o, true);
    case "i4":
      return (v, o) => v.getInt32(o, true);
    case "i8":
      return (v, o) => Number(v.getBigInt64(o, true));
    case "u1":
    case "b1":
      return (v, o) => v.getUint8(o);
    case "u2":
      return (v, o) => v.getUint16(o, true);
    case "u4":
      return (v, o) => v.getUint32(o, true);
    default:
      return undefined;
  }
}

/** Reads and parses a `.npy` file; errors name the file. */
export async function readNpy(path: string): Promise<NpyArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new DataError(`cannot read (${error instanceof Error ? error.message : error})`, {
      file: path,
    });
  }
  return parseNpy(bytes, path);
}

/** Dtypes `encodeNpy` can write. */
export type NpyWriteDtype = "<f4" | "<f8" | "<i4" | "<i8" | "<U";

/**
 * Encodes values as a version-1 `.npy` file. `"<U"` writes strings padded to the longest one
 * (as NumPy does); the AffectNet 8-label release stores its labels that way.
 */
export function encodeNpy(
  values: readonly number[] | readonly string[],
  dtype: NpyWriteDtype,
  shape: number[] = [values.length],
): Uint8Array {
  const strings = values.map(String);
  const stringWidth = Math.max(1, ...strings.map((s) => [...s].length));
  const descr = dtype === "<U" ? `<U${stringWidth}` : dtype;
  const itemBytes = dtype === "<U" ? 4 * stringWidth : Number(dtype.slice(2));
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so the data starts on a 64-byte boundary, header ending in '\n', as NumPy writes it.
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + header.length + values.length * itemBytes);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  let p = 10 + header.length;
  for (let i = 0; i < values.length; i++, p += itemBytes) {
    const value = values[i];
    if (dtype === "<U") {
      [...strings[i]].forEach((ch, c) => view.setUint32(p + 4 * c, ch.codePointAt(0)!, true));
    } else if (dtype === "<f4") view.setFloat32(p, Number(value), true);
    else if (dtype === "<f8") view.setFloat64(p, Number(value), true);
    else if (dtype === "<i4") view.setInt32(p, Number(value), true);
    else view.setBigInt64(p, BigInt(Math.round(Number(value))), true);
  }
  return out;
}

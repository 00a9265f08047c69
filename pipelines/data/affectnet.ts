/**
 * Reader for AffectNet, both releases:
 *  - original ("manual"): `Manually_Annotated_file_lists/{training,validation}.csv` with images
 *    under `Manually_Annotated_Images/`;
 *  - 8-label ("8label"): `{train_set,val_set}/images/<id>.jpg` with per-image
 *    `annotations/<id>_{exp,val,aro,lnd}.npy`.
 * Both use `split: "train" | "validation"` (train_set / val_set for the 8-label release).
 * AffectNet has no identity labels, so `person` is the image path (every image its own person).
 */
import { join } from "node:path";
import { parseCsv } from "./csv.ts";
import { DataError } from "./errors.ts";
import { listDirectory, readText, requireDirectory } from "./fs_util.ts";
import { imageSize } from "./image.ts";
import { type NpyArray, readNpy } from "./npy.ts";
import { points68 } from "./align.ts";
import type { FaceSample, Point, ReadResult } from "./types.ts";

/** Which AffectNet split to read. */
export type AffectNetSplit = "train" | "validation";

/** Which AffectNet release layout to read; "auto" picks whichever the root holds. */
export type AffectNetRelease = "auto" | "manual" | "8label";

/** Options for `readAffectNet`. */
export interface ReadAffectNetOptions {
  /** "train" (default) or "validation". */
  split?: AffectNetSplit;
  /** Release layout. Default "auto" (original CSV layout preferred when both exist). */
  release?: AffectNetRelease;
}

/** Folder holding the original release's CSV lists. */
export const AFFECTNET_LISTS_DIR = "Manually_Annotated_file_lists";
/** Folder holding the original release's images. */
export const AFFECTNET_IMAGES_DIR = "Manually_Annotated_Images";
/** CSV file name of each split in the original release. */
export const AFFECTNET_CSV_NAMES: Record<AffectNetSplit, string> = {
  train: "training.csv",
  validation: "validation.csv",
};
/** Folder of each split in the 8-label release. */
export const AFFECTNET_8LABEL_DIRS: Record<AffectNetSplit, string> = {
  train: "train_set",
  validation: "val_set",
};

const REQUIRED_COLUMNS = [
  "subDirectory_filePath",
  "face_x",
  "face_y",
  "face_width",
  "face_height",
  "expression",
  "valence",
  "arousal",
];

/** AffectNet's marker for "no valid V/A". */
const INVALID_VA = -2;

/**
 * Reads one AffectNet split. Records with V/A = -2, expression 9 (uncertain) or 10 (non-face)
 * are dropped and counted; any other out-of-range or non-numeric value is a `DataError` naming
 * the file and line.
 */
export async function readAffectNet(
  root: string,
  options: ReadAffectNetOptions = {},
): Promise<ReadResult> {
  const split = options.split ?? "train";
  if (split !== "train" && split !== "validation") {
    throw new DataError(`readAffectNet: unknown split "${split}" (use "train" or "validation")`);
  }
  await requireDirectory(root, "AffectNet root folder");
  let release = options.release ?? "auto";
  if (release === "auto") {
    const hasLists = await isDirectory(join(root, AFFECTNET_LISTS_DIR));
    const has8Label = await isDirectory(join(root, AFFECTNET_8LABEL_DIRS[split]));
    if (!hasLists && !has8Label) {
      throw new DataError(
        `no AffectNet layout found: expected ${AFFECTNET_LISTS_DIR}/ or ` +
          `${AFFECTNET_8LABEL_DIRS[split]}/`,
        { file: root },
      );
    }
    release = hasLists ? "manual" : "8label";
  }
  return release === "manual" ? await readManual(root, split) : await read8Label(root, split);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function readManual(root: string, split: AffectNetSplit): Promise<ReadResult> {
  const csvPath = join(root, AFFECTNET_LISTS_DIR, AFFECTNET_CSV_NAMES[split]);
  const records = parseCsv(await readText(csvPath, "AffectNet CSV list"), csvPath);
  if (records.length === 0) throw new DataError("CSV file is empty", { file: csvPath, line: 1 });
  const header = records[0].fields.map((name) => name.trim());
  const column = new Map(header.map((name, index) => [name, index]));
  const missing = REQUIRED_COLUMNS.filter((name) => !column.has(name));
  if (missing.length > 0) {
    throw new DataError(`CSV header lacks column(s) ${missing.join(", ")}`, {
      file: csvPath,
      line: records[0].line,
    });
  }
  const landmarkColumn = column.get("facial_landmarks");
  const samples: FaceSample[] = [];
  let invalidVa = 0, uncertainOrNonFace = 0;
  for (const record of records.slice(1)) {
    const where = { file: csvPath, line: record.line };
    if (record.fields.length !== header.length) {
      throw new DataError(
        `expected ${header.length} fields, found ${record.fields.length}`,
        where,
      );
    }
    const field = (name: string) => record.fields[column.get(name)!].trim();
    const number = (name: string) => {
      const text = field(name);
      const value = Number(text);
      if (text === "" || !Number.isFinite(value)) {
        throw new DataError(`${name} is not a number: "${text}"`, where);
      }
      return value;
    };
    const expression = number("expression");
    if (!Number.isInteger(expression) || expression < 0 || expression > 10) {
      throw new DataError(`expression ${expression} is not a class in 0..10`, where);
    }
    const valence = number("valence");
    const arousal = number("arousal");
    if (expression >= 9) {
      uncertainOrNonFace++;
      continue;
    }
    if (valence === INVALID_VA || arousal === INVALID_VA) {
      invalidVa++;
      continue;
    }
    checkVaRange(valence, "valence", where);
    checkVaRange(arousal, "arousal", where);
    const width = number("face_width"), height = number("face_height");
    if (width <= 0 || height <= 0) {
      throw new DataError(`face box has non-positive size ${width}x${height}`, where);
    }
    const relative = field("subDirectory_filePath");
    if (relative === "") throw new DataError("empty subDirectory_filePath", where);
    const image = join(root, AFFECTNET_IMAGES_DIR, relative);
    const sample: FaceSample = {
      image,
      person: image,
      valence,
      arousal,
      box: [number("face_x"), number("face_y"), width, height],
      expression,
    };
    if (landmarkColumn !== undefined) {
      const landmarks = parseLandmarkField(record.fields[landmarkColumn], where);
      if (landmarks !== undefined) sample.landmarks = landmarks;
    }
    samples.push(sample);
  }
  return finish(samples, csvPath, { "V/A = -2": invalidVa, "class 9/10": uncertainOrNonFace });
}

function checkVaRange(value: number, name: string, where: { file: string; line?: number }): void {
  if (value < -1 || value > 1) throw new DataError(`${name} ${value} is outside [-1, 1]`, where);
}

function parseLandmarkField(
  text: string,
  where: { file: string; line: number },
): Point[] | undefined {
  if (text.trim() === "") return undefined;
  const values = text.split(";").map((s) => Number(s.trim()));
  const points = points68(values);
  if (!points) {
    throw new DataError(
      `facial_landmarks must be 136 numbers joined by ';', got ${values.length} values`,
      where,
    );
  }
  return points;
}

async function read8Label(root: string, split: AffectNetSplit): Promise<ReadResult> {
  const splitDir = join(root, AFFECTNET_8LABEL_DIRS[split]);
  const imagesDir = join(splitDir, "images");
  const annotationsDir = join(splitDir, "annotations");
  await requireDirectory(splitDir, "AffectNet split folder");
  await requireDirectory(imagesDir, "AffectNet images folder");
  await requireDirectory(annotationsDir, "AffectNet annotations folder");
  const ids = (await listDirectory(annotationsDir, "file"))
    .filter((name) => name.endsWith("_val.npy"))
    .map((name) => name.slice(0, -"_val.npy".length))
    .sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  const imageFiles = new Set(await listDirectory(imagesDir, "file"));
  const samples: FaceSample[] = [];
  let invalidVa = 0, uncertainOrNonFace = 0, missingImages = 0, unreadableImages = 0;
  for (const id of ids) {
    const annotation = (kind: string) => join(annotationsDir, `${id}_${kind}.npy`);
    const valence = npyScalar(await readNpy(annotation("val")), annotation("val"));
    const arousal = npyScalar(await readNpy(annotation("aro")), annotation("aro"));
    const expression = npyScalar(await readNpy(annotation("exp")), annotation("exp"));
    if (!Number.isInteger(expression) || expression < 0 || expression > 10) {
      throw new DataError(`expression ${expression} is not a class in 0..10`, {
        file: annotation("exp"),
      });
    }
    if (expression >= 9) {
      uncertainOrNonFace++;
      continue;
    }
    if (valence === INVALID_VA || arousal === INVALID_VA) {
      invalidVa++;
      continue;
    }
    checkVaRange(valence, "valence", { file: annotation("val") });
    checkVaRange(arousal, "arousal", { file: annotation("aro") });
    const imageName = [".jpg", ".jpeg", ".png"].map((ext) => id + ext).find((n) =>
      imageFiles.has(n)
    );
    if (imageName === undefined) {
      missingImages++;
      continue;
    }
    const image = join(imagesDir, imageName);
    // The release's images are face crops already, so the box is the whole image.
    const dimensions = imageSize(await readPrefix(image, 1 << 16)) ??
      imageSize(await Deno.readFile(image));
    if (dimensions === undefined) {
      unreadableImages++;
      continue;
    }
    const sample: FaceSample = {
      image,
      person: image,
      valence,
      arousal,
      box: [0, 0, dimensions.width, dimensions.height],
      expression,
    };
    const landmarks = await optionalLandmarks(annotation("lnd"));
    if (landmarks !== undefined) sample.landmarks = landmarks;
    samples.push(sample);
  }
  return finish(samples, splitDir, {
    "V/A = -2": invalidVa,
    "class 9/10": uncertainOrNonFace,
    "missing image": missingImages,
    "not a PNG/JPEG": unreadableImages,
  });
}

/**
 * The single number in a scalar-like `.npy` (shape `()` or `(1,)`); string dtypes such as the
 * 8-label release's `<U..` labels are parsed as decimal numbers.
 */
export function npyScalar(array: NpyArray, source: string): number {
  if (array.values.length !== 1) {
    throw new DataError(`expected one value, found shape (${array.shape.join(", ")})`, {
      file: source,
    });
  }
  const raw = array.values[0];
  const value = typeof raw === "string" ? (raw.trim() === "" ? NaN : Number(raw)) : raw;
  if (!Number.isFinite(value)) {
    throw new DataError(`value ${JSON.stringify(raw)} is not a finite number`, { file: source });
  }
  return value;
}

async function optionalLandmarks(path: string): Promise<Point[] | undefined> {
  let array: NpyArray;
  try {
    array = await readNpy(path);
  } catch (error) {
    if (error instanceof DataError && /cannot read/.test(error.message)) return undefined;
    throw error;
  }
  const values = array.values.map(Number);
  const points = points68(values);
  if (!points) {
    throw new DataError(`expected 136 landmark values, found ${values.length}`, { file: path });
  }
  return points;
}

async function readPrefix(path: string, length: number): Promise<Uint8Array> {
  const file = await Deno.open(path);
  try {
    const buffer = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const read = await file.read(buffer.subarray(filled));
      if (read === null) break;
      filled += read;
    }
    return buffer.subarray(0, filled);
  } finally {
    file.close();
  }
}

function finish(
  samples: FaceSample[],
  source: string,
  reasons: Record<string, number>,
): ReadResult {
  const skipped = Object.values(reasons).reduce((a, b) => a + b, 0);
  if (samples.length === 0) {
    throw new DataError(`AffectNet split is empty after filtering (skipped ${skipped})`, {
      file: source,
    });
  }
  const detail = Object.entries(reasons).filter(([, n]) => n > 0).map(([why, n]) => `${why}: ${n}`);
  const summary = `readAffectNet ${source}: ${samples.length} samples; skipped ${skipped}` +
    (detail.length > 0 ? ` (${detail.join(", ")})` : "");
  return { samples, skipped, summary };
}

/**
 * Writes a synthetic set to disk in the AFEW-VA and AffectNet layouts, so the real readers (and
 * the image decode/crop path) are exercised without downloading anything.
 */
import { join } from "node:path";
import {
  AFFECTNET_8LABEL_DIRS,
  AFFECTNET_CSV_NAMES,
  AFFECTNET_IMAGES_DIR,
  AFFECTNET_LISTS_DIR,
  type AffectNetSplit,
} from "./affectnet.ts";
import { faceBoxFromLandmarks, splitPersons } from "./afew_va.ts";
import { DataError } from "./errors.ts";
import { encodeJpegChw, encodePngChw } from "./image.ts";
import { encodeNpy } from "./npy.ts";
import type { SyntheticSet } from "./synthetic.ts";
import type { FaceSample, Point } from "./types.ts";

/** Counts of what an exporter wrote. */
export interface ExportSummary {
  /** Distinct persons (AFEW-VA clips) written. */
  persons: number;
  /** Images written. */
  images: number;
}

function faceOf(set: SyntheticSet, index: number): Float32Array {
  const plane = 3 * set.size * set.size;
  return set.images.subarray(index * plane, (index + 1) * plane);
}

function landmarksOf(sample: FaceSample, index: number): Point[] {
  if (sample.landmarks === undefined || sample.landmarks.length !== 68) {
    throw new DataError(`export: sample ${index} has no 68 landmarks`);
  }
  return sample.landmarks;
}

function groupByPerson(samples: readonly FaceSample[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  samples.forEach((s, i) => {
    const list = groups.get(s.person);
    if (list === undefined) groups.set(s.person, [i]);
    else list.push(i);
  });
  return groups;
}

const round2 = (value: number) => Math.round(value * 100) / 100;

/**
 * Writes `set` in the AFEW-VA layout: `dir/001/00000.png ...` plus `dir/001/001.json`, one clip
 * per person (the person name goes into "actor"). Labels are stored as integers in [-10, 10],
 * i.e. rounded to 0.1 as in the real dataset.
 */
export async function exportAfewVa(set: SyntheticSet, dir: string): Promise<ExportSummary> {
  const groups = groupByPerson(set.samples);
  const digits = Math.max(3, String(groups.size).length);
  let clipNumber = 0, images = 0;
  for (const [person, indices] of groups) {
    const clip = String(++clipNumber).padStart(digits, "0");
    const clipDir = join(dir, clip);
    await Deno.mkdir(clipDir, { recursive: true });
    const frames: Record<string, unknown> = {};
    for (let f = 0; f < indices.length; f++) {
      const index = indices[f];
      const sample = set.samples[index];
      const key = String(f).padStart(5, "0");
      await Deno.writeFile(
        join(clipDir, `${key}.png`),
        await encodePngChw(faceOf(set, index), set.size),
      );
      frames[key] = {
        valence: Math.round(sample.valence * 10),
        arousal: Math.round(sample.arousal * 10),
        landmarks: landmarksOf(sample, index).map(([x, y]) => [round2(x), round2(y)]),
      };
      images++;
    }
    const annotation = { actor: person, video_id: clip, frames };
    await Deno.writeTextFile(join(clipDir, `${clip}.json`), JSON.stringify(annotation, null, 1));
  }
  return { persons: groups.size, images };
}

/** Options for `exportAffectNet`. */
export interface ExportAffectNetOptions {
  /** "csv" (default): original release; "npy": the later 8-label release. */
  layout?: "csv" | "npy";
  /** Fraction of persons written to the validation split. Default 0.2. */
  validationFraction?: number;
  /** Seed of the person-level split. Default 0. */
  seed?: number;
  /** Image file format. Default "jpg" as in AffectNet ("png" is lossless). */
  imageFormat?: "jpg" | "png";
}

/**
 * Writes `set` in an AffectNet layout, persons split between train and validation. The CSV
 * layout gets a face box from the landmarks (clamped to the image) and the landmarks as 136
 * ';'-joined numbers; the npy layout stores labels as `<U..` strings like the real release.
 */
export async function exportAffectNet(
  set: SyntheticSet,
  dir: string,
  options: ExportAffectNetOptions = {},
): Promise<ExportSummary> {
  const layout = options.layout ?? "csv";
  const format = options.imageFormat ?? "jpg";
  const validationFraction = options.validationFraction ?? 0.2;
  const groups = groupByPerson(set.samples);
  const sides = splitPersons([...groups.keys()], 1 - validationFraction, options.seed ?? 0);
  const splitOf = (person: string): AffectNetSplit =>
    sides.train.has(person) ? "train" : "validation";
  const encode = (index: number) =>
    format === "jpg"
      ? encodeJpegChw(faceOf(set, index), set.size, set.size, 95)
      : encodePngChw(faceOf(set, index), set.size);

  if (layout === "npy") {
    let id = 0;
    for (const split of ["train", "validation"] as const) {
      const splitDir = join(dir, AFFECTNET_8LABEL_DIRS[split]);
      await Deno.mkdir(join(splitDir, "images"), { recursive: true });
      await Deno.mkdir(join(splitDir, "annotations"), { recursive: true });
      for (const [person, indices] of groups) {
        if (splitOf(person) !== split) continue;
        for (const index of indices) {
          const sample = set.samples[index];
          const name = String(id++);
          await Deno.writeFile(join(splitDir, "images", `${name}.${format}`), await encode(index));
          const write = (kind: string, bytes: Uint8Array) =>
            Deno.writeFile(join(splitDir, "annotations", `${name}_${kind}.npy`), bytes);
          await write("val", encodeNpy([String(sample.valence)], "<U", []));
          await write("aro", encodeNpy([String(sample.arousal)], "<U", []));
          await write("exp", encodeNpy([String(sample.expression ?? 0)], "<U", []));
          await write("lnd", encodeNpy(landmarksOf(sample, index).flat(), "<f8"));
        }
      }
    }
    return { persons: groups.size, images: id };
  }

  const header = [
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
  ];
  const rows: Record<AffectNetSplit, string[]> = { train: [], validation: [] };
  let images = 0, folder = 0;
  for (const [person, indices] of groups) {
    const subDirectory = String(++folder);
    await Deno.mkdir(join(dir, AFFECTNET_IMAGES_DIR, subDirectory), { recursive: true });
    for (let f = 0; f < indices.length; f++) {
      const index = indices[f];
      const sample = set.samples[index];
      const relative = `${subDirectory}/${String(f).padStart(5, "0")}.${format}`;
      await Deno.writeFile(join(dir, AFFECTNET_IMAGES_DIR, relative), await encode(index));
      const landmarks = landmarksOf(sample, index);
      const [bx, by, bw, bh] = faceBoxFromLandmarks(landmarks, 0.15);
      const x0 = Math.max(0, Math.round(bx)), y0 = Math.max(0, Math.round(by));
      const x1 = Math.min(set.size, Math.round(bx + bw)),
        y1 = Math.min(set.size, Math.round(by + bh));
      rows[splitOf(person)].push(
        [
          relative,
          x0,
          y0,
          x1 - x0,
          y1 - y0,
          landmarks.map(([x, y]) => `${round2(x)};${round2(y)}`).join(";"),
          sample.expression ?? 0,
          sample.valence,
          sample.arousal,
        ].map((v) => csvField(String(v))).join(","),
      );
      images++;
    }
  }
  await Deno.mkdir(join(dir, AFFECTNET_LISTS_DIR), { recursive: true });
  for (const split of ["train", "validation"] as const) {
    const text = [header.join(","), ...rows[split]].join("\n") + "\n";
    await Deno.writeTextFile(join(dir, AFFECTNET_LISTS_DIR, AFFECTNET_CSV_NAMES[split]), text);
  }
  return { persons: groups.size, images };
}

/** Quotes a CSV field only when it needs it. */
function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

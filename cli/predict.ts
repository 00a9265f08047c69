/**
 * `deno task predict --image PATH [--run RUN_DIR | --weights FILE] [--box x,y,w,h]
 * [--landmarks FILE] [--json]`: valence and arousal of the face in one photo, clipped to [-1, 1].
 * With landmarks the face is aligned the way training aligned its faces (`data.align`).
 */

import { Device } from "../nn/device.ts";
import { loadSafetensorsInto } from "../nn/io.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import { readSafetensorsFile } from "../nn/safetensors.ts";
import * as data from "../pipelines/data/mod.ts";
import { predictVa } from "../pipelines/training.ts";
import { parseFlags, UsageError } from "./args.ts";

export const PREDICT_HELP = `Usage: deno task predict --image PATH [--run RUN_DIR | --weights FILE]
                         [--box x,y,w,h] [--landmarks FILE] [--json]

Prints the valence and arousal (each clipped to [-1, 1]) of the face in a JPEG or PNG photo.

  --image PATH      the photo
  --box x,y,w,h     the face box in pixels (default: the whole image, or with --landmarks
                    the box around them that AFEW-VA faces get)
  --landmarks FILE  68 face landmarks in image pixels (JSON [[x, y], ...] or 136 numbers
                    x0 y0 x1 y1 ... separated by spaces, commas or semicolons): align the face
                    as training did (data.align, on by default) before reading it
  --run RUN_DIR     use that run's best regressor and its configuration
  --weights FILE    a regressor's safetensors (width and head read from its tensors;
                    input size from its metadata, else --input-size, else 224)
  --input-size N    input side for --weights files without that metadata
  --runs DIR        where to look for the newest run when neither --run nor --weights is given
                    (default runs)
  --json            print only the JSON line {"valence": v, "arousal": a}
  -h, --help        this text
`;

/** The newest run folder under `root` that has a trained regressor. */
async function newestRun(root: string): Promise<string | null> {
  let best: { path: string; time: number } | null = null;
  try {
    for await (const entry of Deno.readDir(root)) {
      if (!entry.isDirectory) continue;
      const path = `${root}/${entry.name}`;
      try {
        const info = await Deno.stat(`${path}/regressor.json`);
        const time = info.mtime?.getTime() ?? 0;
        if (!best || time > best.time) best = { path, time };
      } catch { /* not a finished run */ }
    }
  } catch {
    return null;
  }
  return best?.path ?? null;
}

function parseBox(value: string): data.Box {
  const parts = value.split(",").map(Number);
  if (
    parts.length !== 4 || parts.some((v) => !Number.isFinite(v)) || parts[2] <= 0 || parts[3] <= 0
  ) {
    throw new UsageError(`--box must be x,y,w,h with a positive width and height, got "${value}"`);
  }
  return parts as data.Box;
}

/** Run the predict command; returns the exit code. */
export async function predictCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    image: { type: "string" },
    box: { type: "string" },
    landmarks: { type: "string" },
    run: { type: "string" },
    weights: { type: "string" },
    "input-size": { type: "string" },
    runs: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(PREDICT_HELP);
    return 0;
  }
  const imagePath = values.image as string | undefined;
  if (!imagePath) throw new UsageError("predict needs --image PATH");
  if (values.run && values.weights) throw new UsageError("give --run or --weights, not both");
  let weights = values.weights as string | undefined;
  let inputSize: number | undefined;
  if (!weights) {
    let run = values.run as string | undefined;
    if (!run) {
      const root = (values.runs as string | undefined) ?? "runs";
      run = (await newestRun(root)) ?? undefined;
      if (!run) {
        throw new UsageError(
          `no trained run under ${root}/: train one (deno task train) or pass --weights FILE`,
        );
      }
      if (!values.json) console.error(`using the newest run: ${run}`);
    }
    let info: { weights: string; inputSize: number };
    try {
      info = JSON.parse(await Deno.readTextFile(`${run}/regressor.json`));
    } catch (error) {
      throw new UsageError(
        `--run ${run}: no readable regressor.json (${(error as Error).message})`,
      );
    }
    weights = `${run}/${info.weights}`;
    inputSize = info.inputSize;
  }
  const { tensors, metadata } = await readSafetensorsFile(weights);
  const conv1 = tensors.get("conv1.weight");
  const fc = tensors.get("fc.weight");
  if (!conv1 || !fc) {
    throw new UsageError(`${weights}: not a ResNet34 checkpoint (no conv1.weight / fc.weight)`);
  }
  inputSize ??= Number(metadata.inputSize ?? values["input-size"] ?? 224);
  if (!Number.isInteger(inputSize) || inputSize < 32) {
    throw new UsageError(`input size must be an integer >= 32, got ${inputSize}`);
  }
  // Width from the metadata written by training, else from conv1 (64 * width channels).
  const width = Number(metadata.width ?? conv1.shape[0] / 64);
  const image = await data.readImageFile(imagePath);
  let landmarks: data.Point[] | undefined;
  if (values.landmarks) {
    const path = values.landmarks as string;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new UsageError(`--landmarks ${path}: cannot read (${(error as Error).message})`);
    }
    landmarks = data.parseLandmarks(text, path);
  }
  const box: data.Box = values.box
    ? parseBox(values.box as string)
    : landmarks
    ? data.faceBoxFromLandmarks(landmarks)
    : [0, 0, image.width, image.height];
  let face = data.cropResize(image, box, { size: 64 });
  if (landmarks) face = data.alignFace(face, 64, data.landmarksInCrop(landmarks, box, 64)).image;
  const device = await Device.create();
  const model = new ResNet34(device, { width, numOutputs: fc.shape[0], inputSize });
  await loadSafetensorsInto(model, weights);
  const [v, a] = await predictVa(model, face, 1, inputSize);
  model.dispose();
  const clip = (x: number) => Math.max(-1, Math.min(1, x));
  const result = { valence: clip(v), arousal: clip(a) };
  if (!values.json) {
    console.log(`valence ${result.valence.toFixed(3)}  arousal ${result.arousal.toFixed(3)}`);
  }
  console.log(JSON.stringify(result));
  return 0;
}

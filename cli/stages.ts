/** `generate` and `eval`: stages that work on a finished (or partly finished) run folder. */

import { Device } from "../nn/device.ts";
import { disposeStateDict, readSafetensors } from "../nn/io.ts";
import {
  decoderOutputOf,
  editColourOf,
  FaceAutoencoder,
  seesSourceOf,
  warpShiftOf,
} from "../nn/models/autoencoder.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import {
  autoencoderVariants,
  type ExperimentConfig,
  judgeInputSize,
  resolveConfig,
  strategyNames,
} from "../pipelines/config.ts";
import * as data from "../pipelines/data/mod.ts";
import {
  loadExperimentData,
  variantFile,
  writeFigure2,
  writeFileAtomic,
} from "../pipelines/experiment.ts";
import type { vaMetrics } from "../pipelines/metrics.ts";
import { metricsTable } from "../pipelines/report.ts";
import {
  decodeFaces,
  encodeFaces,
  generateFaces,
  predictVa,
  scorePredictions,
} from "../pipelines/training.ts";
import { intFlag, parseFlags, UsageError } from "./args.ts";

export const GENERATE_HELP = `Usage: deno task train generate --run RUN_DIR [--out DIR] [--count N]
                                [--image PATH --valence V --arousal A]

Faces from a run's trained autoencoder:
  - DIR/figure2.png: the paper's Figure 2 grid for three test identities
  - DIR/generated.png: N faces (default 32) with V/A drawn uniformly from the unit disk
  - with --image: that photo's face re-generated at the requested --valence/--arousal
    (DIR/edited.png, next to the reconstruction with its own predicted V/A); write negative
    values with '=': --valence=-0.5

  --run RUN_DIR   a run folder with config.json and autoencoder.safetensors
  --out DIR       output folder (default RUN_DIR/generated)
  --seed N        seed of the drawn V/A (default 0)
  --variant NAME  paper (default) or improved: which of the run's autoencoders
  --fidelity      also DIR/figure2-fidelity.png: the grid captioned with what the run's judge
                  reads from each generated face (requested values are in figure2.png)
`;

export const EVAL_HELP = `Usage: deno task train eval --run RUN_DIR [--json]

Evaluates every regressor-<strategy>.safetensors of a run on the run's test set and prints
RMSE, CORR, CCC and SAGR for valence and arousal.
`;

/** A run folder's configuration (its config.json, resolved). */
export async function loadRunConfig(run: string): Promise<ExperimentConfig> {
  try {
    return resolveConfig(JSON.parse(await Deno.readTextFile(`${run}/config.json`)));
  } catch (error) {
    throw new UsageError(`--run ${run}: no valid config.json (${(error as Error).message})`);
  }
}

/** A run's trained autoencoder of one variant, built the way its checkpoint says. */
export async function loadAutoencoder(
  device: Device,
  run: string,
  config: ExperimentConfig,
  variant: string,
) {
  const found = autoencoderVariants(config).find((v) => v.name === variant);
  if (!found) {
    throw new UsageError(
      `--variant ${variant}: this run has ${
        autoencoderVariants(config).map((v) => v.name).join(", ")
      }`,
    );
  }
  const path = `${run}/${variantFile("autoencoder", variant)}.safetensors`;
  let state;
  try {
    state = await readSafetensors(device, path);
  } catch (error) {
    throw new UsageError(
      `${path}: ${(error as Error).message} (train it: deno task train train-ae)`,
    );
  }
  // A map the checkpoint holds, as zeros of its size: the load below fills it.
  const placeholder = (name: string) => {
    const tensor = state.get(name);
    return tensor ? new Float32Array(tensor.shape.reduce((a, b) => a * b, 1)) : undefined;
  };
  const model = new FaceAutoencoder(device, {
    size: config.autoencoder.size,
    codeSize: config.autoencoder.codeSize,
    conditioning: found.conditioning,
    // Runs saved before "output" existed hold whole-image decoders; the tensors say which.
    output: decoderOutputOf(state) ?? found.output,
    eraseMask: placeholder("erase_mask"),
    editLimit: placeholder("edit_limit"),
    editColour: editColourOf(state),
    seesSource: seesSourceOf(state),
    warpShift: await warpShiftOf(state),
  });
  model.loadStateDict(state, { strict: true });
  disposeStateDict(state);
  return model;
}

/** The generate command; returns the exit code. */
export async function generateCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    run: { type: "string" },
    out: { type: "string" },
    count: { type: "string" },
    seed: { type: "string" },
    image: { type: "string" },
    valence: { type: "string" },
    arousal: { type: "string" },
    variant: { type: "string" },
    fidelity: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(GENERATE_HELP);
    return 0;
  }
  const run = values.run as string | undefined;
  if (!run) throw new UsageError("generate needs --run RUN_DIR");
  const out = (values.out as string | undefined) ?? `${run}/generated`;
  const count = intFlag("count", values.count) ?? 32;
  const seed = intFlag("seed", values.seed) ?? 0;
  const config = await loadRunConfig(run);
  const device = await Device.create();
  const autoencoder = await loadAutoencoder(
    device,
    run,
    config,
    (values.variant as string | undefined) ?? "paper",
  );
  await Deno.mkdir(out, { recursive: true });
  const { train, test } = await loadExperimentData(config);
  await writeFigure2(autoencoder, test, `${out}/figure2.png`);
  if (values.fidelity) {
    const judgePath = `${run}/judge.safetensors`;
    let state;
    try {
      state = await readSafetensors(device, judgePath);
    } catch (error) {
      throw new UsageError(
        `${judgePath}: ${(error as Error).message} (the run trains it when fidelity is on)`,
      );
    }
    const judge = new ResNet34(device, {
      width: config.regressor.width,
      inputSize: judgeInputSize(config),
    });
    judge.loadStateDict(state, { strict: true });
    disposeStateDict(state);
    await writeFigure2(autoencoder, test, `${out}/figure2-fidelity.png`, 3, {
      model: judge,
      inputSize: judgeInputSize(config),
    });
    judge.dispose();
  }
  const generated = await generateFaces(
    autoencoder,
    train.images,
    train.samples.length,
    count,
    seed,
  );
  await writeFileAtomic(
    `${out}/generated.png`,
    await data.contactSheetPng(generated.images, generated.labels, { columns: 8, maxCount: count }),
  );
  if (values.image) {
    const target = {
      valence: Number(values.valence ?? 0),
      arousal: Number(values.arousal ?? 0),
    };
    for (const [k, v] of Object.entries(target)) {
      if (!(v >= -1 && v <= 1)) throw new UsageError(`--${k} must be in [-1, 1], got ${v}`);
    }
    const image = await data.readImageFile(values.image as string);
    const face = data.cropResize(image, [0, 0, image.width, image.height], { size: 64 });
    const encoded = await encodeFaces(autoencoder, face, 1);
    const own = { valence: encoded.valence[0], arousal: encoded.arousal[0] };
    const twoCodes = new Float32Array([...encoded.z, ...encoded.z]);
    const faces = await decodeFaces(
      autoencoder,
      twoCodes,
      [own, target],
      new Float32Array([...face, ...face]),
    );
    await writeFileAtomic(
      `${out}/edited.png`,
      await data.contactSheetPng(new Float32Array([...face, ...faces]), [own, own, target], {
        columns: 3,
        scale: 3,
      }),
    );
  }
  autoencoder.dispose();
  console.log(
    `wrote ${out}/figure2.png, ${out}/generated.png` +
      (values.fidelity ? `, ${out}/figure2-fidelity.png` : "") +
      (values.image ? `, ${out}/edited.png` : ""),
  );
  return 0;
}

/** The eval command; returns the exit code. */
export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, {
    run: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(EVAL_HELP);
    return 0;
  }
  const run = values.run as string | undefined;
  if (!run) throw new UsageError("eval needs --run RUN_DIR");
  const config = await loadRunConfig(run);
  const device = await Device.create();
  const { test } = await loadExperimentData(config);
  const rows = [];
  const results: Record<string, ReturnType<typeof vaMetrics>> = {};
  for (const strategy of strategyNames(config)) {
    const path = `${run}/regressor-${strategy}.safetensors`;
    let state;
    try {
      state = await readSafetensors(device, path);
    } catch {
      continue;
    }
    const model = new ResNet34(device, {
      width: config.regressor.width,
      inputSize: config.regressor.inputSize,
    });
    model.loadStateDict(state, { strict: true });
    disposeStateDict(state);
    const predictions = await predictVa(
      model,
      test.images,
      test.samples.length,
      config.regressor.inputSize,
    );
    model.dispose();
    const m = scorePredictions(predictions, test.samples);
    results[strategy] = m;
    const one = (x: number) => ({ mean: x, std: 0, runs: [x] });
    const scores = (d: "valence" | "arousal") => ({
      rmse: one(m[d].rmse),
      corr: one(m[d].corr),
      ccc: one(m[d].ccc),
      sagr: one(m[d].sagr),
    });
    rows.push({
      name: strategy,
      metrics: { valence: scores("valence"), arousal: scores("arousal") },
    });
  }
  if (rows.length === 0) throw new UsageError(`${run}: no regressor-*.safetensors to evaluate`);
  if (values.json) console.log(JSON.stringify(results));
  else console.log(metricsTable(rows, { boldBest: false }));
  return 0;
}

/**
 * The paper's whole experiment as one resumable run: data, autoencoder, Figure 2, every
 * regressor strategy with repeated seeds, evaluation, and a run folder with the report.
 *
 * RUN_DIR/
 *   config.json            the validated configuration
 *   state.json             what is done (for --resume)
 *   autoencoder.safetensors, regressor-<strategy>.safetensors, regressor.json
 *   checkpoints/           per-epoch training state (model + optimizer)
 *   metrics.json, report.md, figure2.png, loss-*.png, histogram-*.png, samples-*.png,
 *   drawing*.png (synthetic data: source | re-generated | truth triplets)
 */

import { Device } from "../nn/device.ts";
import type { StateDict, StateValue } from "../nn/module.ts";
import { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import { Adam } from "../nn/optim.ts";
import {
  disposeStateDict,
  loadSafetensorsInto,
  readSafetensors,
  writeSafetensors,
} from "../nn/io.ts";
import * as data from "./data/mod.ts";
import { summarize, type vaMetrics } from "./metrics.ts";
import {
  type AutoencoderVariant,
  autoencoderVariants,
  type ExperimentConfig,
  generatedStrategies,
  generatedStrategyName,
  judgeInputSize,
  judgeSteps,
  readerSteps,
  strategyNames,
} from "./config.ts";
import { Progress } from "./progress.ts";
import { checkPartSettings, type RunPart } from "./settings.ts";
import {
  drawingGridPng,
  fidelityMarkdown,
  type FidelityReport,
  measureFidelity,
  type Quadrant,
  type QuadrantError,
  quadrantErrors,
  QUADRANTS,
  renderTruth,
} from "./fidelity.ts";
import { barChartPng, lineChartPng } from "./plots.ts";
import { editLimitMap, meanExpressionMask } from "./regions.ts";
import { markdownTable, metricsTable, paperTables, type StrategyMetrics } from "./report.ts";
import {
  type AutoencoderProgress,
  decodeFaces,
  encodeFaces,
  gatherImages,
  generateFaces,
  generateFacesFor,
  type LossPoint,
  predictVa,
  type RegressorTraining,
  scorePredictions,
  type StepReport,
  type StopSignal,
  trainAutoencoder,
  trainRegressor,
} from "./training.ts";

/** Faces and labels of one split, with 64x64 CHW pixels. */
export interface FaceSplit {
  samples: data.FaceSample[];
  images: Float32Array;
  size: number;
}

/** The experiment's data: a skewed training split and a held-out test split. */
export interface ExperimentData {
  train: FaceSplit;
  test: FaceSplit;
  /** Faces the autoencoder trains on when they differ from `train` (AFEW-VA beside AffectNet). */
  autoencoderTrain?: FaceSplit;
  description: string;
}

/** Read one split of a real dataset and load its 64x64 faces (cached beside the dataset). */
async function loadRealSplit(
  source: "afew-va" | "affectnet",
  root: string,
  split: "train" | "test",
  seed: number,
): Promise<FaceSplit> {
  const result = source === "afew-va"
    ? await data.readAfewVa(root, { split, seed })
    : await data.readAffectNet(root, { split: split === "train" ? "train" : "validation" });
  if (result.samples.length === 0) {
    throw new data.DataError(`${root}: the ${split} split of ${source} has no usable faces`);
  }
  const set = await data.loadFaceSet(result.samples, {
    size: 64,
    cache: `${root}/.va-cache-${split}.bin`,
  });
  return { samples: set.samples, images: set.faces, size: 64 };
}

/** One regressor run's outcome. */
interface RunRecord {
  strategy: string;
  seed: number;
  trainingFaces: number;
  metrics: ReturnType<typeof vaMetrics>;
  /** Mean error (prediction - truth) per quadrant of the test labels (runs before it: absent). */
  quadrantErrors?: Record<Quadrant, QuadrantError | null>;
  losses: LossPoint[];
  seconds: number;
}

/** What state.json holds. */
/** Training state of one autoencoder. */
type AutoencoderState = AutoencoderProgress & { done: boolean; seconds: number };

interface RunState {
  /** By variant name ("paper", "improved"). */
  autoencoders: Record<string, AutoencoderState>;
  /** Fidelity by autoencoder variant. */
  fidelity?: Record<string, FidelityReport>;
  runs: Record<string, RunRecord>;
  /** The settings each part was made with, by partKey (checked on resume). */
  settings?: Record<string, unknown>;
  /**
   * Wall-clock seconds of every process that worked on this run folder, so that a resumed run's
   * report still gives the whole run's time (absent in run folders written before it was kept).
   */
  seconds?: number;
  finished: boolean;
}

/** Write a file atomically: temp file in the same folder, then rename. */
export async function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  if (typeof content === "string") await Deno.writeTextFile(temp, content);
  else await Deno.writeFile(temp, content);
  await Deno.rename(temp, path);
}

/**
 * Load the configured dataset (synthetic by default), with faces aligned from their landmarks
 * unless `data.align` is off.
 */
export async function loadExperimentData(config: ExperimentConfig): Promise<ExperimentData> {
  const loaded = await loadDataAsStored(config);
  if (!config.data.align) return loaded;
  const splits = [loaded.train, loaded.test, loaded.autoencoderTrain].filter((s) =>
    s !== undefined
  );
  let aligned = 0, total = 0;
  for (const split of splits) {
    aligned += data.alignFaceSet(split);
    total += split.samples.length;
  }
  return { ...loaded, description: `${loaded.description}; ${aligned} of ${total} faces aligned` };
}

async function loadDataAsStored(config: ExperimentConfig): Promise<ExperimentData> {
  const d = config.data;
  if (d.source === "synthetic") {
    const { train, test } = data.syntheticSplit({
      seed: config.seed,
      trainPersons: d.trainPersons,
      framesPerPerson: d.framesPerPerson,
      testPersons: d.testPersons,
      skew: d.skew,
      rareQuadrantFraction: d.rareQuadrantFraction,
      expressionStrength: d.expressionStrength,
      labelNoise: d.labelNoise,
    });
    // The test set uses its own frame count (syntheticSplit shares framesPerPerson).
    const testSet = d.testFramesPerPerson === d.framesPerPerson ? test : data.synthetic({
      seed: config.seed,
      persons: d.testPersons,
      framesPerPerson: d.testFramesPerPerson,
      firstPerson: d.trainPersons,
      skew: "uniform",
      expressionStrength: d.expressionStrength,
      labelNoise: d.labelNoise,
    });
    return {
      train: { samples: train.samples, images: train.images, size: train.size },
      test: { samples: testSet.samples, images: testSet.images, size: testSet.size },
      description: `synthetic faces: ${train.samples.length} training faces of ${d.trainPersons} ` +
        `persons (${d.skew} skew), ${testSet.samples.length} test faces of ${d.testPersons} unseen ` +
        `persons with V/A uniform over the unit disk`,
    };
  }
  const root = d.path!;
  const train = await loadRealSplit(d.source, root, "train", config.seed);
  const test = await loadRealSplit(d.source, root, "test", config.seed);
  const autoencoderTrain = d.autoencoderPath
    ? await loadRealSplit("afew-va", d.autoencoderPath, "train", config.seed)
    : undefined;
  return {
    train,
    test,
    autoencoderTrain,
    description: `${d.source} at ${root}: ${train.samples.length} training and ` +
      `${test.samples.length} test faces` +
      (autoencoderTrain
        ? `; the autoencoder trains on ${autoencoderTrain.samples.length} AFEW-VA faces at ` +
          d.autoencoderPath
        : ""),
  };
}

/** Indices of the training faces a strategy uses (the generated strategy has its own set). */
export function strategyOrder(
  strategy: string,
  labels: readonly data.VaLabel[],
  binSize: number,
  seed: number,
): number[] {
  if (strategy === "original") return labels.map((_, i) => i);
  const [kind, value] = strategy.split("-");
  const threshold = Number(value);
  if (kind === "under") return data.underSampleIndices(labels, { threshold, binSize, seed });
  if (kind === "over") return data.overSampleIndices(labels, { threshold, binSize, seed });
  throw new Error(`unknown strategy "${strategy}"`);
}

/** Model state plus optimizer state in one safetensors checkpoint. */
async function saveTrainingCheckpoint(
  path: string,
  model: FaceAutoencoder,
  optimizer: Adam,
  progress: AutoencoderProgress,
): Promise<void> {
  const state: StateDict = new Map();
  for (const [k, v] of model.stateDict()) state.set(`model.${k}`, v);
  for (const [k, v] of optimizer.stateDict(model.namedParameters())) state.set(`optim.${k}`, v);
  await writeSafetensors(path, state, { progress: JSON.stringify(progress) });
}

async function loadTrainingCheckpoint(
  device: Device,
  path: string,
  model: FaceAutoencoder,
  optimizer: Adam,
): Promise<void> {
  const state = await readSafetensors(device, path);
  const part = (prefix: string) =>
    new Map<string, StateValue>(
      [...state].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]),
    );
  model.loadStateDict(part("model."), { strict: true });
  optimizer.loadStateDict(model.namedParameters(), part("optim."));
  disposeStateDict(state);
}

function seconds(since: number): number {
  return Math.round((performance.now() - since) / 100) / 10;
}

/** The regressor training settings of a configuration, for one run. */
function regressorTraining(
  config: ExperimentConfig,
  seed: number,
  steps: number,
): RegressorTraining {
  const r = config.regressor;
  return {
    steps,
    batchSize: r.batchSize,
    lr: r.lr,
    schedule: r.schedule,
    inputSize: r.inputSize,
    seed,
    logEvery: config.logEvery,
  };
}

/** Options of {@link runExperiment}. */
export interface ExperimentOptions {
  /** The run folder (created). */
  runDir: string;
  /** Continue a run from its state.json. */
  resume?: boolean;
  /** Ctrl-C: finish the current step, checkpoint, and return. */
  stop?: StopSignal;
  /** Progress output (default stderr); quiet mode prints only summaries. */
  log?: (line: string) => void;
  /** An open device (one is created otherwise). */
  device?: Device;
}

/** The outcome of a run. */
export interface ExperimentResult {
  runDir: string;
  interrupted: boolean;
  metrics?: MetricsFile;
}

/** metrics.json. */
export interface MetricsFile {
  strategies: Record<string, StrategyMetrics>;
  trainingFaces: Record<string, number>;
  /** Per autoencoder variant ("paper", "improved"). */
  autoencoders: Record<string, { finalLoss: number | null; epochs: number; seconds: number }>;
  /** How well generated faces carry their requested V/A, read by the judge, per variant. */
  fidelity?: Record<string, FidelityReport>;
  /**
   * Per strategy, the regressors' mean error (prediction - truth) per quadrant of the test
   * labels, averaged over the seeds that recorded it: which way a strategy pulls each region.
   */
  quadrantErrors?: Record<string, Record<Quadrant, QuadrantError | null>>;
  config: ExperimentConfig;
}

/** Run (or resume) the whole experiment. */
export async function runExperiment(
  config: ExperimentConfig,
  options: ExperimentOptions,
): Promise<ExperimentResult> {
  const { runDir } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const processStarted = performance.now();
  await Deno.mkdir(`${runDir}/checkpoints`, { recursive: true });
  const statePath = `${runDir}/state.json`;
  let state: RunState = {
    autoencoders: {},
    runs: {},
    finished: false,
  };
  if (options.resume) {
    try {
      state = JSON.parse(await Deno.readTextFile(statePath));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`${statePath}: cannot be read (${(error as Error).message})`);
      }
    }
  }
  const secondsBefore = state.seconds ?? 0;
  const saveState = () => {
    state.seconds = Math.round((secondsBefore + seconds(processStarted)) * 10) / 10;
    return writeFileAtomic(statePath, JSON.stringify(state) + "\n");
  };
  // Refuse, before anything is overwritten, to resume parts made with other settings.
  const settings = state.settings ??= {};
  const checkPart = (part: RunPart) => checkPartSettings(settings, config, part, runDir);
  for (const variant of autoencoderVariants(config)) {
    if (state.autoencoders[variant.name]) checkPart({ kind: "autoencoder", variant: variant.name });
    if (state.fidelity?.[variant.name]) checkPart({ kind: "fidelity", variant: variant.name });
  }
  const configured = new Set(strategyNames(config));
  for (const run of Object.values(state.runs)) {
    if (configured.has(run.strategy)) {
      checkPart({ kind: "run", strategy: run.strategy, seed: run.seed });
    }
  }
  await writeFileAtomic(`${runDir}/config.json`, JSON.stringify(config, null, 2) + "\n");

  const device = options.device ?? await Device.create();
  log(`device: ${device.adapterName}`);
  const started = performance.now();
  const experimentData = await loadExperimentData(config);
  const { train, test } = experimentData;
  log(`data: ${experimentData.description} (${seconds(started)} s)`);
  const trainLabels = train.samples;

  // 1. The face-generating autoencoders: the paper's, and the improved one when configured. The
  // improved one's consistency term needs a frozen V/A reader (never the judge).
  const variants = autoencoderVariants(config);
  let reader: ResNet34 | null = null;
  if (readerSteps(config) > 0) {
    checkPart({ kind: "reader" });
    await saveState();
    reader = await trainAuxiliaryRegressor(device, config, {
      name: "reader",
      path: `${runDir}/reader.safetensors`,
      images: train.images,
      labels: trainLabels,
      seed: config.seed + 2000,
      steps: readerSteps(config),
      stop: options.stop,
    });
    if (!reader) return { runDir, interrupted: true };
  }
  const autoencoders = new Map<string, FaceAutoencoder>();
  try {
    for (const variant of variants) {
      checkPart({ kind: "autoencoder", variant: variant.name });
      await saveState();
      const ae = await trainOrLoadAutoencoder(
        device,
        config,
        variant,
        experimentData,
        runDir,
        state,
        saveState,
        reader,
        options.stop,
        log,
      );
      if (!ae) return { runDir, interrupted: true };
      autoencoders.set(variant.name, ae);
      // 2. Figure 2: faces generated over a V/A grid for a few test identities.
      await writeFigure2(ae, test, `${runDir}/${variantFile("figure2", variant.name)}.png`);
    }
  } finally {
    reader?.dispose();
  }
  await writeAutoencoderLossPng(runDir, state);

  // 3. Generated faces: the paper's uniform set per autoencoder, and the "fill" sets.
  const generatedSets = new Map<string, { images: Float32Array; labels: data.VaLabel[] }>();
  const generatedCount = config.strategies.generatedCount || train.samples.length;
  for (const [name, ae] of autoencoders) {
    const set = await generateFaces(
      ae,
      train.images,
      train.samples.length,
      generatedCount,
      config.seed + 1,
    );
    generatedSets.set(name, set);
    await writeFileAtomic(
      `${runDir}/${variantFile("samples-generated", name)}.png`,
      await data.contactSheetPng(set.images, set.labels, { columns: 8, maxCount: 32 }),
    );
  }
  // 3b. Fidelity: a judge that never saw a generated face reads them.
  state.fidelity ??= {};
  const pendingFidelity = config.fidelity.enabled
    ? [...autoencoders.keys()].filter((name) => !state.fidelity![name])
    : [];
  if (pendingFidelity.length) {
    const judgeStarted = performance.now();
    checkPart({ kind: "judge" });
    for (const name of pendingFidelity) checkPart({ kind: "fidelity", variant: name });
    await saveState();
    const judge = await trainJudge(device, config, experimentData, runDir, options.stop);
    if (!judge) return { runDir, interrupted: true };
    for (const name of pendingFidelity) {
      const result = await measureFidelity(
        judge,
        autoencoders.get(name)!,
        generatedSets.get(name)!,
        { images: test.images, labels: test.samples },
        judgeInputSize(config),
        config.seed,
        (labels) => renderTruth(test.samples, labels, test.size, config.data.align),
      );
      const report = result.report;
      state.fidelity[name] = report;
      const grid = await drawingGridPng(test.images, result);
      if (grid) await writeFileAtomic(`${runDir}/${variantFile("drawing", name)}.png`, grid);
      const g = report.generated.overall;
      log(
        `fidelity (${name} autoencoder): the judge reads generated faces at CCC V ` +
          `${g.valence.ccc.toFixed(3)} A ${g.arousal.ccc.toFixed(3)} against the requested labels`,
      );
    }
    judge.dispose();
    await saveState();
    log(`fidelity measured in ${seconds(judgeStarted)} s`);
  }
  await writeFileAtomic(
    `${runDir}/samples-train.png`,
    await data.contactSheetPng(train.images, trainLabels, { columns: 8, maxCount: 32 }),
  );

  // Training sets of the generated strategies.
  const sources = new Map<string, { images: Float32Array; labels: data.VaLabel[] }>();
  const real = { images: train.images, labels: trainLabels as data.VaLabel[] };
  for (const g of generatedStrategies(config)) {
    const set = generatedSets.get(g.variant)!;
    let source = set;
    if (g.mixing === "real") source = concatSets(real, set);
    if (g.mixing === "fill") {
      const targets = fillTargets(
        trainLabels,
        config.strategies.binSize,
        generatedCount,
        config.seed + 3,
      );
      const filled = await generateFacesFor(
        autoencoders.get(g.variant)!,
        train.images,
        train.samples.length,
        targets,
        config.seed + 3,
      );
      source = concatSets(real, filled);
    }
    sources.set(generatedStrategyName(g), source);
  }
  for (const ae of autoencoders.values()) ae.dispose();

  // 4. Every strategy, every seed. Pretrained weights are read once and copied into each run.
  const strategies = strategyNames(config);
  const trainingFaces: Record<string, number> = {};
  const pretrained = config.regressor.pretrained
    ? await readSafetensors(device, config.regressor.pretrained)
    : null;
  try {
    for (const strategy of strategies) {
      const source = sources.get(strategy) ?? real;
      for (let k = 0; k < config.seeds; k++) {
        const seed = config.seed + k;
        const order = sources.has(strategy)
          ? source.labels.map((_, i) => i)
          : strategyOrder(strategy, trainLabels, config.strategies.binSize, seed);
        trainingFaces[strategy] = order.length;
        if (k === 0) {
          await writeFileAtomic(
            `${runDir}/histogram-${strategy}.png`,
            await data.vaHistogramPng(order.map((i) => source.labels[i]), {
              binSize: config.strategies.binSize,
              title: `${strategy.toUpperCase()}: ${order.length} FACES`,
            }),
          );
        }
        const key = `${strategy}#${seed}`;
        checkPart({ kind: "run", strategy, seed });
        if (state.runs[key]) continue;
        const runStarted = performance.now();
        const model = new ResNet34(device, {
          width: config.regressor.width,
          inputSize: config.regressor.inputSize,
          seed,
        });
        if (pretrained) loadPretrained(model, pretrained, config.regressor.pretrained!);
        const progress = new Progress({
          label: `${strategy} seed ${seed}`,
          total: config.regressor.steps,
          unit: "img",
          quiet: config.quiet,
        });
        const result = await trainRegressor(
          device,
          model,
          source.images,
          source.labels,
          order,
          regressorTraining(config, seed, config.regressor.steps),
          {
            onStep: (r) => progress.update({ step: r.step, items: r.items, loss: r.loss }),
            stop: options.stop,
          },
        );
        if (result.interrupted) {
          model.dispose();
          progress.done(`${strategy} seed ${seed} interrupted`);
          return { runDir, interrupted: true };
        }
        const predictions = await predictVa(
          model,
          test.images,
          test.samples.length,
          config.regressor.inputSize,
        );
        const metrics = scorePredictions(predictions, test.samples);
        if (k === 0) {
          await writeSafetensors(`${runDir}/regressor-${strategy}.safetensors`, model.stateDict(), {
            strategy,
            seed: String(seed),
            width: String(config.regressor.width),
            inputSize: String(config.regressor.inputSize),
          });
        }
        model.dispose();
        state.runs[key] = {
          strategy,
          seed,
          trainingFaces: order.length,
          metrics,
          quadrantErrors: quadrantErrors(predictions, test.samples),
          losses: result.losses,
          seconds: seconds(runStarted),
        };
        await saveState();
        progress.done(
          `${strategy} seed ${seed}: CCC V ${metrics.valence.ccc.toFixed(3)} A ${
            metrics.arousal.ccc.toFixed(3)
          }, RMSE V ${metrics.valence.rmse.toFixed(3)} A ${metrics.arousal.rmse.toFixed(3)} ` +
            `(${state.runs[key].seconds} s)`,
        );
      }
    }
  } finally {
    if (pretrained) disposeStateDict(pretrained);
  }

  // 5. Metrics, report and pictures.
  const metrics = summarizeRuns(config, state, trainingFaces);
  await writeFileAtomic(`${runDir}/metrics.json`, JSON.stringify(metrics, null, 2) + "\n");
  await writeRegressorInfo(runDir, config, metrics);
  await writeRunPictures(runDir, state, metrics);
  await writeFileAtomic(
    `${runDir}/report.md`,
    renderReport(config, experimentData, state, metrics, {
      total: Math.round(secondsBefore + seconds(processStarted)),
      thisProcess: options.resume ? Math.round(seconds(processStarted)) : null,
    }),
  );
  state.finished = true;
  await saveState();
  log(`run folder: ${runDir} (report.md, metrics.json, figure2.png)`);
  return { runDir, interrupted: false, metrics };
}

/**
 * ImageNet weights (a state dict read once per run) into a regressor: everything but the head,
 * whose 1000 outputs do not fit the 2-output (valence, arousal) layer; a head of the right shape
 * is loaded too.
 */
function loadPretrained(model: ResNet34, dict: StateDict, path: string): void {
  const own = new Map<string, StateValue>(dict);
  for (
    const [key, param] of [["fc.weight", model.fc.weight], ["fc.bias", model.fc.bias]] as const
  ) {
    const value = own.get(key);
    if (value && param && value.shape.join() !== param.shape.join()) own.delete(key);
  }
  const { missingKeys } = model.loadStateDict(own, { strict: false });
  const unexpectedMissing = missingKeys.filter((k) => !k.startsWith("fc."));
  if (unexpectedMissing.length) {
    throw new Error(`${path}: not a ResNet34 of this width ("${unexpectedMissing[0]}" is missing)`);
  }
}

function judgeDescription(config: ExperimentConfig): string {
  const size = judgeInputSize(config);
  const how = `${
    judgeSteps(config)
  } Adam steps at ${size}x${size}, ${config.fidelity.judgeSchedule} lr`;
  return config.data.source === "synthetic"
    ? `a ResNet34 of the regressors' width, trained (${how}) on freshly rendered faces of ` +
      `${config.fidelity.judgePersons} persons seen by neither the autoencoder nor the test set, ` +
      `with V/A uniform over the disk`
    : `a ResNet34 trained (${how}) on the original real training faces`;
}

/**
 * The judge: a regressor trained only on faces the autoencoder never produced (synthetic: new
 * identities with uniform V/A; real data: the original training faces).
 */
async function trainJudge(
  device: Device,
  config: ExperimentConfig,
  experimentData: ExperimentData,
  runDir: string,
  stop: StopSignal | undefined,
): Promise<ResNet34 | null> {
  let images = experimentData.train.images;
  let labels: data.VaLabel[] = experimentData.train.samples;
  if (config.data.source === "synthetic") {
    const d = config.data;
    const set = data.synthetic({
      seed: config.seed + 7,
      persons: config.fidelity.judgePersons,
      framesPerPerson: config.fidelity.judgeFramesPerPerson,
      firstPerson: d.trainPersons + d.testPersons,
      skew: "uniform",
      expressionStrength: d.expressionStrength,
      labelNoise: d.labelNoise,
    });
    if (d.align) data.alignFaceSet(set);
    images = set.images;
    labels = set.samples;
  }
  return await trainAuxiliaryRegressor(device, config, {
    name: "judge",
    path: `${runDir}/judge.safetensors`,
    images,
    labels,
    seed: config.seed + 1000,
    steps: judgeSteps(config),
    inputSize: judgeInputSize(config),
    schedule: config.fidelity.judgeSchedule,
    stop,
  });
}

/**
 * A regressor that serves the experiment (the judge, the consistency reader): trained once with
 * the regressor settings, saved to `path`, and loaded from there on resume. Null if interrupted.
 */
async function trainAuxiliaryRegressor(
  device: Device,
  config: ExperimentConfig,
  spec: {
    name: string;
    path: string;
    images: Float32Array;
    labels: readonly data.VaLabel[];
    seed: number;
    steps?: number;
    /** Input side; default the regressor's. */
    inputSize?: number;
    /** lr schedule; default the regressor's. */
    schedule?: "constant" | "cosine";
    stop?: StopSignal;
  },
): Promise<ResNet34 | null> {
  const inputSize = spec.inputSize ?? config.regressor.inputSize;
  const model = new ResNet34(device, { width: config.regressor.width, inputSize, seed: spec.seed });
  try {
    await loadSafetensorsInto(model, spec.path);
    return model;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const steps = spec.steps ?? config.regressor.steps;
  const progress = new Progress({
    label: spec.name,
    total: steps,
    unit: "img",
    quiet: config.quiet,
  });
  const result = await trainRegressor(
    device,
    model,
    spec.images,
    spec.labels,
    spec.labels.map((_, i) => i),
    {
      ...regressorTraining(config, spec.seed, steps),
      inputSize,
      schedule: spec.schedule ?? config.regressor.schedule,
    },
    {
      onStep: (r) => progress.update({ step: r.step, items: r.items, loss: r.loss }),
      stop: spec.stop,
    },
  );
  progress.done(result.interrupted ? `${spec.name} interrupted` : `${spec.name} trained`);
  if (result.interrupted) {
    model.dispose();
    return null;
  }
  await writeSafetensors(spec.path, model.stateDict(), {
    model: spec.name,
    width: String(config.regressor.width),
    inputSize: String(inputSize),
  });
  return model;
}

/** File stem of a per-autoencoder output: the paper's keeps the plain name. */
export function variantFile(stem: string, variant: string): string {
  return variant === "paper" ? stem : `${stem}-${variant}`;
}

/**
 * Train one autoencoder (resuming from its per-epoch checkpoint), or load it when its state says
 * it is done. Null when interrupted.
 */
async function trainOrLoadAutoencoder(
  device: Device,
  config: ExperimentConfig,
  variant: AutoencoderVariant,
  experimentData: ExperimentData,
  runDir: string,
  state: RunState,
  saveState: () => Promise<void>,
  reader: ResNet34 | null,
  stop: StopSignal | undefined,
  log: (line: string) => void,
): Promise<FaceAutoencoder | null> {
  const aeConfig = config.autoencoder;
  const train = experimentData.autoencoderTrain ?? experimentData.train;
  const regions = variant.output === "edit" && (variant.eraseSource || variant.editRegionsOnly)
    ? meanExpressionMask(train.samples, train.size)
    : undefined;
  if (regions && !regions.some((x) => x > 0)) {
    throw new Error(
      `the "${variant.name}" autoencoder: eraseSource and editRegionsOnly need face landmarks, ` +
        `and none of the ${train.samples.length} training faces has them`,
    );
  }
  const autoencoder = new FaceAutoencoder(device, {
    size: aeConfig.size,
    codeSize: aeConfig.codeSize,
    conditioning: variant.conditioning,
    output: variant.output,
    eraseMask: variant.eraseSource ? regions : undefined,
    editLimit: regions && variant.editRegionsOnly ? editLimitMap(regions) : undefined,
    editColour: variant.output === "edit" ? variant.editColour : undefined,
    seesSource: variant.output === "edit" && variant.seesSource,
    warpShift: variant.output === "edit" ? variant.warpShift : 0,
    seed: config.seed,
  });
  const label = variant.name === "paper" ? "autoencoder" : `autoencoder (${variant.name})`;
  const aePath = `${runDir}/${variantFile("autoencoder", variant.name)}.safetensors`;
  const checkpoint = `${runDir}/checkpoints/${
    variantFile("autoencoder", variant.name)
  }-train.safetensors`;
  const aeState: AutoencoderState = state.autoencoders[variant.name] ??
    { epochsDone: 0, step: 0, losses: [], done: false, seconds: 0 };
  if (aeState.done) {
    await loadSafetensorsInto(autoencoder, aePath);
    log(`${label}: loaded from ${aePath}`);
    return autoencoder;
  }
  const optimizer = new Adam(autoencoder.parameters(), { lr: aeConfig.lr });
  try {
    if (aeState.epochsDone > 0) {
      await loadTrainingCheckpoint(device, checkpoint, autoencoder, optimizer);
      log(`${label}: resuming after epoch ${aeState.epochsDone}`);
    }
    const started = performance.now() - aeState.seconds * 1000;
    let progress = null as Progress | null;
    const result = await trainAutoencoder(
      device,
      autoencoder,
      optimizer,
      train.images,
      train.samples,
      {
        epochs: aeConfig.epochs,
        batchSize: aeConfig.batchSize,
        lr: aeConfig.lr,
        lambdaValence: aeConfig.lambdaValence,
        lambdaArousal: aeConfig.lambdaArousal,
        pairsPerSample: aeConfig.pairsPerSample,
        balancedTargets: variant.balancedTargets
          ? { binSize: config.strategies.binSize }
          : undefined,
        seed: config.seed,
        logEvery: config.logEvery,
        regionEmphasis: variant.regionEmphasis,
        relightTargets: variant.relightTargets,
        consistency: variant.consistencyWeight > 0
          ? {
            reader: variant.consistencyReader === "snapshot" ? "snapshot" : reader!,
            weight: variant.consistencyWeight,
            warmupEpochs: variant.consistencyWarmup,
            inputSize: config.regressor.inputSize,
            regionsOnly: variant.consistencyRegionsOnly,
            snapshotPath: `${runDir}/checkpoints/${
              variantFile("autoencoder", variant.name)
            }-reader.safetensors`,
          }
          : undefined,
      },
      {
        progress: aeState,
        onStep: (r: StepReport) => {
          progress ??= new Progress({
            label,
            total: r.stepsPerEpoch,
            unit: "pairs",
            quiet: config.quiet,
          });
          progress.update({
            step: r.stepInEpoch ?? r.step,
            items: r.items,
            loss: r.loss,
            epoch: r.epoch,
            epochs: r.epochs,
          });
        },
        onEpoch: async (p) => {
          await saveTrainingCheckpoint(checkpoint, autoencoder, optimizer, p);
          state.autoencoders[variant.name] = { ...p, done: false, seconds: seconds(started) };
          await saveState();
        },
        stop,
      },
    );
    if (result.interrupted) {
      progress?.done(`${label} interrupted`);
      autoencoder.dispose();
      return null;
    }
    await writeSafetensors(aePath, autoencoder.stateDict(), {
      model: "FaceAutoencoder",
      variant: variant.name,
      conditioning: variant.conditioning,
      output: variant.output,
    });
    state.autoencoders[variant.name] = { ...result, done: true, seconds: seconds(started) };
    await saveState();
    const finalLoss = result.losses[result.losses.length - 1]?.loss;
    const summary = `${label}: ${result.epochsDone} epochs, final loss ${finalLoss?.toFixed(4)} ` +
      `(${state.autoencoders[variant.name].seconds} s)`;
    if (progress) progress.done(summary);
    else log(summary);
    return autoencoder;
  } finally {
    optimizer.dispose();
  }
}

/** Loss curves of every autoencoder (total and parts) on one chart. */
async function writeAutoencoderLossPng(runDir: string, state: RunState): Promise<void> {
  const series = [];
  for (const [name, ae] of Object.entries(state.autoencoders)) {
    const parts = ["loss", "reconstruction", "valence", "arousal", "consistency"];
    for (const part of parts) {
      const points = ae.losses.map((p) => ({
        x: p.step,
        y: part === "loss" ? p.loss : p.parts?.[part] ?? NaN,
      }));
      if (points.some((p) => Number.isFinite(p.y))) {
        series.push({ name: name === "paper" ? part : `${name} ${part}`, points });
      }
    }
  }
  await writeFileAtomic(
    `${runDir}/loss-autoencoder.png`,
    await lineChartPng(series, { title: "AUTOENCODER LOSS", xLabel: "step", logY: true }),
  );
}

/** Two labelled face sets as one. */
function concatSets(
  a: { images: Float32Array; labels: readonly data.VaLabel[] },
  b: { images: Float32Array; labels: readonly data.VaLabel[] },
): { images: Float32Array; labels: data.VaLabel[] } {
  const images = new Float32Array(a.images.length + b.images.length);
  images.set(a.images);
  images.set(b.images, a.images.length);
  return { images, labels: [...a.labels, ...b.labels] };
}

/**
 * Target labels for the "fill" mixing: every V/A cell inside the unit disk with fewer real faces
 * than the median non-empty cell gets generated faces up to that count, drawn uniformly inside
 * the cell (and the disk), within `budget` faces in all (sparsest cells first).
 */
export function fillTargets(
  labels: readonly data.VaLabel[],
  binSize: number,
  budget: number,
  seed: number,
): data.VaLabel[] {
  const n = data.cellsPerAxis(binSize);
  const counts = data.binCounts(labels, { binSize });
  const nonEmpty = [...counts].filter((c) => c > 0).sort((a, b) => a - b);
  const target = nonEmpty.length ? nonEmpty[Math.floor(nonEmpty.length / 2)] : 0;
  const rng = data.mulberry32(seed);
  const cells: { cell: number; missing: number }[] = [];
  for (let cell = 0; cell < n * n; cell++) {
    const row = Math.floor(cell / n), col = cell % n;
    const cx = -1 + (col + 0.5) * binSize, cy = -1 + (row + 0.5) * binSize;
    if (cx * cx + cy * cy > 1) continue;
    if (counts[cell] < target) cells.push({ cell, missing: target - counts[cell] });
  }
  cells.sort((a, b) => b.missing - a.missing);
  const out: data.VaLabel[] = [];
  for (const { cell, missing } of cells) {
    const row = Math.floor(cell / n), col = cell % n;
    for (let k = 0; k < missing && out.length < budget; k++) {
      // Rejection-sample a point of the cell that lies in the disk (the cell centre does).
      for (let attempt = 0; attempt < 20; attempt++) {
        const v = Math.min(1, -1 + (col + rng()) * binSize);
        const a = Math.min(1, -1 + (row + rng()) * binSize);
        if (v * v + a * a <= 1 || attempt === 19) {
          out.push(
            v * v + a * a <= 1 ? { valence: v, arousal: a } : {
              valence: -1 + (col + 0.5) * binSize,
              arousal: -1 + (row + 0.5) * binSize,
            },
          );
          break;
        }
      }
    }
  }
  return out;
}

/**
 * The paper's Figure 2: per test identity, a grid of faces over valence (columns) and arousal.
 * Captions give the requested (v, a), or with a judge the (v, a) it reads from each face.
 */
export async function writeFigure2(
  autoencoder: FaceAutoencoder,
  test: FaceSplit,
  path: string,
  identities = 3,
  judge?: { model: ResNet34; inputSize: number },
): Promise<void> {
  const valences = [-0.4, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3, 0.4];
  const arousals = [0.3, 0.2, 0.1, 0, -0.1, -0.2, -0.3];
  // One face per distinct test identity.
  const picked: number[] = [];
  const seen = new Set<string>();
  test.samples.forEach((s, i) => {
    if (!seen.has(s.person) && picked.length < identities) {
      seen.add(s.person);
      picked.push(i);
    }
  });
  const imageValues = 3 * test.size * test.size;
  const sources = gatherImages(test.images, imageValues, picked);
  const { z } = await encodeFaces(autoencoder, sources, picked.length);
  const code = autoencoder.codeSize;
  const targets: data.VaLabel[] = [];
  const codes: number[] = [];
  const cellSources: number[] = [];
  for (const arousal of arousals) {
    for (let k = 0; k < picked.length; k++) {
      for (const valence of valences) {
        targets.push({ valence, arousal });
        codes.push(...z.subarray(k * code, (k + 1) * code));
        cellSources.push(picked[k]);
      }
    }
  }
  const images = await decodeFaces(
    autoencoder,
    Float32Array.from(codes),
    targets,
    gatherImages(test.images, imageValues, cellSources),
  );
  const cells = targets.map((_, i) => images.subarray(i * imageValues, (i + 1) * imageValues));
  let labels = targets.map((t) => `${t.valence.toFixed(1)} ${t.arousal.toFixed(1)}`);
  if (judge) {
    // The fidelity grid: what a judge reads from each face, under the face.
    const read = await predictVa(judge.model, images, targets.length, judge.inputSize);
    labels = targets.map((_, i) => `${read[2 * i].toFixed(1)} ${read[2 * i + 1].toFixed(1)}`);
  }
  const png = await data.imageGrid(cells, arousals.length, valences.length * picked.length, {
    labels,
    scale: 1,
  });
  await writeFileAtomic(path, png);
}

function summarizeRuns(
  config: ExperimentConfig,
  state: RunState,
  trainingFaces: Record<string, number>,
): MetricsFile {
  const strategies: Record<string, StrategyMetrics> = {};
  const quadrantErrorsByStrategy: Record<string, Record<Quadrant, QuadrantError | null>> = {};
  for (const strategy of strategyNames(config)) {
    const runs = Object.values(state.runs).filter((r) => r.strategy === strategy)
      .sort((a, b) => a.seed - b.seed);
    if (runs.length === 0) continue;
    // metrics.json keeps every run's value next to the mean and (sample) std over seeds.
    const over = (values: number[]) => {
      const { mean, std } = summarize(values);
      return { mean, std, runs: values };
    };
    const dimension = (d: "valence" | "arousal") => ({
      rmse: over(runs.map((r) => r.metrics[d].rmse)),
      corr: over(runs.map((r) => r.metrics[d].corr)),
      ccc: over(runs.map((r) => r.metrics[d].ccc)),
      sagr: over(runs.map((r) => r.metrics[d].sagr)),
    });
    strategies[strategy] = { valence: dimension("valence"), arousal: dimension("arousal") };
    const errors = runs.flatMap((r) => r.quadrantErrors ? [r.quadrantErrors] : []);
    if (errors.length) quadrantErrorsByStrategy[strategy] = meanQuadrantErrors(errors);
  }
  const autoencoders: MetricsFile["autoencoders"] = {};
  for (const [name, ae] of Object.entries(state.autoencoders)) {
    autoencoders[name] = {
      finalLoss: ae.losses[ae.losses.length - 1]?.loss ?? null,
      epochs: ae.epochsDone,
      seconds: ae.seconds,
    };
  }
  return {
    strategies,
    trainingFaces,
    autoencoders,
    fidelity: state.fidelity,
    // Absent (dropped by JSON) when no run recorded them.
    quadrantErrors: Object.keys(quadrantErrorsByStrategy).length
      ? quadrantErrorsByStrategy
      : undefined,
    config,
  };
}

/** The mean of several runs' per-quadrant errors (a quadrant empty in any run stays null). */
function meanQuadrantErrors(
  runs: Record<Quadrant, QuadrantError | null>[],
): Record<Quadrant, QuadrantError | null> {
  const out = {} as Record<Quadrant, QuadrantError | null>;
  for (const q of QUADRANTS) {
    const values = runs.map((r) => r[q]);
    out[q] = values.every((v): v is QuadrantError => v !== null)
      ? {
        valence: values.reduce((s, v) => s + v.valence, 0) / values.length,
        arousal: values.reduce((s, v) => s + v.arousal, 0) / values.length,
        count: values[0].count,
      }
      : null;
  }
  return out;
}

/**
 * The report's table of per-quadrant errors: a strategy whose generated faces carry a label's
 * cue differently from real faces pulls real faces of those labels off (for example toward
 * positive valence in the quadrant the generated faces filled).
 */
function quadrantErrorTable(
  errors: Record<string, Record<Quadrant, QuadrantError | null>>,
): string {
  const header = ["strategy", ...QUADRANTS.flatMap((q) => [`${q} V`, `${q} A`])];
  const signed = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(3)}`;
  const rows = Object.entries(errors).map(([strategy, byQuadrant]) => [
    strategy,
    ...QUADRANTS.flatMap((q) => {
      const e = byQuadrant[q];
      return e ? [signed(e.valence), signed(e.arousal)] : ["n/a", "n/a"];
    }),
  ]);
  const align = [undefined, ...header.slice(1).map(() => "right" as const)];
  return markdownTable(header, rows, align).trimEnd();
}

/** The best strategy by mean CCC (V + A); `predict --run` uses its regressor. */
export function bestStrategy(metrics: MetricsFile): string {
  let best = "";
  let bestScore = -Infinity;
  for (const [name, m] of Object.entries(metrics.strategies)) {
    const score = m.valence.ccc.mean + m.arousal.ccc.mean;
    if (score > bestScore) {
      best = name;
      bestScore = score;
    }
  }
  return best;
}

async function writeRegressorInfo(runDir: string, config: ExperimentConfig, metrics: MetricsFile) {
  const best = bestStrategy(metrics);
  await writeFileAtomic(
    `${runDir}/regressor.json`,
    JSON.stringify(
      {
        best,
        weights: `regressor-${best}.safetensors`,
        width: config.regressor.width,
        inputSize: config.regressor.inputSize,
        numOutputs: 2,
        faceSize: 64,
      },
      null,
      2,
    ) + "\n",
  );
}

async function writeRunPictures(runDir: string, state: RunState, metrics: MetricsFile) {
  const curves = Object.keys(metrics.strategies).map((strategy) => {
    const run = Object.values(state.runs).find((r) => r.strategy === strategy)!;
    return { name: strategy, points: run.losses.map((p) => ({ x: p.step, y: p.loss })) };
  });
  await writeFileAtomic(
    `${runDir}/loss-regressor.png`,
    await lineChartPng(curves, {
      title: "REGRESSOR LOSS (FIRST SEED)",
      xLabel: "step",
      logY: true,
    }),
  );
  const groups = (["valence", "arousal"] as const).map((d) => ({
    label: `CCC ${d}`,
    values: Object.entries(metrics.strategies).map(([name, m]) => ({
      name,
      mean: m[d].ccc.mean,
      std: m[d].ccc.std,
    })),
  }));
  await writeFileAtomic(
    `${runDir}/ccc.png`,
    await barChartPng(groups, { title: "CCC BY STRATEGY" }),
  );
}

function describeVariant(config: ExperimentConfig, name: string): string {
  const v = autoencoderVariants(config).find((x) => x.name === name);
  if (!v) return name;
  const parts = [
    v.conditioning === "maps"
      ? "(v, a) maps into every decoder block"
      : "(v, a) at the decoder input",
  ];
  if (v.output === "edit") {
    parts.push(
      "the decoder edits the source face (colour + blend mask)" +
        (v.editColour === "residual" ? " as a change of the source's colours" : "") +
        (v.eraseSource ? " with the source's expression regions blurred away" : "") +
        (v.editRegionsOnly ? ", redrawing only those regions" : "") +
        (v.seesSource ? ", every decoder block seeing that source" : "") +
        (v.warpShift > 0 ? `, moving its pixels by a drawn flow (up to ${v.warpShift} px)` : ""),
    );
  }
  if (v.regionEmphasis > 0) parts.push(`expression regions weighted x${1 + v.regionEmphasis}`);
  if (v.relightTargets) parts.push("targets relit to their source's light");
  if (v.consistencyWeight > 0) {
    const reader = v.consistencyReader === "snapshot"
      ? "a frozen snapshot of its own encoder"
      : `a separately trained ResNet34 reader (${readerSteps(config)} steps)`;
    parts.push(
      `consistency term ${v.consistencyWeight} (read by ${reader}) after ${v.consistencyWarmup} epoch(s)` +
        (v.consistencyRegionsOnly ? ", moving only the expression regions" : ""),
    );
  }
  if (v.balancedTargets) {
    parts.push("target frames drawn with weight 1 / (frames in their V/A cell)");
  }
  return parts.join(", ");
}

/** One row per generated option: its autoencoder's fidelity next to its regressors' scores. */
function optionsTable(config: ExperimentConfig, metrics: MetricsFile): string {
  const f = (
    x: number | undefined,
  ) => (x !== undefined && Number.isFinite(x) ? x.toFixed(3) : "n/a");
  const header =
    "| option | fidelity CCC V | fidelity CCC A | RMSE V | RMSE A | CORR V | CORR A | " +
    "CCC V | CCC A | SAGR V | SAGR A |\n| --- |" + " ---: |".repeat(10);
  const row = (label: string, strategy: string, variant: string | null) => {
    const m = metrics.strategies[strategy];
    if (!m) return null;
    const fid = variant ? metrics.fidelity?.[variant]?.generated.overall : undefined;
    const cells = [
      fid?.valence.ccc,
      fid?.arousal.ccc,
      m.valence.rmse.mean,
      m.arousal.rmse.mean,
      m.valence.corr.mean,
      m.arousal.corr.mean,
      m.valence.ccc.mean,
      m.arousal.ccc.mean,
      m.valence.sagr.mean,
      m.arousal.sagr.mean,
    ];
    return `| ${label} | ${cells.map(f).join(" | ")} |`;
  };
  const mixingText = {
    all: "generated faces only",
    real: "real + generated 1:1",
    fill: "real + generated in sparse cells",
  };
  const rows = [row("`original` (reference, no generation)", "original", null)];
  for (const g of generatedStrategies(config)) {
    rows.push(
      row(
        `\`${generatedStrategyName(g)}\`: ${g.variant} autoencoder, ${mixingText[g.mixing]}`,
        generatedStrategyName(g),
        g.variant,
      ),
    );
  }
  return [header, ...rows.filter((r): r is string => r !== null)].join("\n");
}

function renderReport(
  config: ExperimentConfig,
  experimentData: ExperimentData,
  state: RunState,
  metrics: MetricsFile,
  time: { total: number; thisProcess: number | null },
): string {
  const rows = Object.entries(metrics.strategies).map(([name, m]) => ({ name, metrics: m }));
  const faces = Object.entries(metrics.trainingFaces).map(([k, v]) => `\`${k}\` ${v}`).join(", ");
  const runSeconds = Object.values(state.runs).reduce((s, r) => s + r.seconds, 0);
  const ae = config.autoencoder;
  const aeLines = Object.entries(metrics.autoencoders).map(([name, m]) =>
    `- \`${name}\`: ${describeVariant(config, name)}; ${m.epochs} epochs, final loss ${
      m.finalLoss?.toFixed(4) ?? "n/a"
    } (${m.seconds} s)`
  ).join("\n");
  const fidelity = Object.entries(metrics.fidelity ?? {}).map(([name, report]) =>
    fidelityMarkdown(report, judgeDescription(config)).replace(
      "## Generation fidelity",
      `### Generation fidelity: the ${name} autoencoder`,
    )
  ).join("\n");
  const generatedOptions = generatedStrategies(config).length > 0;
  // The autoencoders whose drawing error (and picture) the run has: synthetic data only.
  const drawn = Object.entries(metrics.fidelity ?? {}).filter(([, r]) => r.drawing).map(([n]) => n);
  const pictures = Object.keys(metrics.autoencoders).map((name) =>
    `![figure 2, ${name}](${variantFile("figure2", name)}.png)`
  ).join(" ");
  return `# Valence/arousal from a face-generating autoencoder: run report

Preset \`${config.preset}\`, ${config.seeds} seed(s) per strategy, base seed ${config.seed}.
Data: ${experimentData.description}.

Autoencoders (widths ${JSON.stringify(ae.size)}, batch ${ae.batchSize}, Adam lr ${ae.lr},
lambda_v ${ae.lambdaValence}, lambda_a ${ae.lambdaArousal}):

${aeLines}

Regressor: ResNet34 (width ${config.regressor.width}) at ${config.regressor.inputSize}x${config.regressor.inputSize},
${config.regressor.steps} Adam steps of batch ${config.regressor.batchSize}, lr ${config.regressor.lr}${
    config.regressor.schedule === "cosine" ? " (cosine decay)" : ""
  }, ${
    config.regressor.pretrained ? `pretrained from ${config.regressor.pretrained}` : "random init"
  }. Training faces per strategy: ${faces}. Total time ${time.total} s${
    time.thisProcess === null ? "" : ` (resumed; ${time.thisProcess} s in the last process)`
  }, regressors ${Math.round(runSeconds)} s.

Metrics on the test set (mean ± std over seeds). RMSE: lower is better; CORR (Pearson), CCC (Lin,
population variances) and SAGR (sign agreement; a ground truth of exactly 0 agrees only with a
prediction of exactly 0): higher is better.

${metricsTable(rows, { boldBest: true })}

${paperTables(metrics.strategies)}
${
    metrics.quadrantErrors
      ? `
### Where the regressors err

Mean error (prediction − truth) of valence (V) and arousal (A) on the test faces of each quadrant
of their true labels, mean over seeds: a strategy whose training faces show a label region's cue
differently from real faces pulls real faces of that region off.

${quadrantErrorTable(metrics.quadrantErrors)}
`
      : ""
  }
${
    generatedOptions
      ? `
## Generation options side by side

Fidelity is the judge's CCC on the generated faces against their requested labels; the other
columns are the regressors' test metrics (means over seeds).

${optionsTable(config, metrics)}
`
      : ""
  }
${fidelity ? "## Generation fidelity\n\n" + fidelity : ""}
## Pictures

- Figure 2 (generated faces; for each of three test identities, columns: valence -0.4..0.4,
  rows: arousal 0.3..-0.3): ${pictures}
- Training faces and generated faces: ![train](samples-train.png) ${
    Object.keys(metrics.autoencoders).map((name) =>
      `![generated, ${name}](${variantFile("samples-generated", name)}.png)`
    ).join(" ")
  }
- V/A histograms of each strategy's training labels: ${
    Object.keys(metrics.strategies).map((s) => `![${s}](histogram-${s}.png)`).join(" ")
  }
${
    drawn.length
      ? `- Re-generated test faces next to their truth (source, re-generated with the label under it,
  the same person rendered with that label): ${
        drawn.map((name) => `![drawing, ${name}](${variantFile("drawing", name)}.png)`).join(" ")
      }
`
      : ""
  }- Loss curves: ![autoencoder](loss-autoencoder.png) ![regressors](loss-regressor.png)
- CCC by strategy: ![ccc](ccc.png)
`;
}

/**
 * The paper's whole experiment as one resumable run: data, autoencoder, Figure 2, every
 * regressor strategy with repeated seeds, evaluation, and a run folder with the report.
 *
 * RUN_DIR/
 *   config.json            the validated configuration
 *   state.json             what is done (for --resume)
 *   autoencoder.safetensors, regressor-<strategy>.safetensors, regressor.json
 *   checkpoints/           per-epoch training state (model + optimizer)
 *   metrics.json, report.md, figure2.png, loss-*.png, histogram-*.png, samples-*.png
 */

import { Device } from "../nn/device.ts";
import type { StateDict, StateValue } from "../nn/module.ts";
import { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import { Adam } from "../nn/optim.ts";
import { disposeStateDict, readSafetensors, writeSafetensors } from "../nn/io.ts";
import * as data from "./data/mod.ts";
import { summarize, vaMetrics } from "./metrics.ts";
import { type ExperimentConfig, strategyNames } from "./config.ts";
import { Progress } from "./progress.ts";
import { fidelityMarkdown, type FidelityReport, measureFidelity } from "./fidelity.ts";
import { barChartPng, lineChartPng } from "./plots.ts";
import { metricsTable, paperTables, type StrategyMetrics } from "./report.ts";
import {
  type AutoencoderProgress,
  decodeFaces,
  encodeFaces,
  generateFaces,
  type LossPoint,
  predictVa,
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
  description: string;
}

/** One regressor run's outcome. */
interface RunRecord {
  strategy: string;
  seed: number;
  trainingFaces: number;
  metrics: ReturnType<typeof vaMetrics>;
  losses: LossPoint[];
  seconds: number;
}

/** What state.json holds. */
interface RunState {
  autoencoder: AutoencoderProgress & { done: boolean; seconds: number };
  fidelity?: FidelityReport;
  runs: Record<string, RunRecord>;
  finished: boolean;
}

/** Write a file atomically: temp file in the same folder, then rename. */
export async function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  if (typeof content === "string") await Deno.writeTextFile(temp, content);
  else await Deno.writeFile(temp, content);
  await Deno.rename(temp, path);
}

/** Load the configured dataset (synthetic by default). */
export async function loadExperimentData(config: ExperimentConfig): Promise<ExperimentData> {
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
  const read = d.source === "afew-va"
    ? async (split: "train" | "test") => await data.readAfewVa(root, { split, seed: config.seed })
    : async (split: "train" | "test") =>
      await data.readAffectNet(root, { split: split === "train" ? "train" : "validation" });
  const splits: FaceSplit[] = [];
  for (const split of ["train", "test"] as const) {
    const result = await read(split);
    const set = await data.loadFaceSet(result.samples, {
      size: 64,
      cache: `${root}/.va-cache-${split}.bin`,
    });
    splits.push({ samples: set.samples, images: set.faces, size: 64 });
  }
  return {
    train: splits[0],
    test: splits[1],
    description: `${d.source} at ${root}: ${splits[0].samples.length} training and ` +
      `${splits[1].samples.length} test faces`,
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
  autoencoder: { finalLoss: number | null; epochs: number; seconds: number };
  /** How well generated faces carry their requested V/A, read by the judge. */
  fidelity?: FidelityReport;
  config: ExperimentConfig;
}

/** Run (or resume) the whole experiment. */
export async function runExperiment(
  config: ExperimentConfig,
  options: ExperimentOptions,
): Promise<ExperimentResult> {
  const { runDir } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  await Deno.mkdir(`${runDir}/checkpoints`, { recursive: true });
  const statePath = `${runDir}/state.json`;
  let state: RunState = {
    autoencoder: { epochsDone: 0, step: 0, losses: [], done: false, seconds: 0 },
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
  await writeFileAtomic(`${runDir}/config.json`, JSON.stringify(config, null, 2) + "\n");
  const saveState = () => writeFileAtomic(statePath, JSON.stringify(state) + "\n");

  const device = options.device ?? await Device.create();
  log(`device: ${device.adapterName}`);
  const started = performance.now();
  const experimentData = await loadExperimentData(config);
  const { train, test } = experimentData;
  log(`data: ${experimentData.description} (${seconds(started)} s)`);
  const trainLabels = train.samples;

  // 1. The face-generating autoencoder.
  const aeConfig = config.autoencoder;
  const autoencoder = new FaceAutoencoder(device, {
    size: aeConfig.size,
    codeSize: aeConfig.codeSize,
    seed: config.seed,
  });
  const aePath = `${runDir}/autoencoder.safetensors`;
  const aeCheckpoint = `${runDir}/checkpoints/autoencoder-train.safetensors`;
  const optimizer = new Adam(autoencoder.parameters(), { lr: aeConfig.lr });
  try {
    if (state.autoencoder.done) {
      const dict = await readSafetensors(device, aePath);
      autoencoder.loadStateDict(dict, { strict: true });
      disposeStateDict(dict);
      log(`autoencoder: loaded from ${aePath}`);
    } else {
      if (state.autoencoder.epochsDone > 0) {
        await loadTrainingCheckpoint(device, aeCheckpoint, autoencoder, optimizer);
        log(`autoencoder: resuming after epoch ${state.autoencoder.epochsDone}`);
      }
      const aeStarted = performance.now() - state.autoencoder.seconds * 1000;
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
          seed: config.seed,
          logEvery: config.logEvery,
        },
        {
          progress: state.autoencoder,
          onStep: (r: StepReport) => {
            progress ??= new Progress({
              label: "autoencoder",
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
            await saveTrainingCheckpoint(aeCheckpoint, autoencoder, optimizer, p);
            state.autoencoder = { ...p, done: false, seconds: seconds(aeStarted) };
            await saveState();
          },
          stop: options.stop,
        },
      );
      if (result.interrupted) {
        progress?.done("autoencoder interrupted");
        return { runDir, interrupted: true };
      }
      await writeSafetensors(aePath, autoencoder.stateDict(), { model: "FaceAutoencoder" });
      state.autoencoder = { ...result, done: true, seconds: seconds(aeStarted) };
      await saveState();
      const finalLoss = result.losses[result.losses.length - 1]?.loss;
      const summary =
        `autoencoder: ${result.epochsDone} epochs, final loss ${finalLoss?.toFixed(4)} ` +
        `(${state.autoencoder.seconds} s)`;
      if (progress) progress.done(summary);
      else log(summary);
    }
  } finally {
    optimizer.dispose();
  }
  await writeFileAtomic(
    `${runDir}/loss-autoencoder.png`,
    await lineChartPng(
      ["loss", "reconstruction", "valence", "arousal"].map((name) => ({
        name,
        points: state.autoencoder.losses.map((p) => ({
          x: p.step,
          y: name === "loss" ? p.loss : p.parts?.[name] ?? NaN,
        })),
      })),
      { title: "AUTOENCODER LOSS", xLabel: "step", logY: true },
    ),
  );

  // 2. Figure 2: faces generated over a V/A grid for a few test identities.
  await writeFigure2(autoencoder, test, `${runDir}/figure2.png`);

  // 3. The generated training set.
  const strategies = strategyNames(config);
  let generated: { images: Float32Array; labels: data.VaLabel[] } | null = null;
  if (strategies.includes("generated")) {
    const count = config.strategies.generatedCount || train.samples.length;
    generated = await generateFaces(
      autoencoder,
      train.images,
      train.samples.length,
      count,
      config.seed + 1,
    );
    await writeFileAtomic(
      `${runDir}/samples-generated.png`,
      await data.contactSheetPng(generated.images, generated.labels, { columns: 8, maxCount: 32 }),
    );
  }
  // 3b. Fidelity: a judge that never saw a generated face reads them.
  if (config.fidelity.enabled && !state.fidelity) {
    const judgeStarted = performance.now();
    const judge = await trainJudge(device, config, experimentData, runDir, options.stop);
    if (!judge) return { runDir, interrupted: true };
    const forFidelity = generated ?? await generateFaces(
      autoencoder,
      train.images,
      train.samples.length,
      config.strategies.generatedCount || train.samples.length,
      config.seed + 1,
    );
    state.fidelity = await measureFidelity(
      judge,
      autoencoder,
      forFidelity,
      { images: test.images, labels: test.samples },
      config.regressor.inputSize,
      config.seed,
    );
    judge.dispose();
    await saveState();
    const g = state.fidelity.generated.overall;
    log(
      `fidelity: the judge reads generated faces at CCC V ${g.valence.ccc.toFixed(3)} ` +
        `A ${g.arousal.ccc.toFixed(3)} against the requested labels (${seconds(judgeStarted)} s)`,
    );
  }
  await writeFileAtomic(
    `${runDir}/samples-train.png`,
    await data.contactSheetPng(train.images, trainLabels, { columns: 8, maxCount: 32 }),
  );

  // 4. Every strategy, every seed.
  const trainingFaces: Record<string, number> = {};
  for (const strategy of strategies) {
    const source = strategy === "generated"
      ? generated!
      : { images: train.images, labels: trainLabels as data.VaLabel[] };
    for (let k = 0; k < config.seeds; k++) {
      const seed = config.seed + k;
      const order = strategy === "generated"
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
      if (state.runs[key]) continue;
      const runStarted = performance.now();
      const model = new ResNet34(device, {
        width: config.regressor.width,
        inputSize: config.regressor.inputSize,
        seed,
      });
      if (config.regressor.pretrained) await loadPretrained(model, config.regressor.pretrained);
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
        {
          steps: config.regressor.steps,
          batchSize: config.regressor.batchSize,
          lr: config.regressor.lr,
          inputSize: config.regressor.inputSize,
          seed,
          logEvery: config.logEvery,
        },
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
      const metrics = vaMetrics(
        Float64Array.from(test.samples, (_, i) => predictions[2 * i]),
        Float64Array.from(test.samples, (_, i) => predictions[2 * i + 1]),
        test.samples.map((s) => s.valence),
        test.samples.map((s) => s.arousal),
      );
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
  autoencoder.dispose();

  // 5. Metrics, report and pictures.
  const metrics = summarizeRuns(config, state, trainingFaces);
  await writeFileAtomic(`${runDir}/metrics.json`, JSON.stringify(metrics, null, 2) + "\n");
  await writeRegressorInfo(runDir, config, metrics);
  await writeRunPictures(runDir, state, metrics);
  await writeFileAtomic(
    `${runDir}/report.md`,
    renderReport(config, experimentData, state, metrics, seconds(started)),
  );
  state.finished = true;
  await saveState();
  log(`run folder: ${runDir} (report.md, metrics.json, figure2.png)`);
  return { runDir, interrupted: false, metrics };
}

/**
 * ImageNet weights into a regressor: everything but the head, whose 1000 outputs do not fit the
 * 2-output (valence, arousal) layer; a head of the right shape is loaded too.
 */
async function loadPretrained(model: ResNet34, path: string): Promise<void> {
  const dict = await readSafetensors(model.fc.weight.device, path);
  for (const [key, own] of [["fc.weight", model.fc.weight], ["fc.bias", model.fc.bias]] as const) {
    const value = dict.get(key);
    if (value && own && value.shape.join() !== own.shape.join()) {
      if ("device" in value) value.dispose();
      dict.delete(key);
    }
  }
  const { missingKeys } = model.loadStateDict(dict, { strict: false });
  disposeStateDict(dict);
  const unexpectedMissing = missingKeys.filter((k) => !k.startsWith("fc."));
  if (unexpectedMissing.length) {
    throw new Error(`${path}: not a ResNet34 of this width ("${unexpectedMissing[0]}" is missing)`);
  }
}

function judgeDescription(config: ExperimentConfig): string {
  return config.data.source === "synthetic"
    ? `a ResNet34 like the regressors, trained on freshly rendered faces of ${config.fidelity.judgePersons} ` +
      `persons seen by neither the autoencoder nor the test set, with V/A uniform over the disk`
    : "a ResNet34 trained on the original real training faces";
}

/**
 * The judge: a regressor trained only on faces the autoencoder never produced (synthetic: new
 * identities with uniform V/A; real data: the original training faces). Saved as judge.safetensors
 * and reloaded on resume.
 */
async function trainJudge(
  device: Device,
  config: ExperimentConfig,
  experimentData: ExperimentData,
  runDir: string,
  stop: StopSignal | undefined,
): Promise<ResNet34 | null> {
  const judge = new ResNet34(device, {
    width: config.regressor.width,
    inputSize: config.regressor.inputSize,
    seed: config.seed + 1000,
  });
  const path = `${runDir}/judge.safetensors`;
  try {
    const dict = await readSafetensors(device, path);
    judge.loadStateDict(dict, { strict: true });
    disposeStateDict(dict);
    return judge;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
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
    images = set.images;
    labels = set.samples;
  }
  const steps = config.fidelity.judgeSteps || config.regressor.steps;
  const progress = new Progress({ label: "judge", total: steps, unit: "img", quiet: config.quiet });
  const result = await trainRegressor(
    device,
    judge,
    images,
    labels,
    labels.map((_, i) => i),
    {
      steps,
      batchSize: config.regressor.batchSize,
      lr: config.regressor.lr,
      inputSize: config.regressor.inputSize,
      seed: config.seed + 1000,
      logEvery: config.logEvery,
    },
    { onStep: (r) => progress.update({ step: r.step, items: r.items, loss: r.loss }), stop },
  );
  progress.done(result.interrupted ? "judge interrupted" : "judge trained");
  if (result.interrupted) {
    judge.dispose();
    return null;
  }
  await writeSafetensors(path, judge.stateDict(), {
    model: "judge",
    width: String(config.regressor.width),
    inputSize: String(config.regressor.inputSize),
  });
  return judge;
}

/** The paper's Figure 2: per test identity, a grid of faces over valence (columns) and arousal. */
export async function writeFigure2(
  autoencoder: FaceAutoencoder,
  test: FaceSplit,
  path: string,
  identities = 3,
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
  const sources = new Float32Array(picked.length * imageValues);
  picked.forEach((index, k) =>
    sources.set(
      test.images.subarray(index * imageValues, (index + 1) * imageValues),
      k * imageValues,
    )
  );
  const { z } = await encodeFaces(autoencoder, sources, picked.length);
  const code = autoencoder.codeSize;
  const targets: data.VaLabel[] = [];
  const codes: number[] = [];
  for (const arousal of arousals) {
    for (let k = 0; k < picked.length; k++) {
      for (const valence of valences) {
        targets.push({ valence, arousal });
        codes.push(...z.subarray(k * code, (k + 1) * code));
      }
    }
  }
  const images = await decodeFaces(autoencoder, Float32Array.from(codes), targets);
  const cells = targets.map((_, i) => images.subarray(i * imageValues, (i + 1) * imageValues));
  const labels = targets.map((t) => `${t.valence.toFixed(1)} ${t.arousal.toFixed(1)}`);
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
  }
  const last = state.autoencoder.losses[state.autoencoder.losses.length - 1];
  return {
    strategies,
    trainingFaces,
    autoencoder: {
      finalLoss: last?.loss ?? null,
      epochs: state.autoencoder.epochsDone,
      seconds: state.autoencoder.seconds,
    },
    fidelity: state.fidelity,
    config,
  };
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

function renderReport(
  config: ExperimentConfig,
  experimentData: ExperimentData,
  state: RunState,
  metrics: MetricsFile,
  totalSeconds: number,
): string {
  const rows = Object.entries(metrics.strategies).map(([name, m]) => ({ name, metrics: m }));
  const faces = Object.entries(metrics.trainingFaces).map(([k, v]) => `\`${k}\` ${v}`).join(", ");
  const runSeconds = Object.values(state.runs).reduce((s, r) => s + r.seconds, 0);
  return `# Valence/arousal from a face-generating autoencoder: run report

Preset \`${config.preset}\`, ${config.seeds} seed(s) per strategy, base seed ${config.seed}.
Data: ${experimentData.description}.

Autoencoder: widths ${
    JSON.stringify(config.autoencoder.size)
  }, ${state.autoencoder.epochsDone} epochs,
batch ${config.autoencoder.batchSize}, Adam lr ${config.autoencoder.lr}, lambda_v ${config.autoencoder.lambdaValence},
lambda_a ${config.autoencoder.lambdaArousal}; final loss ${
    metrics.autoencoder.finalLoss?.toFixed(4) ?? "n/a"
  }
(${state.autoencoder.seconds} s). Regressor: ResNet34 (width ${config.regressor.width}) at
${config.regressor.inputSize}x${config.regressor.inputSize}, ${config.regressor.steps} Adam steps of batch
${config.regressor.batchSize}, lr ${config.regressor.lr}, ${
    config.regressor.pretrained ? `pretrained from ${config.regressor.pretrained}` : "random init"
  }.
Training faces per strategy: ${faces}. Total time ${totalSeconds} s (regressors ${
    Math.round(runSeconds)
  } s).

Metrics on the test set (mean ± std over seeds). RMSE: lower is better; CORR (Pearson), CCC (Lin,
population variances) and SAGR (sign agreement; a ground truth of exactly 0 agrees only with a
prediction of exactly 0): higher is better.

${metricsTable(rows, { boldBest: true })}

${paperTables(metrics.strategies)}
${metrics.fidelity ? "\n" + fidelityMarkdown(metrics.fidelity, judgeDescription(config)) : ""}
## Pictures

- Figure 2 (generated faces; columns: valence -0.4..0.4 per identity, rows: arousal 0.3..-0.3):
  ![figure 2](figure2.png)
- Training faces and generated faces: ![train](samples-train.png) ![generated](samples-generated.png)
- V/A histograms of each strategy's training labels: ${
    Object.keys(metrics.strategies).map((s) => `![${s}](histogram-${s}.png)`).join(" ")
  }
- Loss curves: ![autoencoder](loss-autoencoder.png) ![regressors](loss-regressor.png)
- CCC by strategy: ![ccc](ccc.png)
`;
}

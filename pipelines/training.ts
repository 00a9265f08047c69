/**
 * Training and inference loops on the GPU: the face-generating autoencoder on same-person pairs,
 * face generation with requested (v, a), and the V/A regressor. Batches are uploaded once per
 * step; the loss is read back only every `logEvery` steps, so the CPU prepares the next batch
 * while the GPU works.
 */

import { autotuneConv, captureConvShapes, tuneAtFirstUse } from "../kernels/autotune.ts";
import type { Conv2dGeometry } from "../kernels/conv_geometry.ts";
import type { Device } from "../nn/device.ts";
import * as F from "../nn/functional.ts";
import { FaceAutoencoder } from "../nn/models/autoencoder.ts";
import { normalizeImagenet, type ResNet34 } from "../nn/models/resnet.ts";
import { Adam } from "../nn/optim.ts";
import { loadSafetensorsInto, writeSafetensors } from "../nn/io.ts";
import { noGrad, type Tensor, tidy } from "../nn/tensor.ts";
import { mulberry32, shuffleInPlace } from "./data/rng.ts";
import { inverseCellFrequency, samePersonPairs, sampleUnitDisk } from "./data/samplers.ts";
import type { FaceSample, VaLabel } from "./data/types.ts";
import { batchWeights, expressionMask, expressionWeightMap } from "./regions.ts";
import { relightTo } from "./relight.ts";
import { vaMetrics } from "./metrics.ts";

/** A stop request (Ctrl-C): loops finish their step, save, and return. */
export interface StopSignal {
  readonly requested: boolean;
}

/** One logged point of a loss curve. */
export interface LossPoint {
  step: number;
  loss: number;
  /** Named parts of the loss, when it has parts. */
  parts?: Record<string, number>;
}

/** What a long loop reports after each step (for progress lines). */
export interface StepReport {
  step: number;
  totalSteps: number;
  epoch?: number;
  epochs?: number;
  /** Step within the current epoch (from 1) and steps per epoch, for epoch-based loops. */
  stepInEpoch?: number;
  stepsPerEpoch?: number;
  /** Images processed by this step. */
  items: number;
  /** The loss, on steps where it was read back. */
  loss?: number;
}

/** Copy the CHW images at `indices` into one contiguous batch. */
export function gatherImages(
  images: Float32Array,
  imageValues: number,
  indices: readonly number[],
): Float32Array {
  const out = new Float32Array(indices.length * imageValues);
  indices.forEach((index, k) => {
    out.set(images.subarray(index * imageValues, (index + 1) * imageValues), k * imageValues);
  });
  return out;
}

/**
 * Relight each target of a batch (in place, N x 3 x S x S) to its source's light, fitted where
 * neither face has an expression region (the product of their outside weights).
 */
function relightBatch(
  targets: Float32Array,
  faces: Float32Array,
  iIdx: readonly number[],
  jIdx: readonly number[],
  outside: readonly Float32Array[],
  side: number,
): void {
  const values = 3 * side * side;
  iIdx.forEach((i, k) => {
    const weight = outside[i].map((w, p) => w * outside[jIdx[k]][p]);
    const source = faces.subarray(i * values, (i + 1) * values);
    const target = targets.subarray(k * values, (k + 1) * values);
    target.set(relightTo(source, target, weight, side));
  });
}

/** Side of square 3-channel images stored N x 3 x S x S. */
export function imageSide(images: Float32Array, count: number): number {
  const side = Math.round(Math.sqrt(images.length / count / 3));
  if (count === 0 || 3 * side * side * count !== images.length) {
    throw new Error(`expected ${count} square RGB images, got ${images.length} values`);
  }
  return side;
}

// ---- the autoencoder ------------------------------------------------------------------------

/** Autoencoder training settings (from the experiment config). */
export interface AutoencoderTraining {
  epochs: number;
  batchSize: number;
  lr: number;
  lambdaValence: number;
  lambdaArousal: number;
  pairsPerSample: number;
  /**
   * Draw each pair's target frame with weight 1 / (frames in its V/A cell of this bin size), so
   * the decoder learns rare labels as often as common ones (default: uniform partners).
   */
  balancedTargets?: { binSize: number };
  seed: number;
  logEvery: number;
  /** Extra reconstruction weight on brows, eyes and mouth (0 = the paper's plain MSE). */
  regionEmphasis?: number;
  /**
   * Relight each pair's target frame to its source frame's light before the loss (a smooth gain
   * field fitted outside the expression regions; pipelines/relight.ts), so the decoder is not
   * asked for a light it cannot know.
   */
  relightTargets?: boolean;
  /**
   * Expression consistency: a frozen V/A reader (eval mode, never the judge) must read the
   * requested (v_j, a_j) from D's output; weighted, and only after `warmupEpochs`.
   */
  consistency?: {
    /**
     * A V/A regressor, or "snapshot": a frozen copy of this autoencoder's own encoder taken when
     * the warm-up ends (a cycle E(D(z, v, a)) = (v, a) against a fixed E, so D cannot win by
     * moving the encoder). The snapshot is saved to `snapshotPath` so a resumed run reuses it.
     */
    reader: ResNet34 | "snapshot";
    weight: number;
    warmupEpochs: number;
    inputSize: number;
    snapshotPath?: string;
    /**
     * Let the term's gradient reach only the expression regions (brows, eyes, mouth): the reader
     * sees the whole face, but outside the regions through a detached copy, so the decoder is
     * never pushed to paint cues into hair, skin or background (the streaks a reader can be
     * fooled by).
     */
    regionsOnly?: boolean;
  };
}

/** Where an interrupted or finished autoencoder training stands. */
export interface AutoencoderProgress {
  /** Epochs completed. */
  epochsDone: number;
  /** Steps completed. */
  step: number;
  losses: LossPoint[];
}

/** The same-person pairs of one epoch, shuffled (deterministic in seed and epoch). */
export function epochPairs(
  samples: readonly FaceSample[],
  seed: number,
  epoch: number,
  pairsPerSample: number,
  partnerWeights?: ArrayLike<number>,
): { i: number; j: number }[] {
  const pairs = samePersonPairs(samples, {
    seed: seed * 7919 + epoch,
    pairsPerSample,
    partnerWeights,
  });
  return shuffleInPlace(pairs, mulberry32(seed * 104729 + epoch + 1));
}

/**
 * Train the autoencoder with the paper's loss. Resumes from `progress.epochsDone` (the model and
 * optimizer must hold that epoch's state). `onEpoch` runs after every epoch (checkpoints); the
 * loop stops after the current step when `stop.requested`, returning the progress so far.
 */
export async function trainAutoencoder(
  device: Device,
  model: FaceAutoencoder,
  optimizer: Adam,
  faces: Float32Array,
  samples: readonly FaceSample[],
  settings: AutoencoderTraining,
  options: {
    progress?: AutoencoderProgress;
    onStep?: (report: StepReport) => void;
    onEpoch?: (progress: AutoencoderProgress) => Promise<void>;
    stop?: StopSignal;
  } = {},
): Promise<AutoencoderProgress & { interrupted: boolean }> {
  const side = imageSide(faces, samples.length);
  if (side !== model.imageSize) {
    throw new Error(`faces are ${side}x${side}, the autoencoder expects ${model.imageSize}`);
  }
  const imageValues = 3 * side * side;
  const progress: AutoencoderProgress = options.progress
    ? { ...options.progress, losses: [...options.progress.losses] }
    : { epochsDone: 0, step: 0, losses: [] };
  const partnerWeights = settings.balancedTargets
    ? inverseCellFrequency(samples, settings.balancedTargets.binSize)
    : undefined;
  const firstPairs = epochPairs(
    samples,
    settings.seed,
    0,
    settings.pairsPerSample,
    partnerWeights,
  );
  if (firstPairs.length === 0) {
    throw new Error(
      "no same-person pairs with different V/A, so the autoencoder cannot be trained (AffectNet " +
        "has no identities: train it on AFEW-VA as the paper did, with --ae-data afew-va:PATH)",
    );
  }
  const stepsPerEpoch = Math.ceil(firstPairs.length / settings.batchSize);
  const totalSteps = stepsPerEpoch * settings.epochs;
  const emphasis = settings.regionEmphasis ?? 0;
  const regionMaps = emphasis > 0
    ? samples.map((s) => expressionWeightMap(s.landmarks, s.box, side, { emphasis }))
    : null;
  const consistency = settings.consistency;
  // Each training face's expression regions, computed once for whichever of the two uses them.
  const expressionMasks = settings.relightTargets || consistency?.regionsOnly
    ? samples.map((s) => expressionMask(s.landmarks, s.box, side))
    : null;
  // The light fit's weights: 1 outside a face's expression regions (everywhere without landmarks,
  // where expressionMask covers the whole face).
  const outsideRegions = settings.relightTargets
    ? samples.map((s, i) =>
      s.landmarks && s.landmarks.length >= 68
        ? expressionMasks![i].map((m) => 1 - m)
        : new Float32Array(side * side).fill(1)
    )
    : null;
  const consistencyMasks = consistency?.regionsOnly ? expressionMasks : null;
  // The reader is a fixed function: running statistics, no parameter updates.
  const freeze = (m: FaceAutoencoder | ResNet34) => {
    m.eval();
    for (const p of m.parameters()) p.requiresGrad = false;
  };
  if (consistency && consistency.reader !== "snapshot") freeze(consistency.reader);
  let snapshot: FaceAutoencoder | null = null;
  const readVa = (image: Tensor, n: number): Tensor => {
    if (snapshot) {
      const { v, a } = snapshot.encode(image);
      return F.cat([F.reshape(v, [n, 1]), F.reshape(a, [n, 1])], 1);
    }
    return (consistency!.reader as ResNet34).forward(regressorInput(image, consistency!.inputSize));
  };
  const tuner = new FirstStepTuner(device);
  model.train();
  try {
    for (let epoch = progress.epochsDone; epoch < settings.epochs; epoch++) {
      if (consistency?.reader === "snapshot" && epoch >= consistency.warmupEpochs && !snapshot) {
        snapshot = await encoderSnapshot(
          model,
          epoch === consistency.warmupEpochs,
          consistency.snapshotPath,
        );
        freeze(snapshot);
      }
      const pairs = epoch === 0
        ? firstPairs
        : epochPairs(samples, settings.seed, epoch, settings.pairsPerSample, partnerWeights);
      for (let start = 0; start < pairs.length; start += settings.batchSize) {
        const batch = pairs.slice(start, start + settings.batchSize);
        // Batch norm needs more than one value per channel.
        if (batch.length < 2) continue;
        const n = batch.length;
        const iIdx = batch.map((p) => p.i);
        const jIdx = batch.map((p) => p.j);
        const label = (idx: number[], key: "valence" | "arousal") =>
          device.tensor(idx.map((k) => samples[k][key]), [n]);
        tuner.before();
        const loss = tidy(() => {
          const imageI = device.tensor(gatherImages(faces, imageValues, iIdx), [n, 3, side, side]);
          const targets = gatherImages(faces, imageValues, jIdx);
          if (outsideRegions) relightBatch(targets, faces, iIdx, jIdx, outsideRegions, side);
          const imageJ = device.tensor(targets, [n, 3, side, side]);
          const reconstructionWeights = regionMaps
            ? device.tensor(batchWeights(jIdx.map((k) => regionMaps[k]), side), [n, 3, side, side])
            : undefined;
          const parts = model.loss(
            imageI,
            label(iIdx, "valence"),
            label(iIdx, "arousal"),
            imageJ,
            label(jIdx, "valence"),
            label(jIdx, "arousal"),
            {
              valence: settings.lambdaValence,
              arousal: settings.lambdaArousal,
              reconstructionWeights,
            },
          );
          let total = parts.total;
          const extra: Tensor[] = [];
          if (consistency && epoch >= consistency.warmupEpochs) {
            let shown = parts.generated;
            if (consistencyMasks) {
              const masks = batchWeights(jIdx.map((k) => consistencyMasks[k]), side);
              shown = gradientOnlyInside(shown, masks);
            }
            const read = readVa(shown, n);
            const wanted = device.tensor(
              jIdx.flatMap((k) => [samples[k].valence, samples[k].arousal]),
              [n, 2],
            );
            const term = F.mseLoss(read, wanted);
            total = F.add(total, F.mul(term, consistency.weight));
            extra.push(term);
          }
          return [total, parts.reconstruction, parts.valence, parts.arousal, ...extra];
        });
        optimizer.zeroGrad();
        await loss[0].backward();
        optimizer.step();
        await tuner.after();
        progress.step++;
        const report: StepReport = {
          step: progress.step,
          totalSteps,
          epoch: epoch + 1,
          epochs: settings.epochs,
          stepInEpoch: Math.floor(start / settings.batchSize) + 1,
          stepsPerEpoch,
          items: n,
        };
        const last = start + settings.batchSize >= pairs.length;
        if (progress.step % settings.logEvery === 0 || last) {
          const [total, reconstruction, valence, arousal, consistencyLoss] = await Promise.all(
            loss.map((t) => t.item()),
          );
          const partValues: Record<string, number> = { reconstruction, valence, arousal };
          if (consistencyLoss !== undefined) partValues.consistency = consistencyLoss;
          progress.losses.push({ step: progress.step, loss: total, parts: partValues });
          report.loss = total;
        }
        for (const t of loss) t.dispose();
        options.onStep?.(report);
        if (options.stop?.requested) {
          // An interrupted epoch is redone from its start on resume (its state is not saved).
          return { ...progress, interrupted: true };
        }
      }
      progress.epochsDone = epoch + 1;
      await options.onEpoch?.(progress);
    }
  } finally {
    snapshot?.dispose();
  }
  return { ...progress, interrupted: false };
}

/**
 * The same values as `image` [N, 3, S, S], but its gradient flows back only in proportion to
 * `mask` (same layout, in [0, 1]): detach(image) + mask * (image - detach(image)).
 */
export function gradientOnlyInside(image: Tensor, mask: Float32Array): Tensor {
  const fixed = image.detach();
  return F.add(fixed, F.mul(F.sub(image, fixed), image.device.tensor(mask, image.shape)));
}

/**
 * The frozen encoder copy of the "snapshot" consistency reader: taken from the model when the
 * warm-up ends (and saved), or, when resuming past that point, read back from `path`.
 */
async function encoderSnapshot(
  model: FaceAutoencoder,
  takeNow: boolean,
  path: string | undefined,
): Promise<FaceAutoencoder> {
  const device = model.encoderHead.weight.device;
  const copy = new FaceAutoencoder(device, {
    size: model.widths,
    codeSize: model.codeSize,
    imageSize: model.imageSize,
    conditioning: model.conditioning,
    output: model.output,
    // Filled by loadStateDict below, or read back from the snapshot file.
    eraseMask: model.eraseMask ? new Float32Array(model.eraseMask.size) : undefined,
    editLimit: model.editLimit ? new Float32Array(model.editLimit.size) : undefined,
    editColour: model.editColour,
    seesSource: model.seesSource,
    warpShift: model.warpShift,
  });
  if (!takeNow && path) {
    try {
      await loadSafetensorsInto(copy, path);
      return copy;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new Error(
        `${path}: the consistency reader's snapshot is missing; cannot resume exactly`,
      );
    }
  }
  copy.loadStateDict(model.stateDict(), { strict: true });
  if (path) await writeSafetensors(path, copy.stateDict(), { model: "consistency snapshot" });
  return copy;
}

/** Encode faces in batches (eval mode): z codes [N, codeSize] and predicted (v, a). */
export async function encodeFaces(
  model: FaceAutoencoder,
  faces: Float32Array,
  count: number,
  batchSize = 64,
): Promise<{ z: Float32Array; valence: Float32Array; arousal: Float32Array }> {
  const device = model.encoderHead.weight.device;
  const side = imageSide(faces, count);
  const imageValues = 3 * side * side;
  model.eval();
  const z = new Float32Array(count * model.codeSize);
  const valence = new Float32Array(count);
  const arousal = new Float32Array(count);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const out = noGrad(() =>
      tidy(() => {
        const x = device.tensor(
          faces.subarray(start * imageValues, (start + n) * imageValues),
          [n, 3, side, side],
        );
        const { z, v, a } = model.encode(x);
        return [z, v, a];
      })
    );
    const [zData, vData, aData] = await Promise.all(out.map((t) => t.toArray()));
    z.set(zData, start * model.codeSize);
    valence.set(vData, start);
    arousal.set(aData, start);
    for (const t of out) t.dispose();
  }
  return { z, valence, arousal };
}

/**
 * Decode (z, v, a) triples in batches (eval mode) into N x 3 x S x S images. `sources` are the
 * faces the codes came from (N x 3 x S x S), which an "edit" decoder blends into.
 */
export async function decodeFaces(
  model: FaceAutoencoder,
  z: Float32Array,
  targets: readonly VaLabel[],
  sources?: Float32Array,
  batchSize = 64,
): Promise<Float32Array> {
  const device = model.encoderHead.weight.device;
  const count = targets.length;
  const side = model.imageSize;
  const imageValues = 3 * side * side;
  const code = model.codeSize;
  model.eval();
  const images = new Float32Array(count * imageValues);
  if (model.output === "edit" && sources?.length !== count * imageValues) {
    throw new Error(
      `decodeFaces: an "edit" autoencoder needs the ${count} source faces (${
        count * imageValues
      } values), got ${sources?.length ?? "none"}`,
    );
  }
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const part = targets.slice(start, start + n);
    const out = noGrad(() =>
      tidy(() =>
        model.decode(
          device.tensor(z.subarray(start * code, (start + n) * code), [n, code]),
          device.tensor(part.map((t) => t.valence), [n]),
          device.tensor(part.map((t) => t.arousal), [n]),
          model.output === "edit"
            ? device.tensor(
              sources!.subarray(start * imageValues, (start + n) * imageValues),
              [n, 3, side, side],
            )
            : undefined,
        )
      )
    );
    images.set(await out.toArray(), start * imageValues);
    out.dispose();
  }
  return images;
}

/**
 * The paper's generated training set: appearance codes of random training faces combined with
 * (v, a) drawn uniformly from the unit disk, decoded by D.
 */
export async function generateFaces(
  model: FaceAutoencoder,
  trainFaces: Float32Array,
  trainCount: number,
  count: number,
  seed: number,
): Promise<{ images: Float32Array; labels: VaLabel[]; sources: number[] }> {
  return await generateFacesFor(model, trainFaces, trainCount, sampleUnitDisk(count, seed), seed);
}

/** Faces with the given target labels, each with the appearance of a random training face. */
export async function generateFacesFor(
  model: FaceAutoencoder,
  trainFaces: Float32Array,
  trainCount: number,
  targets: VaLabel[],
  seed: number,
): Promise<{ images: Float32Array; labels: VaLabel[]; sources: number[] }> {
  const count = targets.length;
  const rng = mulberry32(seed ^ 0x5eed);
  const sources = Array.from({ length: count }, () => Math.floor(rng() * trainCount));
  const side = imageSide(trainFaces, trainCount);
  const picked = gatherImages(trainFaces, 3 * side * side, sources);
  const { z } = await encodeFaces(model, picked, count);
  const images = await decodeFaces(model, z, targets, picked);
  return { images, labels: targets, sources };
}

// ---- the regressor --------------------------------------------------------------------------

/** Regressor training settings. */
export interface RegressorTraining {
  steps: number;
  batchSize: number;
  lr: number;
  /** "cosine": lr decays to 0 over the steps (half a cosine); "constant" (default). */
  schedule?: "constant" | "cosine";
  inputSize: number;
  seed: number;
  logEvery: number;
}

/** 64x64 faces on the GPU -> the network's input: resized (bilinear) and ImageNet-normalized. */
export function regressorInput(x: Tensor, inputSize: number): Tensor {
  const resized = x.shape[2] === inputSize && x.shape[3] === inputSize
    ? x
    : F.interpolate(x, { size: [inputSize, inputSize], mode: "bilinear" });
  return normalizeImagenet(resized);
}

/**
 * Autotuning at first use: note the conv shapes of a loop's first step, then time the variants of
 * those not tuned yet on this adapter (cached on disk, so later runs pay nothing). Does nothing
 * when tuning is off (`VA_AUTOTUNE=0`, as in the test task) or, unless `VA_AUTOTUNE=1`, on a CPU
 * rasterizer (kernels/autotune.ts `tuneAtFirstUse`).
 */
export class FirstStepTuner {
  #stop: (() => Conv2dGeometry[]) | null = null;
  /** Whether a first step is still to be captured (decided once, at construction). */
  #pending: boolean;
  constructor(private readonly device: Device) {
    this.#pending = tuneAtFirstUse(device.backend);
  }
  /** Call before the step's forward pass. */
  before(): void {
    if (this.#pending) this.#stop = captureConvShapes(this.device.backend);
  }
  /** Call after the step's optimizer step; tunes once. Returns the (pass, shape) entries tuned. */
  async after(): Promise<number> {
    if (!this.#stop) return 0;
    const shapes = this.#stop();
    this.#stop = null;
    this.#pending = false;
    return await autotuneConv(this.device.backend, shapes);
  }
}

/** The learning rate of step `step` (1-based) of `settings.steps` under `settings.schedule`. */
export function scheduledLr(
  settings: Pick<RegressorTraining, "lr" | "steps" | "schedule">,
  step: number,
): number {
  if (settings.schedule !== "cosine") return settings.lr;
  return settings.lr * 0.5 * (1 + Math.cos(Math.PI * (step - 1) / settings.steps));
}

/**
 * Train a regressor for `steps` Adam steps on the faces at `order` (indices into images/labels,
 * repeats allowed), reshuffled every pass. Returns the loss curve.
 */
export async function trainRegressor(
  device: Device,
  model: ResNet34,
  images: Float32Array,
  labels: readonly VaLabel[],
  order: readonly number[],
  settings: RegressorTraining,
  options: { onStep?: (report: StepReport) => void; stop?: StopSignal } = {},
): Promise<{ losses: LossPoint[]; interrupted: boolean }> {
  if (order.length === 0) throw new Error("trainRegressor: the training set is empty");
  const side = imageSide(images, labels.length);
  const imageValues = 3 * side * side;
  const optimizer = new Adam(model.parameters(), { lr: settings.lr });
  const tuner = new FirstStepTuner(device);
  const rng = mulberry32(settings.seed * 7 + 3);
  const losses: LossPoint[] = [];
  let queue: number[] = [];
  model.train();
  try {
    for (let step = 1; step <= settings.steps; step++) {
      optimizer.lr = scheduledLr(settings, step);
      tuner.before();
      const batch: number[] = [];
      while (batch.length < Math.min(settings.batchSize, Math.max(order.length, 2))) {
        if (queue.length === 0) queue = shuffleInPlace([...order], rng);
        batch.push(queue.pop()!);
      }
      const n = batch.length;
      const loss = tidy(() => {
        const x = device.tensor(gatherImages(images, imageValues, batch), [n, 3, side, side]);
        const y = device.tensor(batch.flatMap((k) => [labels[k].valence, labels[k].arousal]), [
          n,
          2,
        ]);
        return F.mseLoss(model.forward(regressorInput(x, settings.inputSize)), y);
      });
      optimizer.zeroGrad();
      await loss.backward();
      optimizer.step();
      await tuner.after();
      const report: StepReport = { step, totalSteps: settings.steps, items: n };
      if (step % settings.logEvery === 0 || step === settings.steps) {
        report.loss = await loss.item();
        losses.push({ step, loss: report.loss });
      }
      loss.dispose();
      options.onStep?.(report);
      if (options.stop?.requested) return { losses, interrupted: true };
    }
  } finally {
    optimizer.zeroGrad();
    optimizer.dispose();
  }
  return { losses, interrupted: false };
}

/** Predict (v, a) for N faces (eval mode); returns [v0, a0, v1, a1, ...]. */
export async function predictVa(
  model: ResNet34,
  images: Float32Array,
  count: number,
  inputSize: number,
  batchSize = 64,
): Promise<Float32Array> {
  const device = model.fc.weight.device;
  const side = imageSide(images, count);
  const imageValues = 3 * side * side;
  model.eval();
  const out = new Float32Array(count * 2);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const y = noGrad(() =>
      tidy(() => {
        const x = device.tensor(
          images.subarray(start * imageValues, (start + n) * imageValues),
          [n, 3, side, side],
        );
        return model.forward(regressorInput(x, inputSize));
      })
    );
    out.set(await y.toArray(), start * 2);
    y.dispose();
  }
  return out;
}

/** Metrics of interleaved predictions [v0, a0, v1, a1, ...] against labels. */
export function scorePredictions(
  predictions: Float32Array,
  labels: readonly VaLabel[],
): ReturnType<typeof vaMetrics> {
  return vaMetrics(
    labels.map((_, i) => predictions[2 * i]),
    labels.map((_, i) => predictions[2 * i + 1]),
    labels.map((l) => l.valence),
    labels.map((l) => l.arousal),
  );
}

/**
 * The training-step benchmark: the 64x64 conv autoencoder (encoder conv3x3-BN-ReLU-maxpool x4,
 * decoder upsample-conv3x3-BN-ReLU x3 then upsample-conv3x3-sigmoid), MSE reconstruction loss,
 * Adam. The same model is built in bench/peers/torch_bench.py.
 */

// Imported from nn/ rather than mod.ts: mod.ts pulls in the image codecs, which need --allow-ffi.
import { Device } from "../nn/device.ts";
import * as F from "../nn/functional.ts";
import * as optim from "../nn/optim.ts";
import { type Tensor, tidy } from "../nn/tensor.ts";
import { DECODER, ENCODER } from "./shapes.ts";
import { AUTOENCODER_SIZES, FaceAutoencoder } from "../nn/models/autoencoder.ts";
import { ResNet34 } from "../nn/models/resnet.ts";
import { FirstStepTuner } from "../pipelines/training.ts";

/** Result of {@link trainStepBench}. */
export interface StepResult {
  batch: number;
  steps: number;
  msPerStep: number;
  imagesPerSecond: number;
  bytesInUseFirst: number;
  bytesInUseLast: number;
}

interface Layer {
  w: Tensor;
  b: Tensor | null;
  bnW: Tensor | null;
  bnB: Tensor | null;
  runningMean: Tensor | null;
  runningVar: Tensor | null;
}

/** Build the model and time `steps` training steps at `batch`. */
export async function trainStepBench(batch: number, quick: boolean): Promise<StepResult> {
  const device = await Device.create();
  const layers: Layer[] = [];
  let seed = 100;
  for (const [i, o] of ENCODER) layers.push(await paramLayer(device, i, o, seed++, true));
  for (let k = 0; k < DECODER.length; k++) {
    const [i, o] = DECODER[k];
    layers.push(await paramLayer(device, i, o, seed++, k < DECODER.length - 1));
  }
  const params: Tensor[] = [];
  for (const l of layers) {
    for (const t of [l.w, l.b, l.bnW, l.bnB]) if (t) params.push(t);
  }
  const opt = new optim.Adam(params, { lr: 1e-3 });
  const images = device.rand([batch, 3, 64, 64], 7);

  const forward = (x: Tensor): Tensor => {
    let h = x;
    for (let k = 0; k < layers.length; k++) {
      const l = layers[k];
      // The decoder's nearest x2 upsampling + conv as the engine runs it (one op, as
      // nn.Sequential fuses an Upsample followed by a Conv2d), batch norm + ReLU fused likewise.
      h = k >= ENCODER.length
        ? F.upsampleConv2d(h, l.w, l.b, { padding: 1 })
        : F.conv2d(h, l.w, l.b, { padding: 1 });
      if (l.bnW) {
        h = F.batchNorm2d(h, l.runningMean, l.runningVar, l.bnW, l.bnB, {
          training: true,
          relu: true,
        });
      } else {
        h = F.sigmoid(h);
      }
      if (k < ENCODER.length) h = F.maxPool2d(h, { kernelSize: 2 });
    }
    return h;
  };
  const step = async () => void await optimizerStep(opt, () => F.mseLoss(forward(images), images));
  const steps = quick ? 2 : 5;
  const timing = await timeSteps(device, step, 1, steps);
  opt.dispose();
  for (const t of [...params, images]) t.dispose();
  for (const l of layers) {
    l.runningMean?.dispose();
    l.runningVar?.dispose();
  }
  device.destroy();
  return { batch, steps, ...timing, imagesPerSecond: (batch * 1000) / timing.msPerStep };
}

/** Result of {@link memoryOverSteps}. */
export interface MemoryResult {
  steps: number;
  batch: number;
  /** [step, bytes in use, bytes allocated by the pool] after step 1, every 100th step and the last. */
  samples: [number, number, number][];
}

/**
 * GPU memory over a long run (issue 6: flat over 1000 training steps): the demo-size face
 * autoencoder trained `steps` steps at batch 8 with the loss read back every 50 steps (as the
 * training loops log), sampling the device's bytes in use and allocated.
 */
export async function memoryOverSteps(steps: number): Promise<MemoryResult> {
  const device = await Device.create();
  const batch = 8;
  const trainer = faceTrainer(device, AUTOENCODER_SIZES.tiny, batch, 2);
  const samples: [number, number, number][] = [];
  for (let step = 1; step <= steps; step++) {
    await trainer.step(step % 50 === 0);
    if (step === 1 || step % 100 === 0 || step === steps) {
      await device.sync();
      const stats = device.stats();
      samples.push([step, stats.bytesInUse, stats.bytesAllocated]);
    }
  }
  trainer.dispose();
  device.destroy();
  return { steps, batch, samples };
}

/**
 * The paper's face autoencoder of `widths` with Adam and a fixed batch of pairs (model seed
 * `seed`, data seeds 10 * seed + 1..4): `step(readLoss)` trains one step on the paper's loss,
 * reading the loss back when asked (as the training loops do when they log).
 */
function faceTrainer(device: Device, widths: readonly number[], batch: number, seed: number) {
  const model = new FaceAutoencoder(device, { size: [...widths], seed });
  const opt = new optim.Adam(model.parameters(), { lr: 1e-4 });
  const imageI = device.rand([batch, 3, 64, 64], 10 * seed + 1);
  const imageJ = device.rand([batch, 3, 64, 64], 10 * seed + 2);
  const valence = tidy(() => F.sub(F.mul(device.rand([batch], 10 * seed + 3), 2), 1));
  const arousal = tidy(() => F.sub(F.mul(device.rand([batch], 10 * seed + 4), 2), 1));
  return {
    /** One step; with `readLoss` its loss is read back and returned. */
    step: (readLoss = false): Promise<number | null> =>
      optimizerStep(
        opt,
        () => model.loss(imageI, valence, arousal, imageJ, arousal, valence).total,
        readLoss,
      ),
    dispose(): void {
      opt.dispose();
      model.dispose();
      for (const t of [imageI, imageJ, valence, arousal]) t.dispose();
    },
  };
}

/** Result of {@link regressorStepBench}. */
export interface RegressorStepResult extends StepResult {
  /** The ResNet34 width multiplier and input side. */
  width: number;
  side: number;
}

/**
 * The V/A regressor as the demo preset trains it (pipelines/config.ts: ResNet34 at width 1/8 on
 * 64x64 faces, batch 32), an Adam step on the MSE of its two outputs against random targets. It
 * is the step the demo experiment runs most (each regressor 300 steps, several per strategy and
 * seed). The same model and loss are built in bench/peers/torch_bench.py ("train step resnet34
 * w1/8 @64 (batch 32)"). `quick`: batch 8, 2 steps.
 */
export async function regressorStepBench(quick: boolean): Promise<RegressorStepResult> {
  const session = await regressorStepSession(quick);
  return { width: session.width, side: session.side, ...await timeSession(session) };
}

/** A warmed-up step session's time (the fastest block of its steps); the session is disposed of. */
async function timeSession(session: {
  device: Device;
  batch: number;
  steps: number;
  time(blocks: number): Promise<number>;
  dispose(): void;
}): Promise<StepResult> {
  const bytesInUseFirst = session.device.stats().bytesInUse;
  const msPerStep = await session.time(1);
  const result = {
    batch: session.batch,
    steps: session.steps,
    msPerStep,
    bytesInUseFirst,
    bytesInUseLast: session.device.stats().bytesInUse,
    imagesPerSecond: (session.batch * 1000) / msPerStep,
  };
  session.dispose();
  return result;
}

/**
 * The regressor of {@link regressorStepBench} on a device of its own, warmed up (2 steps), as
 * {@link faceStepSession} gives the face autoencoder (bench/ab_trees.ts --what regressor,
 * bench/skip_family.ts --model regressor).
 */
export async function regressorStepSession(quick: boolean) {
  const device = await Device.create();
  const batch = quick ? 8 : 32;
  const width = 1 / 8;
  const side = 64;
  const x = device.rand([batch, 3, side, side], 7);
  const y = device.rand([batch, 2], 8);
  const model = new ResNet34(device, { width, inputSize: side, seed: 1 });
  model.train();
  const opt = new optim.Adam(model.parameters(), { lr: 1e-3 });
  const train = (read: boolean) => optimizerStep(opt, () => F.mseLoss(model.forward(x), y), read);
  const step = async () => void await train(false);
  const steps = quick ? 2 : 10;
  await warmUp(device, step, 2);
  return {
    device,
    batch,
    width,
    side,
    steps,
    time: (blocks: number) => fastestBlock(device, step, steps, blocks),
    /** One training step, recorded and submitted (nothing read back). */
    step,
    /** One more step, its loss read back. */
    loss: async () => (await train(true))!,
    dispose(): void {
      for (const t of [x, y]) t.dispose();
      device.destroy();
    },
  };
}

/**
 * One optimizer step on the loss `lossOf` builds (in a tidy scope, so its intermediates go): the
 * gradients zeroed, backward, the update; with `read` the loss is read back and returned.
 */
async function optimizerStep(
  opt: optim.Adam,
  lossOf: () => Tensor,
  read = false,
): Promise<number | null> {
  const loss = tidy(lossOf);
  opt.zeroGrad();
  await loss.backward();
  opt.step();
  const value = read ? await loss.item() : null;
  loss.dispose();
  return value;
}

/**
 * Run `warmup` steps (pipelines compiled, pool filled), then time `steps` more; the GPU bytes in
 * use before and after the timed ones.
 */
async function timeSteps(
  device: Device,
  step: () => Promise<void>,
  warmup: number,
  steps: number,
): Promise<{ msPerStep: number; bytesInUseFirst: number; bytesInUseLast: number }> {
  await warmUp(device, step, warmup);
  const bytesInUseFirst = device.stats().bytesInUse;
  const msPerStep = await fastestBlock(device, step, steps, 1);
  return { msPerStep, bytesInUseFirst, bytesInUseLast: device.stats().bytesInUse };
}

/**
 * `warmup` steps, as the training loops run them: on a real GPU the first one's conv shapes are
 * tuned before the timed steps (cached on disk; llvmpipe keeps its measured defaults).
 */
async function warmUp(device: Device, step: () => Promise<void>, warmup: number): Promise<void> {
  const tuner = new FirstStepTuner(device);
  for (let i = 0; i < warmup; i++) {
    tuner.before();
    await step();
    await tuner.after();
  }
  await device.sync();
}

/**
 * Milliseconds per step of the fastest of `blocks` blocks of `steps` steps: the block least
 * disturbed by the machine's other load.
 */
async function fastestBlock(
  device: Device,
  step: () => Promise<void>,
  steps: number,
  blocks: number,
): Promise<number> {
  let msPerStep = Infinity;
  for (let block = 0; block < blocks; block++) {
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) await step();
    await device.sync();
    msPerStep = Math.min(msPerStep, (performance.now() - t0) / steps);
  }
  return msPerStep;
}

async function paramLayer(
  device: Device,
  inC: number,
  outC: number,
  seed: number,
  bn: boolean,
): Promise<Layer> {
  const scale = Math.sqrt(2 / (inC * 9));
  const init = device.randn([outC, inC, 3, 3], seed);
  const data = await init.toArray();
  init.dispose();
  for (let i = 0; i < data.length; i++) data[i] *= scale;
  return {
    w: device.tensor(data, [outC, inC, 3, 3], { requiresGrad: true }),
    b: bn ? null : device.zeros([outC], { requiresGrad: true }),
    bnW: bn ? device.ones([outC], { requiresGrad: true }) : null,
    bnB: bn ? device.zeros([outC], { requiresGrad: true }) : null,
    runningMean: bn ? device.zeros([outC]) : null,
    runningVar: bn ? device.ones([outC]) : null,
  };
}

/** Result of {@link faceAutoencoderStepBench}. */
export interface FaceStepResult extends StepResult {
  /** "demo" (the demo preset's paper autoencoder) or "paper" (the paper's widths). */
  size: "demo" | "paper";
  widths: readonly number[];
}

/**
 * The paper's face autoencoder (nn/models/autoencoder.ts, conditioning through the first linear
 * layer, image output) trained on pairs with the paper's loss and Adam: at the demo preset's size
 * ("tiny" widths 8-16-16-32, batch 32, as `deno task train` trains it) or the paper's (64-128-256-
 * 512, batch 64). The same model and loss are built in bench/peers/torch_bench.py.
 */
export async function faceAutoencoderStepBench(
  size: "demo" | "paper",
  quick: boolean,
): Promise<FaceStepResult> {
  const session = await faceStepSession(size, quick);
  return { size, widths: session.widths, ...await timeSession(session) };
}

/**
 * The face autoencoder of {@link faceAutoencoderStepBench} on a device of its own, warmed up (2
 * steps); `time(blocks)` gives milliseconds per step, the fastest of `blocks` blocks of `steps`,
 * and can be called again (bench/kernels.ts alternates it with PyTorch's step without compiling
 * the pipelines again).
 */
export async function faceStepSession(size: "demo" | "paper", quick: boolean) {
  const device = await Device.create();
  const widths = size === "demo" ? AUTOENCODER_SIZES.tiny : AUTOENCODER_SIZES.paper;
  const batch = size === "demo" ? (quick ? 8 : 32) : (quick ? 8 : 64);
  const trainer = faceTrainer(device, widths, batch, 1);
  const steps = quick ? 2 : size === "demo" ? 10 : 3;
  const step = async () => void await trainer.step();
  await warmUp(device, step, 2);
  return {
    device,
    widths,
    batch,
    steps,
    time: (blocks: number) => fastestBlock(device, step, steps, blocks),
    /** One training step, recorded and submitted (nothing read back). */
    step,
    /** One more step, its loss read back (two trees' sessions compared in bench/ab_trees.ts). */
    loss: async () => (await trainer.step(true))!,
    dispose(): void {
      trainer.dispose();
      device.destroy();
    },
  };
}

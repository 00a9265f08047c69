/**
 * Layers with PyTorch's parameter names, shapes and default initialization
 * (kaiming-uniform with a = sqrt(5) for conv/linear weights, which is U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)); the same bound for biases; BatchNorm weight 1, bias 0), drawn from a seeded
 * generator so runs are reproducible.
 */

import type { Device } from "./device.ts";
import { seededRandom } from "./device.ts";
import * as F from "./functional.ts";
import { type HostTensor, Module } from "./module.ts";
import type { Tensor } from "./tensor.ts";

/** A seeded stream of random numbers shared by the layers of one model. */
export class Rng {
  readonly #random: { uniform(): number; normal(): number };
  constructor(seed: number) {
    this.#random = seededRandom(seed);
  }
  /** Uniform in [low, high). */
  uniform(low = 0, high = 1): number {
    return low + (high - low) * this.#random.uniform();
  }
  /** Standard normal. */
  normal(): number {
    return this.#random.normal();
  }
  /** n uniform values in [-bound, bound). */
  uniformArray(n: number, bound: number): Float32Array {
    return Float32Array.from({ length: n }, () => this.uniform(-bound, bound));
  }
  /** n normal values with standard deviation std. */
  normalArray(n: number, std: number): Float32Array {
    return Float32Array.from({ length: n }, () => this.normal() * std);
  }
}

/** Options common to layers with random initialization. */
export interface InitOptions {
  /** Generator for the initial weights; a fresh one seeded with 0 when absent. */
  rng?: Rng;
}

/** An abstract layer taking one tensor. */
export abstract class Layer extends Module {
  /** Apply the layer. */
  abstract forward(x: Tensor): Tensor;
}

/** 2-D convolution, torch.nn.Conv2d (groups 1, dilation 1, zero padding). */
export class Conv2d extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;

  constructor(
    device: Device,
    inChannels: number,
    outChannels: number,
    kernelSize: number,
    options: InitOptions & { stride?: number; padding?: number; bias?: boolean } = {},
  ) {
    super();
    const rng = options.rng ?? new Rng(0);
    this.stride = options.stride ?? 1;
    this.padding = options.padding ?? 0;
    const fanIn = inChannels * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    const shape = [outChannels, inChannels, kernelSize, kernelSize];
    this.weight = this.registerParameter(
      "weight",
      device.tensor(rng.uniformArray(outChannels * fanIn, bound), shape),
    );
    this.bias = options.bias ?? true
      ? this.registerParameter(
        "bias",
        device.tensor(rng.uniformArray(outChannels, bound), [outChannels]),
      )
      : null;
  }

  /**
   * The convolution. `outputFeedsBatchNorm`: the output goes only into a training-mode batch
   * norm, so the bias's gradient is exactly zero and is written as zeros, not summed
   * (F.Conv2dOptions.outputFeedsBatchNorm; Sequential passes it, see feedsTrainingBatchNorm).
   * `activation`: a ReLU or sigmoid applied as part of the op (F.Conv2dOptions.activation;
   * Sequential passes it for a Conv2d followed by ReLU or Sigmoid).
   */
  forward(
    x: Tensor,
    outputFeedsBatchNorm = false,
    activation?: F.Conv2dOptions["activation"],
  ): Tensor {
    return F.conv2d(x, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      outputFeedsBatchNorm,
      activation,
    });
  }

  /**
   * forward(upsample(x)) for a 2x nearest upsampling, as one op (F.upsampleConv2d);
   * `outputFeedsBatchNorm` as in {@link Conv2d.forward}.
   */
  forwardUpsampled(x: Tensor, outputFeedsBatchNorm = false): Tensor {
    return F.upsampleConv2d(x, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      outputFeedsBatchNorm,
    });
  }
}

/** Fully connected layer, torch.nn.Linear: weight [out, in]. */
export class Linear extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    device: Device,
    inFeatures: number,
    outFeatures: number,
    options: InitOptions & { bias?: boolean } = {},
  ) {
    super();
    const rng = options.rng ?? new Rng(0);
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter(
      "weight",
      device.tensor(rng.uniformArray(outFeatures * inFeatures, bound), [outFeatures, inFeatures]),
    );
    this.bias = options.bias ?? true
      ? this.registerParameter(
        "bias",
        device.tensor(rng.uniformArray(outFeatures, bound), [outFeatures]),
      )
      : null;
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** torch.nn.BatchNorm2d with affine parameters and running statistics. */
export class BatchNorm2d extends Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly eps: number;
  readonly momentum: number;
  /** Forward passes in training mode (torch's num_batches_tracked, an int64 buffer). */
  numBatchesTracked = 0;

  constructor(device: Device, channels: number, options: { eps?: number; momentum?: number } = {}) {
    super();
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum ?? 0.1;
    this.weight = this.registerParameter("weight", device.ones([channels]));
    this.bias = this.registerParameter("bias", device.zeros([channels]));
    this.runningMean = this.registerBuffer("running_mean", device.zeros([channels]));
    this.runningVar = this.registerBuffer("running_var", device.ones([channels]));
    this.registerHostState("num_batches_tracked", {
      get: (): HostTensor => ({
        dtype: "I64",
        shape: [],
        data: BigInt64Array.of(BigInt(this.numBatchesTracked)),
      }),
      set: (value: HostTensor) => {
        this.numBatchesTracked = Number(value.data[0] ?? 0);
      },
    });
  }

  forward(x: Tensor): Tensor {
    return this.#run(x, false);
  }

  /** relu(forward(x)) with the ReLU fused into the batch-norm passes (F.batchNorm2d's `relu`). */
  forwardRelu(x: Tensor): Tensor {
    return this.#run(x, true);
  }

  /**
   * relu(forward(x) + residual), fused into the batch-norm passes in training mode
   * (F.batchNormAddRelu: a ResNet block's tail).
   */
  forwardAddRelu(x: Tensor, residual: Tensor): Tensor {
    if (this.training) this.numBatchesTracked++;
    return F.batchNormAddRelu(
      x,
      residual,
      this.runningMean,
      this.runningVar,
      this.weight,
      this.bias,
      { training: this.training, momentum: this.momentum, eps: this.eps },
    );
  }

  /** 2x2 max-pool of relu(forward(x)), as one op (F.batchNormReluMaxPool2d). */
  forwardReluMaxPool(x: Tensor): Tensor {
    if (this.training) this.numBatchesTracked++;
    return F.batchNormReluMaxPool2d(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
    });
  }

  #run(x: Tensor, relu: boolean): Tensor {
    if (this.training) this.numBatchesTracked++;
    return F.batchNorm2d(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
      relu,
    });
  }
}

/** max(x, 0). */
export class ReLU extends Layer {
  forward(x: Tensor): Tensor {
    return F.relu(x);
  }
}

/** Logistic sigmoid. */
export class Sigmoid extends Layer {
  forward(x: Tensor): Tensor {
    return F.sigmoid(x);
  }
}

/** torch.nn.MaxPool2d. */
export class MaxPool2d extends Layer {
  readonly options: F.MaxPool2dOptions;
  constructor(kernelSize: number, stride?: number, padding = 0) {
    super();
    this.options = { kernelSize, stride: stride ?? kernelSize, padding };
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.options);
  }
  /** Whether this is a 2x2 window with stride 2 and no padding (F.batchNormReluMaxPool2d's). */
  get isPlain2x2(): boolean {
    const { kernelSize, stride, padding } = this.options;
    const all = (v: F.MaxPool2dOptions["kernelSize"] | undefined, want: number) =>
      v === undefined || (typeof v === "number" ? v === want : v[0] === want && v[1] === want);
    return all(kernelSize, 2) && all(stride, 2) && all(padding, 0);
  }
}

/** torch.nn.Upsample (nearest by default). */
export class Upsample extends Layer {
  readonly options: F.UpsampleOptions;
  constructor(options: F.UpsampleOptions) {
    super();
    this.options = options;
  }
  forward(x: Tensor): Tensor {
    return F.upsample(x, this.options);
  }
  /** Whether this is a 2x nearest upsampling (which Conv2d.forwardUpsampled can fold in). */
  get isNearest2x(): boolean {
    const { scaleFactor, size, mode } = this.options;
    const factors = typeof scaleFactor === "number" ? [scaleFactor, scaleFactor] : scaleFactor;
    return (mode ?? "nearest") === "nearest" && size === undefined && factors !== undefined &&
      factors[0] === 2 && factors[1] === 2;
  }
}

/** torch.nn.AdaptiveAvgPool2d((1, 1)). */
export class AdaptiveAvgPool2d extends Layer {
  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, 1);
  }
}

/** torch.nn.Flatten (from dim 1 by default). */
export class Flatten extends Layer {
  constructor(readonly startDim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.flatten(x, this.startDim);
  }
}

/**
 * Whether a conv whose next layer is `next` feeds a training-mode batch norm (its bias then has
 * exactly zero gradient: Conv2d.forward's `outputFeedsBatchNorm`).
 */
export function feedsTrainingBatchNorm(next: Layer | undefined): boolean {
  return next instanceof BatchNorm2d && next.training;
}

/** torch.nn.Sequential: children named "0", "1", ... applied in order. */
export class Sequential extends Layer {
  readonly layers: Layer[];
  /**
   * Run a BatchNorm2d directly followed by a ReLU as one fused op (BatchNorm2d.forwardRelu: the
   * same numbers, two fewer passes), and with a 2x2 MaxPool2d after the ReLU as one op too
   * (BatchNorm2d.forwardReluMaxPool: the normalized map is never written). Default true.
   */
  fuseBatchNormRelu = true;
  /**
   * Run a 2x nearest Upsample directly followed by a Conv2d as one op (Conv2d.forwardUpsampled:
   * the same function, the upsampled map never written; float rounding differs where the sub-pixel
   * kernels add up filter taps first). Default true.
   */
  fuseUpsampleConv = true;
  /**
   * Run a Conv2d directly followed by a ReLU or a Sigmoid as one op (F.conv2d's `activation`: the
   * same numbers; where the conv variant can, the activation is applied as the conv stores its
   * output, one pass fewer). Default true.
   */
  fuseConvActivation = true;
  constructor(...layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((layer, i) => this.registerModule(String(i), layer));
  }
  forward(x: Tensor): Tensor {
    let h = x;
    const layers = this.layers;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i];
      const next = layers[i + 1];
      const afterNext = layers[i + 2];
      if (
        this.fuseBatchNormRelu && layer instanceof BatchNorm2d && next instanceof ReLU &&
        afterNext instanceof MaxPool2d && afterNext.isPlain2x2
      ) {
        h = layer.forwardReluMaxPool(h);
        i += 2;
      } else if (this.fuseBatchNormRelu && layer instanceof BatchNorm2d && next instanceof ReLU) {
        h = layer.forwardRelu(h);
        i++;
      } else if (
        this.fuseUpsampleConv && layer instanceof Upsample && layer.isNearest2x &&
        layers[i + 1] instanceof Conv2d
      ) {
        h = (layers[i + 1] as Conv2d).forwardUpsampled(h, feedsTrainingBatchNorm(afterNext));
        i++;
      } else if (layer instanceof Conv2d && feedsTrainingBatchNorm(next)) {
        h = layer.forward(h, true);
      } else if (
        this.fuseConvActivation && layer instanceof Conv2d &&
        (next instanceof ReLU || next instanceof Sigmoid)
      ) {
        h = layer.forward(h, false, next instanceof ReLU ? "relu" : "sigmoid");
        i++;
      } else {
        h = layer.forward(h);
      }
    }
    return h;
  }
}

/**
 * ResNet34 with torchvision's exact topology and parameter names (conv1, bn1, layer1..layer4 of
 * BasicBlocks [3, 4, 6, 3] with 1x1-conv + BN downsample, fc), so torchvision state dicts load
 * unchanged; a width multiplier and an input size make CPU-sized variants.
 */

import type { Device } from "../device.ts";
import * as F from "../functional.ts";
import { BatchNorm2d, Conv2d, Layer, Linear, Rng, Sequential } from "../layers.ts";
import { keep, type Tensor } from "../tensor.ts";

/** ImageNet channel means and standard deviations torchvision's pretrained weights expect. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** The mean and variance tensors of the normalization, uploaded once per device. */
const imagenetStats = new WeakMap<Device, { mean: Tensor; variance: Tensor }>();

/**
 * (x - mean[c]) / std[c] per channel for images in [0, 1], the preprocessing torchvision's
 * ImageNet weights were trained with. Runs as an eval-mode batch norm with eps 0, which is exactly
 * that per-channel affine map.
 */
export function normalizeImagenet(x: Tensor): Tensor {
  if (x.rank !== 4 || x.shape[1] !== 3) {
    throw new Error(`normalizeImagenet: expected [N, 3, H, W], got [${x.shape.join(", ")}]`);
  }
  let stats = imagenetStats.get(x.device);
  if (!stats) {
    stats = {
      mean: keep(x.device.tensor(IMAGENET_MEAN, [3])),
      variance: keep(x.device.tensor(IMAGENET_STD.map((s) => s * s), [3])),
    };
    imagenetStats.set(x.device, stats);
  }
  return F.batchNorm2d(x, stats.mean, stats.variance, null, null, { training: false, eps: 0 });
}

/** torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu") conv initialization. */
function kaimingFanOut(conv: Conv2d, rng: Rng): void {
  const [out, , kh, kw] = conv.weight.shape;
  const std = Math.sqrt(2 / (out * kh * kw));
  conv.weight.device.backend.write(conv.weight.buffer, rng.normalArray(conv.weight.size, std));
}

/** torchvision's BasicBlock: two 3x3 convs with BN, a residual add, and ReLU. */
export class BasicBlock extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  /**
   * Whether the ReLUs run fused into bn1, and into bn2 with the residual add (same numbers, fewer
   * passes).
   */
  readonly fused: boolean;

  constructor(
    device: Device,
    inPlanes: number,
    planes: number,
    stride: number,
    rng: Rng,
    fused = true,
  ) {
    super();
    this.fused = fused;
    this.conv1 = this.registerModule(
      "conv1",
      new Conv2d(device, inPlanes, planes, 3, { stride, padding: 1, bias: false, rng }),
    );
    this.bn1 = this.registerModule("bn1", new BatchNorm2d(device, planes));
    this.conv2 = this.registerModule(
      "conv2",
      new Conv2d(device, planes, planes, 3, { padding: 1, bias: false, rng }),
    );
    this.bn2 = this.registerModule("bn2", new BatchNorm2d(device, planes));
    kaimingFanOut(this.conv1, rng);
    kaimingFanOut(this.conv2, rng);
    if (stride !== 1 || inPlanes !== planes) {
      const conv = new Conv2d(device, inPlanes, planes, 1, { stride, bias: false, rng });
      kaimingFanOut(conv, rng);
      this.downsample = this.registerModule(
        "downsample",
        new Sequential(conv, new BatchNorm2d(device, planes)),
      );
    } else {
      this.downsample = null;
    }
  }

  forward(x: Tensor): Tensor {
    const identity = () => this.downsample ? this.downsample.forward(x) : x;
    if (!this.fused) {
      const out = this.bn2.forward(
        this.conv2.forward(F.relu(this.bn1.forward(this.conv1.forward(x)))),
      );
      return F.relu(F.add(out, identity()));
    }
    // relu(bn1(.)) fused (F.batchNorm2d's relu); bn2, the residual add and the ReLU one op
    // (F.batchNormAddRelu).
    const out = this.conv2.forward(this.bn1.forwardRelu(this.conv1.forward(x)));
    return this.bn2.forwardAddRelu(out, identity());
  }
}

/** Options of {@link ResNet34}. */
export interface ResNetOptions {
  /** Outputs of the final linear layer; 2 for (valence, arousal). Default 2. */
  numOutputs?: number;
  /** Channel width multiplier (1 = torchvision's 64-128-256-512). Default 1. */
  width?: number;
  /** Side of the square input the model is meant for (informational; any size >= 32 works). */
  inputSize?: number;
  /** Seed of the initialization. Default 0. */
  seed?: number;
  /** Fuse the ReLUs into batch norm and the residual adds (same numbers). Default true. */
  fused?: boolean;
}

/** torchvision.models.resnet34 with a configurable head and width. */
export class ResNet34 extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly fc: Linear;
  /** The input side the model was configured for (224 by default). */
  readonly inputSize: number;
  readonly numOutputs: number;
  readonly width: number;
  /** See {@link ResNetOptions.fused}. */
  readonly fused: boolean;

  constructor(device: Device, options: ResNetOptions = {}) {
    super();
    this.fused = options.fused ?? true;
    this.numOutputs = options.numOutputs ?? 2;
    this.width = options.width ?? 1;
    this.inputSize = options.inputSize ?? 224;
    const rng = new Rng(options.seed ?? 0);
    const planes = [64, 128, 256, 512].map((p) => Math.max(1, Math.round(p * this.width)));
    this.conv1 = this.registerModule(
      "conv1",
      new Conv2d(device, 3, planes[0], 7, { stride: 2, padding: 3, bias: false, rng }),
    );
    kaimingFanOut(this.conv1, rng);
    this.bn1 = this.registerModule("bn1", new BatchNorm2d(device, planes[0]));
    let inPlanes = planes[0];
    const makeLayer = (name: string, p: number, blocks: number, stride: number) => {
      const list: BasicBlock[] = [];
      for (let i = 0; i < blocks; i++) {
        list.push(new BasicBlock(device, inPlanes, p, i === 0 ? stride : 1, rng, this.fused));
        inPlanes = p;
      }
      return this.registerModule(name, new Sequential(...list));
    };
    this.layer1 = makeLayer("layer1", planes[0], 3, 1);
    this.layer2 = makeLayer("layer2", planes[1], 4, 2);
    this.layer3 = makeLayer("layer3", planes[2], 6, 2);
    this.layer4 = makeLayer("layer4", planes[3], 3, 2);
    this.fc = this.registerModule("fc", new Linear(device, planes[3], this.numOutputs, { rng }));
  }

  /** x: [N, 3, H, W], already normalized (see normalizeImagenet). Returns [N, numOutputs]. */
  forward(x: Tensor): Tensor {
    const stem = this.conv1.forward(x);
    let h = this.fused ? this.bn1.forwardRelu(stem) : F.relu(this.bn1.forward(stem));
    h = F.maxPool2d(h, { kernelSize: 3, stride: 2, padding: 1 });
    h = this.layer4.forward(this.layer3.forward(this.layer2.forward(this.layer1.forward(h))));
    return this.fc.forward(F.flatten(F.adaptiveAvgPool2d(h, 1), 1));
  }
}

/**
 * The paper's face-generating autoencoder. Encoder E: repeated [3x3 conv, BatchNorm, ReLU, 2x2
 * max-pool] on a 3x64x64 face, then a linear head to (z, v, a). Decoder D: a linear layer from
 * (z, v, a) to a small feature map, repeated [2x upsample, 3x3 conv, BatchNorm, ReLU], a last
 * 3x3 conv and a sigmoid. Widths are configuration; the paper gives only the block types.
 *
 * Beyond the paper, the decoder can also "edit" the source face instead of drawing it whole: its
 * last conv then gives a colour image and a blend mask, and the output is
 * source * (1 - mask) + colour * mask, so identity, hair and background stay sharp and the
 * decoder's capacity goes to the expression.
 */

import type { Device } from "../device.ts";
import * as F from "../functional.ts";
import {
  BatchNorm2d,
  Conv2d,
  feedsTrainingBatchNorm,
  Layer,
  Linear,
  MaxPool2d,
  ReLU,
  Rng,
  Sequential,
  Sigmoid,
  Upsample,
} from "../layers.ts";
import type { Tensor } from "../tensor.ts";
import { isHostTensor, type StateValue } from "../module.ts";

/** Named sizes: `paper` (64-128-256-512), `demo` (CPU-friendly), `tiny` (smoke tests). */
export const AUTOENCODER_SIZES = {
  paper: [64, 128, 256, 512],
  demo: [16, 32, 64, 128],
  tiny: [8, 16, 16, 32],
} as const;

/** Options of {@link FaceAutoencoder}. */
export interface FaceAutoencoderOptions {
  /** A named size, or explicit encoder widths (the decoder mirrors them). Default "demo". */
  size?: keyof typeof AUTOENCODER_SIZES | readonly number[];
  /** Length of the appearance code z. Default 32, as in the paper. */
  codeSize?: number;
  /** Side of the square input image; must be divisible by 2^blocks. Default 64. */
  imageSize?: number;
  /** Seed of the initialization. Default 0. */
  seed?: number;
  /**
   * How (v, a) reach the decoder. "input" (the paper): only through the first linear layer.
   * "maps": also as two constant feature maps concatenated to the input of every decoder conv,
   * so each block sees the requested expression directly.
   */
  conditioning?: "input" | "maps";
  /**
   * What the decoder produces. "image" (the paper): the face itself. "edit": a colour image and a
   * one-channel blend mask over the source face (the image that was encoded), so
   * `decode` needs that source.
   */
  output?: "image" | "edit";
  /**
   * "edit" only: an S x S map in [0, 1] of where expressions live in the (aligned) faces. There
   * the source the decoder blends into is replaced by its 8x8-block average, so the decoder has to
   * draw the expression instead of keeping the source's. Saved with the weights (`erase_mask`).
   */
  eraseMask?: Float32Array;
  /**
   * "edit" only: an S x S ceiling in [0, 1] on the blend mask. Where it is 0 the output is the
   * source exactly, so the decoder redraws only where expressions live and cannot paint anything
   * (lines, cues) over identity, hair or background. Saved with the weights (`edit_limit`).
   */
  editLimit?: Float32Array;
  /**
   * "edit" only: how the decoder's colour channels c in (0, 1) are read. "absolute": c is the
   * colour. "residual": c is a change of the (erased) source, colour = source + 2c - 1, so skin
   * tone and lighting come from the source and the decoder draws only what differs. Saved with
   * the weights (a one-value `edit_residual` buffer).
   */
  editColour?: "absolute" | "residual";
  /**
   * "edit" only: the source the decoder blends into (erased where the erase map says), resized to
   * each decoder block's size, is concatenated to the input of every decoder conv, so the decoder
   * draws in the face's own skin tone and light instead of guessing them from z. Marked in the
   * weights (a one-value `decoder_sees_source` buffer).
   */
  seesSource?: boolean;
  /**
   * "edit" only: the largest shift in pixels of a flow the decoder also draws (two more output
   * channels, (2s - 1) * warpShift, times the blend-mask ceiling where there is one); the source
   * the decoder blends into (erased or not) is warped by it first, so features it moves (brows,
   * lids, mouth corners) keep their pixels and stay sharp. 0 (default) = no flow. Saved with the
   * weights (a one-value `decoder_warp` buffer holding the shift).
   */
  warpShift?: number;
}

/** Weights of the paper's loss. */
export interface AutoencoderLossWeights {
  /** lambda_v, default 0.5. */
  valence?: number;
  /** lambda_a, default 0.5. */
  arousal?: number;
  /**
   * Per-pixel weights of the reconstruction term, shaped like the images [N, 3, S, S] and
   * normalized to mean 1 by the caller; e.g. larger on the mouth, eyes and brows so expressions
   * are not drowned by identity. Default: uniform (the paper's MSE).
   */
  reconstructionWeights?: Tensor;
}

/** The loss and its parts (0-d tensors). */
export interface AutoencoderLoss {
  total: Tensor;
  valence: Tensor;
  arousal: Tensor;
  reconstruction: Tensor;
  /** The generated image D(z_i, v_j, a_j). */
  generated: Tensor;
}

/** The face-generating autoencoder of Kim, Park and Chang (2020). */
export class FaceAutoencoder extends Layer {
  readonly encoder: Sequential;
  readonly encoderHead: Linear;
  readonly decoderInput: Linear;
  readonly decoder: Sequential;
  readonly widths: readonly number[];
  readonly codeSize: number;
  readonly imageSize: number;
  /** Side of the feature map between the linear layers and the conv stacks. */
  readonly bottleneckSize: number;
  /** How (v, a) enter the decoder (see {@link FaceAutoencoderOptions.conditioning}). */
  readonly conditioning: "input" | "maps";
  /** What the decoder produces (see {@link FaceAutoencoderOptions.output}). */
  readonly output: "image" | "edit";
  /** The erase map [1, 1, S, S] (see {@link FaceAutoencoderOptions.eraseMask}), or null. */
  readonly eraseMask: Tensor | null;
  /** The blend-mask ceiling [1, 1, S, S] (see {@link FaceAutoencoderOptions.editLimit}), or null. */
  readonly editLimit: Tensor | null;
  /** How an "edit" decoder's colour is read (see {@link FaceAutoencoderOptions.editColour}). */
  readonly editColour: "absolute" | "residual";
  /** Whether the decoder's convs see the (erased) source ({@link FaceAutoencoderOptions.seesSource}). */
  readonly seesSource: boolean;
  /** Largest flow shift in pixels, 0 = none ({@link FaceAutoencoderOptions.warpShift}). */
  readonly warpShift: number;

  constructor(device: Device, options: FaceAutoencoderOptions = {}) {
    super();
    const size = options.size ?? "demo";
    this.widths = typeof size === "string" ? AUTOENCODER_SIZES[size] : [...size];
    if (!this.widths || this.widths.length === 0 || this.widths.some((w) => !(w >= 1))) {
      throw new Error(`FaceAutoencoder: bad size ${JSON.stringify(size)}`);
    }
    this.codeSize = options.codeSize ?? 32;
    this.imageSize = options.imageSize ?? 64;
    const blocks = this.widths.length;
    this.bottleneckSize = this.imageSize / 2 ** blocks;
    if (!Number.isInteger(this.bottleneckSize) || this.bottleneckSize < 1) {
      throw new Error(
        `FaceAutoencoder: image size ${this.imageSize} is not divisible by 2^${blocks}`,
      );
    }
    const rng = new Rng(options.seed ?? 0);
    this.conditioning = options.conditioning ?? "input";
    this.output = options.output ?? "image";
    this.seesSource = options.seesSource ?? false;
    if (this.seesSource && this.output !== "edit") {
      throw new Error('FaceAutoencoder: seesSource needs output "edit"');
    }
    this.warpShift = options.warpShift ?? 0;
    if (!(this.warpShift >= 0 && this.warpShift <= 16)) {
      throw new Error(`FaceAutoencoder: warpShift ${options.warpShift} must be in [0, 16]`);
    }
    if (this.warpShift > 0 && this.output !== "edit") {
      throw new Error('FaceAutoencoder: warpShift needs output "edit"');
    }
    // Extra input channels of every decoder conv: the (v, a) maps, the resized source.
    const extra = (this.conditioning === "maps" ? 2 : 0) + (this.seesSource ? 3 : 0);
    const encoderLayers: Layer[] = [];
    let channels = 3;
    for (const w of this.widths) {
      encoderLayers.push(
        new Conv2d(device, channels, w, 3, { padding: 1, rng }),
        new BatchNorm2d(device, w),
        new ReLU(),
        new MaxPool2d(2),
      );
      channels = w;
    }
    this.encoder = this.registerModule("encoder", new Sequential(...encoderLayers));
    const last = this.widths[blocks - 1];
    const flat = last * this.bottleneckSize ** 2;
    this.encoderHead = this.registerModule(
      "encoder_head",
      new Linear(device, flat, this.codeSize + 2, { rng }),
    );
    this.decoderInput = this.registerModule(
      "decoder_input",
      new Linear(device, this.codeSize + 2, flat, { rng }),
    );
    const decoderLayers: Layer[] = [];
    channels = last;
    for (const w of [...this.widths].reverse()) {
      decoderLayers.push(
        new Upsample({ scaleFactor: 2, mode: "nearest" }),
        new Conv2d(device, channels + extra, w, 3, { padding: 1, rng }),
        new BatchNorm2d(device, w),
        new ReLU(),
      );
      channels = w;
    }
    decoderLayers.push(
      // "edit": 3 colour channels + 1 blend mask (+ 2 flow channels with a warp).
      new Conv2d(
        device,
        channels + extra,
        this.output === "edit" ? (this.warpShift > 0 ? 6 : 4) : 3,
        3,
        { padding: 1, rng },
      ),
      new Sigmoid(),
    );
    this.decoder = this.registerModule("decoder", new Sequential(...decoderLayers));
    const map = (name: "eraseMask" | "editLimit", buffer: string): Tensor | null => {
      const values = options[name];
      if (!values) return null;
      const side = this.imageSize;
      if (this.output !== "edit") throw new Error(`FaceAutoencoder: ${name} needs output "edit"`);
      if (values.length !== side * side) {
        throw new Error(
          `FaceAutoencoder: ${name} has ${values.length} values, expected ${side}x${side}`,
        );
      }
      return this.registerBuffer(buffer, device.tensor(values, [1, 1, side, side]));
    };
    this.eraseMask = map("eraseMask", "erase_mask");
    this.editLimit = map("editLimit", "edit_limit");
    this.editColour = options.editColour ?? "absolute";
    if (this.editColour === "residual") {
      if (this.output !== "edit") {
        throw new Error('FaceAutoencoder: editColour "residual" needs output "edit"');
      }
      // A marker, so a checkpoint says how its colour channels are read.
      this.registerBuffer("edit_residual", device.tensor(new Float32Array([1]), [1]));
    }
    if (this.seesSource) {
      this.registerBuffer("decoder_sees_source", device.tensor(new Float32Array([1]), [1]));
    }
    if (this.warpShift > 0) {
      this.registerBuffer("decoder_warp", device.tensor(new Float32Array([this.warpShift]), [1]));
    }
  }

  /** x: [N, 3, S, S] in [0, 1] -> z [N, codeSize], v [N], a [N]. */
  encode(x: Tensor): { z: Tensor; v: Tensor; a: Tensor } {
    if (
      x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== this.imageSize ||
      x.shape[3] !== this.imageSize
    ) {
      throw new Error(
        `FaceAutoencoder.encode: expected [N, 3, ${this.imageSize}, ${this.imageSize}], got [${
          x.shape.join(", ")
        }]`,
      );
    }
    const head = this.encoderHead.forward(F.flatten(this.encoder.forward(x), 1));
    const n = x.shape[0];
    return {
      z: F.narrow(head, 1, 0, this.codeSize),
      v: F.reshape(F.narrow(head, 1, this.codeSize, 1), [n]),
      a: F.reshape(F.narrow(head, 1, this.codeSize + 1, 1), [n]),
    };
  }

  /**
   * (z [N, codeSize], v [N], a [N]) -> image [N, 3, S, S] in (0, 1). An "edit" decoder also needs
   * `source` [N, 3, S, S], the faces z was encoded from, which it blends its colours into.
   */
  decode(z: Tensor, v: Tensor, a: Tensor, source?: Tensor): Tensor {
    const n = z.shape[0];
    if (z.rank !== 2 || z.shape[1] !== this.codeSize || v.size !== n || a.size !== n) {
      throw new Error(
        `FaceAutoencoder.decode: expected z [N, ${this.codeSize}], v [N], a [N]; got z [${z.shape}], ` +
          `v [${v.shape}], a [${a.shape}]`,
      );
    }
    const side = this.imageSize;
    if (this.output === "edit") {
      if (!source) {
        throw new Error('FaceAutoencoder.decode: an "edit" decoder needs the source faces');
      }
      const s = source.shape;
      if (source.rank !== 4 || s[0] !== n || s[1] !== 3 || s[2] !== side || s[3] !== side) {
        throw new Error(
          `FaceAutoencoder.decode: expected source [${n}, 3, ${side}, ${side}], got [${
            s.join(", ")
          }]`,
        );
      }
      let base = this.eraseMask ? this.eraseExpression(source) : source;
      const drawn = this.decodeRaw(z, v, a, this.seesSource ? base : undefined);
      const mask = F.narrow(drawn, 1, 3, 1);
      if (this.warpShift > 0) {
        // Flow channels in (0, 1) -> shifts in (-warpShift, warpShift), none outside the regions.
        let flow = F.mul(F.sub(F.mul(F.narrow(drawn, 1, 4, 2), 2), 1), this.warpShift);
        if (this.editLimit) flow = F.mul(flow, repeatMap(this.editLimit, n, 2));
        base = F.warp(base, flow, this.warpShift);
      }
      const colour = this.editColour === "residual"
        ? F.add(base, F.sub(F.mul(F.narrow(drawn, 1, 0, 3), 2), 1))
        : F.narrow(drawn, 1, 0, 3);
      // base + mask * (colour - base), the mask repeated over the colour channels.
      let mask3 = F.cat([mask, mask, mask], 1);
      if (this.editLimit) mask3 = F.mul(mask3, repeatMap(this.editLimit, n, 3));
      return F.add(base, F.mul(mask3, F.sub(colour, base)));
    }
    return this.decodeRaw(z, v, a);
  }

  /**
   * The source with its expression regions (the erase map) replaced by 8x8-block averages,
   * bilinearly upsampled: three exact 2x2 averages (bilinear halving at pixel centres), then x8.
   */
  eraseExpression(source: Tensor): Tensor {
    if (!this.eraseMask) throw new Error("FaceAutoencoder.eraseExpression: no erase map");
    const [n, , side] = source.shape;
    let low = source;
    for (let s = side / 2; s >= side / 8; s /= 2) {
      low = F.interpolate(low, { size: [s, s], mode: "bilinear" });
    }
    low = F.interpolate(low, { size: [side, side], mode: "bilinear" });
    return F.add(source, F.mul(repeatMap(this.eraseMask, n, 3), F.sub(low, source)));
  }

  /** The decoder's own output: the image, or colour + mask channels for "edit". */
  private decodeRaw(z: Tensor, v: Tensor, a: Tensor, base?: Tensor): Tensor {
    const n = z.shape[0];
    const input = F.cat([z, F.reshape(v, [n, 1]), F.reshape(a, [n, 1])], 1);
    const h = F.relu(this.decoderInput.forward(input));
    const last = this.widths[this.widths.length - 1];
    let x = F.reshape(h, [n, last, this.bottleneckSize, this.bottleneckSize]);
    if (this.conditioning === "input" && !base) return this.decoder.forward(x);
    const va = F.reshape(F.cat([F.reshape(v, [n, 1]), F.reshape(a, [n, 1])], 1), [n, 2, 1, 1]);
    // The base at every block size, by exact 2x2 averages (bilinear halving at pixel centres).
    const pyramid = new Map<number, Tensor>();
    for (let level = base, s = this.imageSize; level && s > this.bottleneckSize; s /= 2) {
      if (s < this.imageSize) level = F.interpolate(level, { size: [s, s], mode: "bilinear" });
      pyramid.set(s, level);
    }
    const layers = this.decoder.layers;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i];
      const next = layers[i + 1];
      if (
        !base && this.decoder.fuseUpsampleConv && layer instanceof Upsample &&
        layer.isNearest2x && next instanceof Conv2d
      ) {
        // Constant (v, a) maps upsample to themselves: concatenated before the upsampling, the
        // upsample + conv run as one op (as in Sequential). The base pyramid is not constant, so
        // with a base the two run apart.
        const parts = [x];
        if (this.conditioning === "maps") {
          parts.push(F.interpolate(va, { size: [x.shape[2], x.shape[3]], mode: "nearest" }));
        }
        x = next.forwardUpsampled(F.cat(parts, 1), feedsTrainingBatchNorm(layers[i + 2]));
        i++;
        continue;
      }
      if (layer instanceof Conv2d) {
        const parts = [x];
        if (this.conditioning === "maps") {
          // Constant (v, a) maps: a 1x1 map upsampled (nearest) to the feature map's size.
          parts.push(F.interpolate(va, { size: [x.shape[2], x.shape[3]], mode: "nearest" }));
        }
        if (base) parts.push(pyramid.get(x.shape[2])!);
        x = F.cat(parts, 1);
      }
      if (layer instanceof BatchNorm2d && layers[i + 1] instanceof ReLU) {
        // The same fusion Sequential does: BN and ReLU in one set of passes.
        x = layer.forwardRelu(x);
        i++;
      } else if (layer instanceof Conv2d && feedsTrainingBatchNorm(next)) {
        x = layer.forward(x, true);
      } else if (layer instanceof Conv2d && next instanceof Sigmoid) {
        // As in Sequential: the last conv and its sigmoid as one op.
        x = layer.forward(x, false, "sigmoid");
        i++;
      } else {
        x = layer.forward(x);
      }
    }
    return x;
  }

  /** Reconstruct with the encoder's own (v, a). */
  forward(x: Tensor): Tensor {
    const { z, v, a } = this.encode(x);
    return this.decode(z, v, a, x);
  }

  /**
   * The paper's loss for a pair (I_i, I_j) of the same person:
   * lambda_v MSE(v_hat_i, v_i) + lambda_a MSE(a_hat_i, a_i) + MSE(D(z_i, v_j, a_j), I_j).
   */
  loss(
    imageI: Tensor,
    valenceI: Tensor,
    arousalI: Tensor,
    imageJ: Tensor,
    valenceJ: Tensor,
    arousalJ: Tensor,
    weights: AutoencoderLossWeights = {},
  ): AutoencoderLoss {
    const { z, v, a } = this.encode(imageI);
    const valence = F.mseLoss(v, valenceI);
    const arousal = F.mseLoss(a, arousalI);
    const generated = this.decode(z, valenceJ, arousalJ, imageI);
    const reconstruction = F.mseLoss(generated, imageJ, weights.reconstructionWeights);
    const total = F.add(
      F.add(F.mul(valence, weights.valence ?? 0.5), F.mul(arousal, weights.arousal ?? 0.5)),
      reconstruction,
    );
    return { total, valence, arousal, reconstruction, generated };
  }
}

/** Whether a FaceAutoencoder checkpoint's decoder sees the source: its `decoder_sees_source` marker. */
export function seesSourceOf(state: ReadonlyMap<string, unknown>): boolean {
  return state.has("decoder_sees_source");
}

/**
 * What a FaceAutoencoder checkpoint's decoder produces, from the output channels of its last
 * decoder conv: 4 (6 with a flow) = "edit", 3 = "image"; undefined when it has no decoder convs.
 */
export function decoderOutputOf(
  state: ReadonlyMap<string, { shape: readonly number[] }>,
): "image" | "edit" | undefined {
  let last: { index: number; channels: number } | null = null;
  for (const [name, value] of state) {
    const match = /^decoder\.(\d+)\.weight$/.exec(name);
    if (!match || value.shape.length !== 4) continue;
    const index = Number(match[1]);
    if (!last || index > last.index) last = { index, channels: value.shape[0] };
  }
  return last?.channels === 4 || last?.channels === 6
    ? "edit"
    : last?.channels === 3
    ? "image"
    : undefined;
}

/** A FaceAutoencoder checkpoint's largest flow shift: its `decoder_warp` buffer, 0 without one. */
export async function warpShiftOf(state: ReadonlyMap<string, StateValue>): Promise<number> {
  const marker = state.get("decoder_warp");
  if (!marker) return 0;
  return isHostTensor(marker) ? Number(marker.data[0]) : (await marker.toArray())[0];
}

/** How a FaceAutoencoder checkpoint's edit colour is read: its `edit_residual` marker says. */
export function editColourOf(state: ReadonlyMap<string, unknown>): "absolute" | "residual" {
  return state.has("edit_residual") ? "residual" : "absolute";
}

/** A [1, 1, S, S] map repeated to [N, C, S, S] in one op: ones [N*C, 1] x map [S*S, 1]^T. */
function repeatMap(map: Tensor, n: number, channels: number): Tensor {
  const [, , h, w] = map.shape;
  const ones = map.device.full([n * channels, 1], 1);
  return F.reshape(F.linear(ones, F.reshape(map, [h * w, 1])), [n, channels, h, w]);
}

/** The layer shapes the benchmark times: a 64x64 convolutional autoencoder at a given batch. */

import type { Conv2dGeometry } from "../kernels/ops.ts";

/** One named 3x3 stride-1 padding-1 convolution layer. */
export interface ConvLayer {
  name: string;
  geometry: Conv2dGeometry;
}

function conv3x3(batch: number, inC: number, outC: number, size: number): Conv2dGeometry {
  return {
    batch,
    inC,
    inH: size,
    inW: size,
    outC,
    outH: size,
    outW: size,
    kH: 3,
    kW: 3,
    stride: 1,
    pad: 1,
  };
}

/** Encoder channels per stage (input 3 channels at 64x64, halved by 2x2 max-pooling). */
export const ENCODER = [[3, 32, 64], [32, 64, 32], [64, 128, 16], [128, 256, 8]] as const;
/** Decoder: nearest x2 upsampling then a 3x3 conv, mirroring the encoder. */
export const DECODER = [[256, 128, 8], [128, 64, 16], [64, 32, 32], [32, 3, 64]] as const;

/** Every conv layer of the autoencoder plus issue 6's reference shape (32->32 at 64x64). */
export function convLayers(batch: number): ConvLayer[] {
  const layers: ConvLayer[] = [
    { name: "ref 32->32 @64", geometry: conv3x3(batch, 32, 32, 64) },
  ];
  for (const [i, o, s] of ENCODER) {
    layers.push({ name: `enc ${i}->${o} @${s}`, geometry: conv3x3(batch, i, o, s) });
  }
  for (const [i, o, s] of DECODER) {
    layers.push({ name: `dec ${i}->${o} @${s}`, geometry: conv3x3(batch, i, o, s) });
  }
  return layers;
}

/** FLOPs of one conv pass (2 * N * O * OH * OW * C * kh * kw). */
export function convFlops(g: Conv2dGeometry): number {
  return 2 * g.batch * g.outC * g.outH * g.outW * g.inC * g.kH * g.kW;
}

/** Activation shapes [N, C, H, W] after each encoder conv (batch norm and pooling run on them). */
export function activationShapes(batch: number): [number, number, number, number][] {
  return ENCODER.map(([, o, s]) => [batch, o, s, s]);
}

/** Decoder upsampling inputs [N, C, H, W] (each is upsampled x2). */
export function upsampleShapes(batch: number): [number, number, number, number][] {
  return DECODER.map(([i, , s]) => [batch, i, s / 2, s / 2]);
}

function conv(
  batch: number,
  inC: number,
  outC: number,
  size: number,
  k: number,
  stride: number,
  pad: number,
): Conv2dGeometry {
  const out = Math.floor((size + 2 * pad - k) / stride) + 1;
  return {
    batch,
    inC,
    inH: size,
    inW: size,
    outC,
    outH: out,
    outW: out,
    kH: k,
    kW: k,
    stride,
    pad,
  };
}

/** The distinct conv shapes of ResNet34 on 32x32 inputs (stem, each stage, the downsamples). */
export function resnetLayers(batch: number): ConvLayer[] {
  return [
    { name: "rn stem 3->64 7x7s2 @32", geometry: conv(batch, 3, 64, 32, 7, 2, 3) },
    { name: "rn l1 64->64 @8", geometry: conv(batch, 64, 64, 8, 3, 1, 1) },
    { name: "rn l2 64->128 s2 @8", geometry: conv(batch, 64, 128, 8, 3, 2, 1) },
    { name: "rn l2 ds 64->128 1x1s2 @8", geometry: conv(batch, 64, 128, 8, 1, 2, 0) },
    { name: "rn l2 128->128 @4", geometry: conv(batch, 128, 128, 4, 3, 1, 1) },
    { name: "rn l3 128->256 s2 @4", geometry: conv(batch, 128, 256, 4, 3, 2, 1) },
    { name: "rn l3 ds 128->256 1x1s2 @4", geometry: conv(batch, 128, 256, 4, 1, 2, 0) },
    { name: "rn l3 256->256 @2", geometry: conv(batch, 256, 256, 2, 3, 1, 1) },
    { name: "rn l4 256->512 s2 @2", geometry: conv(batch, 256, 512, 2, 3, 2, 1) },
    { name: "rn l4 ds 256->512 1x1s2 @2", geometry: conv(batch, 256, 512, 2, 1, 2, 0) },
    { name: "rn l4 512->512 @1", geometry: conv(batch, 512, 512, 1, 3, 1, 1) },
  ];
}

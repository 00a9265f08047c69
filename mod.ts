/**
 * A small deep-learning engine for Deno whose compute runs in hand-written WGSL through WebGPU,
 * and on it a reproduction of "Estimation of Valence and Arousal from a single Image using Face
 * Generating Autoencoder" (Kim, Park, Chang, 2020).
 *
 * ```ts
 * import { Device, F, noGrad, optim } from "./mod.ts";
 * const device = await Device.create();
 * const w = device.randn([8, 3, 3, 3], 1, { requiresGrad: true });
 * const x = device.rand([2, 3, 16, 16], 2);
 * const loss = F.mean(F.relu(F.conv2d(x, w, null, { padding: 1 })));
 * await loss.backward();
 * new optim.Adam([w], { lr: 1e-3 }).step();
 * ```
 *
 * @module
 */

/** The GPU device: opens an adapter and creates tensors (`device.tensor`, `zeros`, `randn`...). */
export { Device, type DeviceOptions, type TensorOptions } from "./nn/device.ts";
/** A float32 GPU tensor with a tape for reverse-mode autodiff. */
export { Tensor } from "./nn/tensor.ts";
/** Run a function without recording the autograd tape. */
export { noGrad } from "./nn/tensor.ts";
/** Run a function and free every tensor it created that is not in its result. */
export { tidy } from "./nn/tensor.ts";
/** Exempt a tensor from the enclosing tidy scopes. */
export { keep } from "./nn/tensor.ts";
/** Functional ops (conv2d, batchNorm2d, maxPool2d, interpolate, linear, mseLoss, ...). */
export * as F from "./nn/functional.ts";
/** Optimizers (Adam). */
export * as optim from "./nn/optim.ts";
/** Modules, layers and models: Conv2d, BatchNorm2d, ..., FaceAutoencoder, ResNet34. */
export * as nn from "./nn/mod.ts";
/** Safetensors I/O for state dicts: readSafetensors(device, path), writeSafetensors(path, dict). */
export * as io from "./nn/io.ts";
/** Low-level WebGPU backend (pool, pipeline cache, recorder) for benchmarks and kernel work. */
export { Backend, GpuError } from "./kernels/backend.ts";
/** Datasets (AFEW-VA, AffectNet, synthetic faces), image I/O, samplers and pictures. */
export * as data from "./pipelines/data/mod.ts";
/** Evaluation metrics: rmse, pearson, ccc, sagr (and mean/std over seeds). */
export * as metrics from "./pipelines/metrics.ts";

/** The `nn` namespace: modules, layers and the paper's two models. */

export {
  type HostState,
  type HostTensor,
  isHostTensor,
  type LoadResult,
  Module,
  type StateDict,
  type StateValue,
} from "./module.ts";
export {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  Flatten,
  type InitOptions,
  Layer,
  Linear,
  MaxPool2d,
  ReLU,
  Rng,
  Sequential,
  Sigmoid,
  Upsample,
} from "./layers.ts";
export {
  BasicBlock,
  IMAGENET_MEAN,
  IMAGENET_STD,
  normalizeImagenet,
  ResNet34,
  type ResNetOptions,
} from "./models/resnet.ts";
export {
  AUTOENCODER_SIZES,
  type AutoencoderLoss,
  type AutoencoderLossWeights,
  decoderOutputOf,
  editColourOf,
  FaceAutoencoder,
  type FaceAutoencoderOptions,
  seesSourceOf,
  warpShiftOf,
} from "./models/autoencoder.ts";

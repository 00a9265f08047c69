/**
 * Data pipeline: dataset readers (AFEW-VA, AffectNet), the synthetic face generator, image
 * decode/crop/resize, face tensors with an on-disk cache, mini-batches with prefetch, the
 * paper's V/A samplers and inspection pictures. Pure CPU TypeScript; outputs are Float32Array.
 *
 * @module
 */
export { DataError, type DataErrorLocation } from "./errors.ts";
export type { Box, FaceSample, Point, ReadResult, VaLabel } from "./types.ts";
export { gaussian, hashSeed, hashString, mulberry32, type Rng, shuffleInPlace } from "./rng.ts";
export {
  chwToRgba,
  type CropOptions,
  cropResize,
  decodeImage,
  encodeJpegChw,
  encodePngChw,
  encodePngRgba,
  imageSize,
  readImageFile,
  type RgbaImage,
  rgbaToChw,
} from "./image.ts";
export { type CsvRecord, parseCsv } from "./csv.ts";
export { encodeNpy, type NpyArray, type NpyWriteDtype, parseNpy, readNpy } from "./npy.ts";
export {
  type AfewVaSplit,
  faceBoxFromLandmarks,
  readAfewVa,
  type ReadAfewVaOptions,
  splitPersons,
} from "./afew_va.ts";
export {
  type AffectNetRelease,
  type AffectNetSplit,
  npyScalar,
  readAffectNet,
  type ReadAffectNetOptions,
} from "./affectnet.ts";
export {
  affectNetLikePoint,
  expressionFromVa,
  type FaceIdentity,
  faceIdentity,
  type FaceSpec,
  type FramePose,
  framePose,
  isSyntheticId,
  parseSyntheticId,
  type RenderedFace,
  renderFace,
  type Skew,
  synthetic,
  syntheticId,
  type SyntheticOptions,
  type SyntheticSet,
  syntheticSplit,
  type SyntheticSplitOptions,
  unitDiskPoint,
} from "./synthetic.ts";
export {
  exportAfewVa,
  exportAffectNet,
  type ExportAffectNetOptions,
  type ExportSummary,
} from "./export.ts";
export {
  type BadImage,
  type BadImagePolicy,
  cacheKey,
  type CacheRead,
  type FaceSet,
  loadFaces,
  loadFaceSet,
  type LoadFacesOptions,
  readFaceCache,
  writeFaceCache,
} from "./loader.ts";
export {
  ALIGN_TEMPLATE,
  type AlignableFaces,
  alignFace,
  alignFaceSet,
  applySimilarity,
  fitSimilarity,
  landmarksInCrop,
  parseLandmarks,
  points68,
  type Similarity,
  STABLE_LANDMARKS,
} from "./align.ts";
export { type Batch, batches, type BatchOptions } from "./batches.ts";
export {
  axisBin,
  binCounts,
  type BinOptions,
  type CellSamplerOptions,
  cellsPerAxis,
  inverseCellFrequency,
  overSample,
  overSampleIndices,
  type PairOptions,
  samePersonPairs,
  sampleUnitDisk,
  underSample,
  underSampleIndices,
  vaCell,
} from "./samplers.ts";
export {
  type ContactSheetOptions,
  contactSheetPng,
  type HistogramOptions,
  imageGrid,
  type ImageGridOptions,
  vaCaption,
  vaHistogramPng,
} from "./pictures.ts";

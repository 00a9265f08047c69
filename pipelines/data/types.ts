/** Axis-aligned face box in source-image pixels: `[x, y, width, height]`. */
export type Box = [x: number, y: number, width: number, height: number];

/** A 2-D point in image pixels. */
export type Point = [x: number, y: number];

/** A valence/arousal label, both in [-1, 1]. */
export interface VaLabel {
  /** Valence in [-1, 1] (negative = unpleasant). */
  valence: number;
  /** Arousal in [-1, 1] (negative = calm). */
  arousal: number;
}

/**
 * One labelled face, the common currency of every reader, sampler and loader in this module.
 *
 * `image` is a file path for real datasets, or a `synthetic:` id (see `synthetic.ts`) that
 * `loadFaces` re-renders on demand.
 */
export interface FaceSample extends VaLabel {
  /** Image file path, or a virtual `synthetic:` id. */
  image: string;
  /** Identity key: samples with equal `person` show the same person. */
  person: string;
  /**
   * Face box in source pixels. It may extend past the image border; cropping clamps it to the
   * image.
   */
  box: Box;
  /** Categorical expression (AffectNet classes 0-8), when the dataset provides one. */
  expression?: number;
  /** 68 landmarks in iBUG order, in source pixels, when the dataset provides them. */
  landmarks?: Point[];
}

/** What a dataset reader returns. */
export interface ReadResult {
  /** Kept samples, in a deterministic order. */
  samples: FaceSample[];
  /** Number of records dropped because the dataset marks them invalid or unusable. */
  skipped: number;
  /** One human-readable line: kept/skipped counts and why records were skipped. */
  summary: string;
}

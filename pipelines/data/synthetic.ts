/**
 * Procedural face generator: the embedded default dataset. Each person has fixed identity
 * parameters (face shape, skin, hair, feature placement, colours); each frame has a small pose
 * and lighting jitter and an expression driven by (valence, arousal):
 *   valence -> mouth-corner curvature and brow slant,
 *   arousal -> mouth opening, eye opening and brow raise.
 * Faces are drawn with signed-distance shapes and analytic one-pixel coverage, so edges are
 * anti-aliased without supersampling and rendering is fast.
 */
import { DataError } from "./errors.ts";
import { gaussian, hashSeed, mulberry32, type Rng, uniform } from "./rng.ts";
import type { FaceSample, Point, VaLabel } from "./types.ts";

type Rgb = [number, number, number];

/** Fixed per-person appearance. Lengths are in face units (the image spans 1 unit at scale 1). */
export interface FaceIdentity {
  /** Face half-width. */
  faceRx: number;
  /** Face half-height. */
  faceRy: number;
  /** How much the jaw narrows towards the chin (0 = ellipse). */
  jawTaper: number;
  /** Skin colour. */
  skin: Rgb;
  /** Hair colour, or null for a bald person. */
  hair: Rgb | null;
  /** Long hair falls behind the head down to the neck. */
  longHair: boolean;
  /** Hairline height as a fraction of `faceRy` above the face centre. */
  hairline: number;
  /** Horizontal distance of each eye from the face's vertical axis. */
  eyeSpacing: number;
  /** Vertical eye position (negative = above the face centre). */
  eyeY: number;
  /** Eye half-width. */
  eyeWidth: number;
  /** Eye half-height when fully open. */
  eyeHeight: number;
  /** Iris colour. */
  iris: Rgb;
  /** Brow stroke radius. */
  browThickness: number;
  /** Brow colour. */
  brow: Rgb;
  /** Vertical position of the nose tip. */
  noseY: number;
  /** Nose half-width at the nostrils. */
  noseWidth: number;
  /** Vertical position of the mouth centre line. */
  mouthY: number;
  /** Mouth half-width. */
  mouthWidth: number;
  /** Lip thickness. */
  lipThickness: number;
  /** Lip colour. */
  lip: Rgb;
  /** Background colours at the top and bottom of the image. */
  background: [Rgb, Rgb];
  /** Shirt colour. */
  shirt: Rgb;
}

/** Per-frame pose and lighting jitter. */
export interface FramePose {
  /** In-plane rotation in radians. */
  roll: number;
  /** Face centre offset in image fractions. */
  shiftX: number;
  /** Face centre offset in image fractions. */
  shiftY: number;
  /** Face scale (1 = nominal). */
  scale: number;
  /** Horizontal light gradient strength. */
  lightX: number;
  /** Vertical light gradient strength. */
  lightY: number;
  /** Overall brightness multiplier. */
  brightness: number;
}

/** Everything needed to render one face; `synthetic:` ids encode exactly this. */
export interface FaceSpec {
  /** Seed of the synthetic set (selects the family of identities). */
  seed: number;
  /** Person index inside the set. */
  person: number;
  /** Frame index inside the person (selects pose jitter). */
  frame: number;
  /** Valence the face shows (may differ from the label by the label noise). */
  valence: number;
  /** Arousal the face shows. */
  arousal: number;
  /** Scales how strongly valence/arousal change the face (1 = default). */
  expressionStrength: number;
}

/** A rendered face: CHW float32 RGB in [0, 1] plus 68 iBUG-order landmarks in pixels. */
export interface RenderedFace {
  /** `3 x size x size` values in [0, 1]. */
  image: Float32Array;
  /** 68 landmarks `[x, y]` in output pixels, iBUG order. */
  landmarks: Point[];
}

const SKIN_LIGHT: Rgb = [0.96, 0.8, 0.69];
const SKIN_DARK: Rgb = [0.34, 0.21, 0.14];
const HAIR_COLOURS: Rgb[] = [
  [0.08, 0.06, 0.05],
  [0.3, 0.18, 0.1],
  [0.55, 0.38, 0.2],
  [0.85, 0.7, 0.42],
  [0.6, 0.25, 0.1],
  [0.62, 0.62, 0.6],
];
const IRIS_COLOURS: Rgb[] = [[0.3, 0.18, 0.08], [0.2, 0.35, 0.55], [0.3, 0.45, 0.3], [
  0.15,
  0.1,
  0.06,
]];

/** Deterministic identity of person `person` in the set seeded by `seed`. */
export function faceIdentity(seed: number, person: number): FaceIdentity {
  const rng = mulberry32(hashSeed(seed, person, 0x1d));
  const faceRx = uniform(rng, 0.24, 0.3);
  const faceRy = uniform(rng, 0.32, 0.38);
  const skin = mix(SKIN_LIGHT, SKIN_DARK, rng() ** 1.3);
  const bald = rng() < 0.1;
  const hairBase = HAIR_COLOURS[Math.floor(rng() * HAIR_COLOURS.length)];
  const hair: Rgb | null = bald ? null : jitterColour(hairBase, rng, 0.05);
  const brow = hair === null ? scale(skin, 0.45) : scale(hair, 0.85);
  const backgroundHue = hsv(rng(), uniform(rng, 0.1, 0.45), uniform(rng, 0.35, 0.9));
  return {
    faceRx,
    faceRy,
    jawTaper: uniform(rng, 0.05, 0.35),
    skin,
    hair,
    longHair: !bald && rng() < 0.4,
    hairline: uniform(rng, 0.45, 0.65),
    eyeSpacing: faceRx * uniform(rng, 0.36, 0.48),
    eyeY: -faceRy * uniform(rng, 0.05, 0.18),
    eyeWidth: uniform(rng, 0.042, 0.055),
    eyeHeight: uniform(rng, 0.022, 0.03),
    iris: jitterColour(IRIS_COLOURS[Math.floor(rng() * IRIS_COLOURS.length)], rng, 0.04),
    browThickness: uniform(rng, 0.008, 0.014),
    brow,
    noseY: faceRy * uniform(rng, 0.15, 0.28),
    noseWidth: uniform(rng, 0.025, 0.04),
    mouthY: faceRy * uniform(rng, 0.48, 0.58),
    mouthWidth: faceRx * uniform(rng, 0.3, 0.4),
    lipThickness: uniform(rng, 0.008, 0.014),
    lip: mix(scale(skin, 0.8), [0.7, 0.25, 0.25], uniform(rng, 0.3, 0.6)),
    background: [backgroundHue, scale(backgroundHue, uniform(rng, 0.55, 0.85))],
    shirt: hsv(rng(), uniform(rng, 0.2, 0.8), uniform(rng, 0.25, 0.85)),
  };
}

/** Deterministic pose/lighting jitter of one frame. */
export function framePose(seed: number, person: number, frame: number): FramePose {
  const rng = mulberry32(hashSeed(seed, person, frame, 0x7e));
  return {
    roll: uniform(rng, -0.1, 0.1),
    shiftX: uniform(rng, -0.03, 0.03),
    shiftY: uniform(rng, -0.025, 0.025),
    scale: uniform(rng, 1.08, 1.2),
    lightX: uniform(rng, -0.35, 0.35),
    lightY: uniform(rng, -0.2, 0.2),
    brightness: uniform(rng, 0.88, 1.08),
  };
}

/** Expression geometry derived from (valence, arousal), in face units. */
interface Expression {
  smile: number;
  browSlant: number;
  browRaise: number;
  mouthOpen: number;
  eyeOpen: number;
}

function expressionOf(valence: number, arousal: number, strength: number): Expression {
  const v = clamp(valence * strength, -1.5, 1.5);
  const a = clamp(arousal * strength, -1.5, 1.5);
  const openness = clamp((a + 1) / 2, 0, 1.25);
  return {
    smile: 0.032 * v,
    browSlant: 0.016 * v,
    browRaise: 0.018 * a,
    mouthOpen: 0.003 + 0.034 * openness ** 1.6,
    eyeOpen: clamp(0.62 + 0.38 * a, 0.12, 1.2),
  };
}

/** Renders one face at `size x size`. Pure function of `spec` and `size`. */
export function renderFace(spec: FaceSpec, size = 64, out?: Float32Array): RenderedFace {
  const id = faceIdentity(spec.seed, spec.person);
  const pose = framePose(spec.seed, spec.person, spec.frame);
  const ex = expressionOf(spec.valence, spec.arousal, spec.expressionStrength);
  const plane = size * size;
  const image = out ?? new Float32Array(3 * plane);
  if (image.length !== 3 * plane) throw new DataError("renderFace: output has the wrong length");

  const cosR = Math.cos(pose.roll), sinR = Math.sin(pose.roll);
  const centreX = 0.5 + pose.shiftX, centreY = 0.53 + pose.shiftY;
  const pixel = 1 / (size * pose.scale); // one output pixel in face units
  const { faceRx: rx, faceRy: ry } = id;
  const eyeHalfHeight = id.eyeHeight * ex.eyeOpen;
  const browBaseY = id.eyeY - id.eyeHeight - 0.035 - ex.browRaise;
  const mw = id.mouthWidth;
  const irisRadius = id.eyeHeight * 0.85;
  const eyeLine = scale(id.skin, 0.35);
  const neck = scale(id.skin, 0.82);
  const ear = scale(id.skin, 0.92);
  const bridge = scale(id.skin, 0.88);
  const nostril = scale(id.skin, 0.5);
  const mouthInside: Rgb = [0.28, 0.06, 0.08];
  const teeth: Rgb = [0.93, 0.92, 0.88];
  const sclera: Rgb = [0.95, 0.95, 0.93];
  const pupil: Rgb = [0.03, 0.03, 0.03];

  for (let y = 0; y < size; y++) {
    const qy = (y + 0.5) / size;
    for (let x = 0; x < size; x++) {
      const qx = (x + 0.5) / size;
      const dx = (qx - centreX) / pose.scale, dy = (qy - centreY) / pose.scale;
      // Inverse roll: image offset -> face coordinates.
      const px = cosR * dx + sinR * dy;
      const py = -sinR * dx + cosR * dy;
      const cov = (d: number) => clamp(0.5 - d / pixel, 0, 1);

      const bg = mix(id.background[0], id.background[1], qy);
      let r = bg[0], g = bg[1], b = bg[2];
      const paint = (coverage: number, c: Rgb) => {
        if (coverage <= 0) return;
        r += (c[0] - r) * coverage;
        g += (c[1] - g) * coverage;
        b += (c[2] - b) * coverage;
      };

      paint(cov(ellipseDistance(px, py - (ry + 0.3), 0.42, 0.28)), id.shirt);
      if (id.hair !== null && id.longHair) {
        const d = Math.max(ellipseDistance(px, py - 0.03, rx * 1.25, ry * 1.08), py - ry * 0.8);
        paint(cov(d), id.hair);
      }
      paint(cov(capsuleDistance(px, py, 0, ry * 0.5, 0, ry + 0.25, rx * 0.42)), neck);
      paint(cov(ellipseDistance(Math.abs(px) - rx * 0.97, py, 0.032, 0.06)), ear);
      const jawRx = rx * (1 - id.jawTaper * Math.max(0, py / ry) ** 2);
      const faceD = ellipseDistance(px, py, jawRx, ry);
      paint(cov(faceD), id.skin);
      if (id.hair !== null) {
        const hairlineY = -ry * id.hairline + ry * 0.55 * (px / rx) ** 2;
        const d = Math.max(ellipseDistance(px, py + 0.01, rx + 0.025, ry + 0.03), py - hairlineY);
        paint(cov(d), id.hair);
      }

      // Facial features only exist inside the face; skip their maths elsewhere.
      if (faceD < 2 * pixel) {
        const side = px < 0 ? -1 : 1;
        const ex0 = side * id.eyeSpacing;
        const ax = px - ex0, ay = py - id.eyeY;
        if (Math.abs(ax) < id.eyeWidth + 0.02 && Math.abs(ay) < id.eyeHeight * 1.3 + 0.02) {
          const white = ellipseDistance(ax, ay, id.eyeWidth, eyeHalfHeight);
          paint(cov(white), sclera);
          const iris = Math.hypot(ax, ay) - irisRadius;
          paint(cov(Math.max(iris, white)), id.iris);
          paint(cov(Math.max(Math.hypot(ax, ay) - irisRadius * 0.45, white)), pupil);
          paint(cov(Math.abs(white) - 0.004), eyeLine);
        }
        // Brows: the inner end drops when valence is negative (frown) and rises when positive.
        const innerX = side * (id.eyeSpacing - id.eyeWidth * 0.9);
        const outerX = side * (id.eyeSpacing + id.eyeWidth * 1.1);
        const innerY = browBaseY - ex.browSlant;
        const outerY = browBaseY + ex.browSlant * 0.4;
        if (Math.abs(py - browBaseY) < 0.06) {
          const d = capsuleDistance(px, py, innerX, innerY, outerX, outerY, id.browThickness);
          paint(cov(d), id.brow);
        }
        // Nose: faint bridge, tip shadow and nostrils.
        if (Math.abs(px) < 0.06 && py > id.eyeY && py < id.noseY + 0.03) {
          paint(0.6 * cov(capsuleDistance(px, py, 0, id.eyeY + 0.03, 0, id.noseY, 0.007)), bridge);
          paint(
            cov(
              ellipseDistance(
                Math.abs(px) - id.noseWidth * 0.55,
                py - id.noseY - 0.006,
                0.011,
                0.006,
              ),
            ),
            nostril,
          );
        }
        // Mouth: centre line bends with valence, opening grows with arousal.
        const u = px / mw;
        if (Math.abs(u) < 1.3 && Math.abs(py - id.mouthY) < 0.1) {
          const centre = id.mouthY - ex.smile * (u * u - 0.35);
          const slope = -2 * ex.smile * u / mw;
          const norm = Math.sqrt(1 + slope * slope);
          const open = ex.mouthOpen * Math.max(0, 1 - u * u);
          const lipT = id.lipThickness * Math.max(0, 1 - 0.6 * u * u);
          const offset = Math.abs(py - centre);
          const lips = Math.max((offset - open - lipT) / norm, Math.abs(px) - mw * 1.02);
          paint(cov(lips), id.lip);
          const inside = Math.max((offset - open) / norm, Math.abs(px) - mw);
          paint(cov(inside), mouthInside);
          if (ex.mouthOpen > 0.012) {
            paint(cov(Math.max(inside, py - (centre - open * 0.35))), teeth);
          }
        }
      }

      const shade = pose.brightness * (1 + pose.lightX * px + pose.lightY * py);
      const o = y * size + x;
      image[o] = clamp(r * shade, 0, 1);
      image[plane + o] = clamp(g * shade, 0, 1);
      image[2 * plane + o] = clamp(b * shade, 0, 1);
    }
  }

  // Landmarks in face units, then through the same pose transform into pixels.
  const facePoints = faceLandmarks(id, ex);
  const landmarks = facePoints.map(([fx, fy]): Point => {
    const ix = (cosR * fx - sinR * fy) * pose.scale + centreX;
    const iy = (sinR * fx + cosR * fy) * pose.scale + centreY;
    return [ix * size, iy * size];
  });
  return { image, landmarks };
}

/** 68 landmarks in iBUG order, in face units (before pose). */
function faceLandmarks(id: FaceIdentity, ex: Expression): Point[] {
  const points: Point[] = [];
  const { faceRx: rx, faceRy: ry } = id;
  // 0-16 jaw, from the image-left temple round the chin to the image-right temple.
  for (let k = 0; k <= 16; k++) {
    const theta = Math.PI + 0.15 - k * (Math.PI + 0.3) / 16;
    const y = ry * Math.sin(theta);
    const jawRx = rx * (1 - id.jawTaper * Math.max(0, y / ry) ** 2);
    points.push([jawRx * Math.cos(theta), y]);
  }
  // 17-21 image-left brow outer->inner, 22-26 image-right brow inner->outer.
  const browBaseY = id.eyeY - id.eyeHeight - 0.035 - ex.browRaise;
  for (const side of [-1, 1]) {
    const inner: Point = [side * (id.eyeSpacing - id.eyeWidth * 0.9), browBaseY - ex.browSlant];
    const outer: Point = [
      side * (id.eyeSpacing + id.eyeWidth * 1.1),
      browBaseY + ex.browSlant * 0.4,
    ];
    const [from, to] = side < 0 ? [outer, inner] : [inner, outer];
    for (let k = 0; k < 5; k++) points.push(lerpPoint(from, to, k / 4));
  }
  // 27-30 nose bridge top->tip, 31-35 nostril base left->right.
  for (let k = 0; k < 4; k++) {
    points.push([0, id.eyeY + 0.01 + (id.noseY - id.eyeY - 0.01) * k / 3]);
  }
  for (let k = 0; k < 5; k++) {
    const t = (k - 2) / 2;
    points.push([t * id.noseWidth * 1.1, id.noseY + 0.012 - 0.004 * Math.abs(t)]);
  }
  // 36-41 image-left eye, 42-47 image-right eye: corner, upper lid x2, corner, lower lid x2.
  const eyeHalf = id.eyeHeight * ex.eyeOpen;
  const lid = eyeHalf * Math.sqrt(1 - 1 / 9);
  for (const side of [-1, 1]) {
    const cx = side * id.eyeSpacing, cy = id.eyeY, w = id.eyeWidth;
    points.push(
      [cx - w, cy],
      [cx - w / 3, cy - lid],
      [cx + w / 3, cy - lid],
      [cx + w, cy],
      [cx + w / 3, cy + lid],
      [cx - w / 3, cy + lid],
    );
  }
  // 48-59 outer lip, 60-67 inner lip, following the renderer's mouth curves.
  const mw = id.mouthWidth;
  const centre = (u: number) => id.mouthY - ex.smile * (u * u - 0.35);
  const open = (u: number) => ex.mouthOpen * Math.max(0, 1 - u * u);
  const lipT = (u: number) => id.lipThickness * Math.max(0, 1 - 0.6 * u * u);
  points.push([-mw, centre(-1)]);
  for (const u of [-2 / 3, -1 / 3, 0, 1 / 3, 2 / 3]) {
    points.push([u * mw, centre(u) - open(u) - lipT(u)]);
  }
  points.push([mw, centre(1)]);
  for (const u of [2 / 3, 1 / 3, 0, -1 / 3, -2 / 3]) {
    points.push([u * mw, centre(u) + open(u) + lipT(u)]);
  }
  points.push([-mw * 0.9, centre(-0.9)]);
  for (const u of [-0.5, 0, 0.5]) points.push([u * mw, centre(u) - open(u)]);
  points.push([mw * 0.9, centre(0.9)]);
  for (const u of [0.5, 0, -0.5]) points.push([u * mw, centre(u) + open(u)]);
  return points;
}

/** Shape of the V/A label distribution of a synthetic set. */
export type Skew = "affectnet" | "uniform";

/** Options for `synthetic`. */
export interface SyntheticOptions {
  /** Seed for identities, labels, poses and noise. Default 0. */
  seed?: number;
  /** Number of identities. Default 20. */
  persons?: number;
  /** Frames (each with its own V/A) per identity. Default 20. */
  framesPerPerson?: number;
  /** Output side length in pixels. Default 64. */
  size?: number;
  /**
   * "affectnet" (default): most mass at positive valence and low-to-mid arousal, few samples in
   * the rare quadrant (v < 0, a > 0). "uniform": uniform over the unit disk.
   */
  skew?: Skew;
  /** Fraction of samples in the rare quadrant (v < 0, a > 0) under "affectnet"; 0 empties it. Default 0.08. */
  rareQuadrantFraction?: number;
  /** Scales how strongly V/A change the face. Default 1. */
  expressionStrength?: number;
  /** Std-dev of the gap between the label and the expression actually drawn. Default 0.03. */
  labelNoise?: number;
  /** Index of the first person; use disjoint ranges to get disjoint identities. Default 0. */
  firstPerson?: number;
}

/** An in-memory synthetic dataset. */
export interface SyntheticSet {
  /** One sample per face; `image` is a `synthetic:` id that `loadFaces` can re-render. */
  samples: FaceSample[];
  /** Rendered faces, `N x 3 x size x size` float32 in [0, 1]. */
  images: Float32Array;
  /** Side length of each face. */
  size: number;
  /** Landmarks, `N x 68 x 2` float32 in pixels (also on each sample). */
  landmarks: Float32Array;
}

/**
 * Generates a synthetic face set: `persons` identities with `framesPerPerson` frames each, so
 * same-person pairs with different V/A exist as in AFEW-VA. Labels follow `skew`; the drawn
 * expression is the label plus a little Gaussian noise. Deterministic in all options.
 */
export function synthetic(options: SyntheticOptions = {}): SyntheticSet {
  const seed = options.seed ?? 0;
  const persons = options.persons ?? 20;
  const framesPerPerson = options.framesPerPerson ?? 20;
  const size = options.size ?? 64;
  const skew = options.skew ?? "affectnet";
  const rare = options.rareQuadrantFraction ?? 0.08;
  const strength = options.expressionStrength ?? 1;
  const labelNoise = options.labelNoise ?? 0.03;
  const firstPerson = options.firstPerson ?? 0;
  if (!Number.isInteger(persons) || persons < 1) {
    throw new DataError(`synthetic: persons must be a positive integer, got ${persons}`);
  }
  if (!Number.isInteger(framesPerPerson) || framesPerPerson < 1) {
    throw new DataError(
      `synthetic: framesPerPerson must be a positive integer, got ${framesPerPerson}`,
    );
  }
  if (!(rare >= 0 && rare <= 1)) {
    throw new DataError(`synthetic: rareQuadrantFraction must be in [0, 1], got ${rare}`);
  }
  if (skew !== "affectnet" && skew !== "uniform") {
    throw new DataError(`synthetic: unknown skew "${skew}" (use "affectnet" or "uniform")`);
  }
  const count = persons * framesPerPerson;
  const plane = 3 * size * size;
  const images = new Float32Array(count * plane);
  const landmarks = new Float32Array(count * 68 * 2);
  const samples: FaceSample[] = [];
  for (let p = 0; p < persons; p++) {
    const person = firstPerson + p;
    const rng = mulberry32(hashSeed(seed, person, 0x1abe1));
    for (let frame = 0; frame < framesPerPerson; frame++) {
      const label = skew === "uniform" ? unitDiskPoint(rng) : affectNetLikePoint(rng, rare);
      const spec: FaceSpec = {
        seed,
        person,
        frame,
        valence: round4(clamp(label.valence + labelNoise * gaussian(rng), -1, 1)),
        arousal: round4(clamp(label.arousal + labelNoise * gaussian(rng), -1, 1)),
        expressionStrength: strength,
      };
      const index = samples.length;
      const face = renderFace(spec, size, images.subarray(index * plane, (index + 1) * plane));
      face.landmarks.forEach(([x, y], k) => {
        landmarks[(index * 68 + k) * 2] = x;
        landmarks[(index * 68 + k) * 2 + 1] = y;
      });
      samples.push({
        image: syntheticId(spec),
        person: `s${seed}p${person}`,
        valence: label.valence,
        arousal: label.arousal,
        box: [0, 0, size, size],
        expression: expressionFromVa(label.valence, label.arousal),
        landmarks: face.landmarks,
      });
    }
  }
  return { samples, images, size, landmarks };
}

/** Options for `syntheticSplit`. */
export interface SyntheticSplitOptions extends Omit<SyntheticOptions, "persons" | "firstPerson"> {
  /** Identities in the training set. Default 20. */
  trainPersons?: number;
  /** Identities in the test set (disjoint from training). Default 5. */
  testPersons?: number;
}

/**
 * Train set with the requested `skew`, and a test set of new identities whose labels are
 * uniform over the unit disk (the paper's balanced evaluation).
 */
export function syntheticSplit(
  options: SyntheticSplitOptions = {},
): { train: SyntheticSet; test: SyntheticSet } {
  const trainPersons = options.trainPersons ?? 20;
  const train = synthetic({ ...options, persons: trainPersons, firstPerson: 0 });
  const test = synthetic({
    ...options,
    persons: options.testPersons ?? 5,
    firstPerson: trainPersons,
    skew: "uniform",
  });
  return { train, test };
}

const ID_PREFIX = "synthetic:";

/** The virtual image id of a synthetic face: enough to re-render it bit-exactly. */
export function syntheticId(spec: FaceSpec): string {
  const { seed, person, frame, valence, arousal, expressionStrength } = spec;
  return `${ID_PREFIX}${seed}:${person}:${frame}:${valence}:${arousal}:${expressionStrength}`;
}

/** True when `image` is a `synthetic:` id rather than a file path. */
export function isSyntheticId(image: string): boolean {
  return image.startsWith(ID_PREFIX);
}

/** Parses a `synthetic:` id back into the spec that renders it. */
export function parseSyntheticId(image: string): FaceSpec {
  const parts = image.slice(ID_PREFIX.length).split(":").map(Number);
  if (!isSyntheticId(image) || parts.length !== 6 || !parts.every(Number.isFinite)) {
    throw new DataError(`malformed synthetic image id "${image}"`);
  }
  const [seed, person, frame, valence, arousal, expressionStrength] = parts;
  return { seed, person, frame, valence, arousal, expressionStrength };
}

/**
 * A plausible AffectNet expression class for a V/A point (0 neutral, 1 happy, 2 sad,
 * 3 surprise, 4 fear, 6 anger), so exported CSVs carry sensible categories.
 */
export function expressionFromVa(valence: number, arousal: number): number {
  if (Math.hypot(valence, arousal) < 0.2) return 0;
  if (valence >= 0) return arousal > 0.5 ? 3 : 1;
  if (arousal < 0) return 2;
  return arousal > 0.5 ? 4 : 6;
}

/** Uniform point in the unit disk (r = sqrt(U) keeps area density flat). */
export function unitDiskPoint(rng: Rng): VaLabel {
  const radius = Math.sqrt(rng());
  const angle = 2 * Math.PI * rng();
  return { valence: radius * Math.cos(angle), arousal: radius * Math.sin(angle) };
}

// Mixture fitted by eye to AffectNet's V/A scatter: happy, neutral/calm, sad, excited.
const AFFECTNET_COMPONENTS = [
  { weight: 0.42, valence: 0.6, arousal: 0.15, sdValence: 0.2, sdArousal: 0.22 },
  { weight: 0.33, valence: 0.1, arousal: -0.15, sdValence: 0.2, sdArousal: 0.18 },
  { weight: 0.15, valence: -0.45, arousal: -0.3, sdValence: 0.22, sdArousal: 0.2 },
  { weight: 0.1, valence: 0.35, arousal: 0.55, sdValence: 0.18, sdArousal: 0.15 },
];

/**
 * AffectNet-like skewed label: with probability `rareFraction` a uniform point of the rare
 * quadrant (v < 0, a > 0), otherwise a mixture draw rejected from that quadrant and from
 * outside the unit disk, so the rare fraction is exactly the knob.
 */
export function affectNetLikePoint(rng: Rng, rareFraction: number): VaLabel {
  if (rng() < rareFraction) {
    const radius = Math.sqrt(rng());
    const angle = Math.PI / 2 + (Math.PI / 2) * rng();
    return {
      valence: Math.min(radius * Math.cos(angle), -1e-6),
      arousal: radius * Math.sin(angle),
    };
  }
  for (;;) {
    let pick = rng();
    let component = AFFECTNET_COMPONENTS[0];
    for (const c of AFFECTNET_COMPONENTS) {
      component = c;
      pick -= c.weight;
      if (pick < 0) break;
    }
    const valence = component.valence + component.sdValence * gaussian(rng);
    const arousal = component.arousal + component.sdArousal * gaussian(rng);
    if (valence * valence + arousal * arousal > 1) continue;
    if (valence < 0 && arousal > 0) continue;
    return { valence, arousal };
  }
}

function ellipseDistance(x: number, y: number, rx: number, ry: number): number {
  // First-order distance to the ellipse: implicit value over its gradient length.
  const nx = x / rx, ny = y / ry;
  const k = Math.sqrt(nx * nx + ny * ny);
  const gx = nx / rx, gy = ny / ry;
  const gradient = Math.sqrt(gx * gx + gy * gy);
  if (k === 0 || gradient === 0) return -Math.min(rx, ry);
  return (k - 1) * k / gradient;
}

function capsuleDistance(
  x: number,
  y: number,
  ax: number,
  ay: number,
  bx: number,
  by: number,
  radius: number,
): number {
  const vx = bx - ax, vy = by - ay;
  const wx = x - ax, wy = y - ay;
  const t = clamp((wx * vx + wy * vy) / (vx * vx + vy * vy), 0, 1);
  return Math.hypot(wx - t * vx, wy - t * vy) - radius;
}

function clamp(value: number, low: number, high: number): number {
  return value < low ? low : value > high ? high : value;
}

function round4(value: number): number {
  return Math.round(value * 1e4) / 1e4;
}

function mix(a: Rgb, b: Rgb, t: number): Rgb {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

function scale(c: Rgb, factor: number): Rgb {
  return [c[0] * factor, c[1] * factor, c[2] * factor];
}

function lerpPoint(a: Point, b: Point, t: number): Point {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
}

function jitterColour(c: Rgb, rng: Rng, amount: number): Rgb {
  return c.map((v) => clamp(v + uniform(rng, -amount, amount), 0, 1)) as Rgb;
}

function hsv(hue: number, saturation: number, value: number): Rgb {
  const channel = (n: number) => {
    const k = (n + hue * 6) % 6;
    return value - value * saturation * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return [channel(5), channel(3), channel(1)];
}

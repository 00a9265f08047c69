/** A source of uniform random numbers in [0, 1). */
export type Rng = () => number;

/**
 * Mixes any number of integers into one 32-bit seed (a splitmix/murmur-style finaliser per
 * part), so related streams such as (set seed, person, frame) get unrelated random sequences.
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    // Fold the low and high 32 bits so seeds above 2^32 still matter.
    const low = part | 0;
    const high = Math.floor(part / 0x100000000) | 0;
    h = Math.imul(h ^ low, 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13) ^ high, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** Seeded PRNG (mulberry32): small, fast and good enough for data augmentation and sampling. */
export function mulberry32(seed: number): Rng {
  let state = hashSeed(seed);
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draw (Box-Muller). */
export function gaussian(rng: Rng): number {
  const u = 1 - rng(); // in (0, 1], keeps log finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Uniform draw in [low, high). */
export function uniform(rng: Rng, low: number, high: number): number {
  return low + (high - low) * rng();
}

/** Fisher-Yates shuffle in place; returns the same array for chaining. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const held = items[i];
    items[i] = items[j];
    items[j] = held;
  }
  return items;
}

/** Deterministic 32-bit FNV-1a hash of a string, for turning names into seeds. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

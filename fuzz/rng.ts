/**
 * The fuzzer's deterministic randomness. Every input is made from its own generator, seeded from
 * the run's seed, the target's name and the input's number, so one input can be made again on its
 * own (`--replay`) without running the ones before it.
 */

/** A small, fast generator (sfc32) with the helpers the mutators use. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** @param seeds - four 32-bit words; see {@link inputRng} */
  constructor(a: number, b: number, c: number, d: number) {
    this.#a = a >>> 0;
    this.#b = b >>> 0;
    this.#c = c >>> 0;
    this.#d = d >>> 0 || 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** The next 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** An integer in `[0, n)`; 0 when `n` is 0 or less. */
  int(n: number): number {
    if (n <= 1) return 0;
    if (n <= 0x1_0000_0000) return Math.floor((this.u32() / 0x1_0000_0000) * n);
    return Math.floor(this.float() * n);
  }

  /** An integer in `[lo, hi]`. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** A float in `[0, 1)`. */
  float(): number {
    return (this.u32() * 0x20_0000 + (this.u32() >>> 11)) / 2 ** 53;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T;
  }

  /** A size biased towards small values, up to `max`. */
  small(max: number): number {
    const r = this.float();
    return Math.min(max, Math.floor(r * r * r * (max + 1)));
  }

  /** A 32-bit seed for a library that takes one (fast-check). */
  seed(): number {
    return this.u32() | 0;
  }
}

/** FNV-1a over a string, for mixing a target's name into its seeds. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The generator of one input: a function of the run's seed, the target and the input's number
 * only.
 *
 * @param seed - the run's seed (`--seed`)
 * @param target - the target's name
 * @param iteration - the input's number, from 0
 */
export function inputRng(seed: number, target: string, iteration: number): Rng {
  return new Rng(
    seed,
    hashString(target),
    iteration,
    Math.imul(iteration ^ 0x9e3779b9, 0x85ebca6b),
  );
}

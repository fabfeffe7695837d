// A module with one gap of each kind that tsdoc.test.ts finds, and the same kinds done right,
// so that the test is shown to report exactly these gaps.

/**
 * Adds two numbers.
 * @param a - the first
 * @param b - the second
 */
export function complete(a: number, b: number): number {
  return a + b;
}

export function noDoc(): void {}

/**
 * Has one parameter documented, one not, and a tag without text.
 * @param a - the first
 * @param c
 */
export function someParams(a: number, b: number, c: number): number {
  return a + b + c;
}

/**
 * Documents a parameter it no longer has.
 * @param old - was removed
 */
export function staleParam(): void {}

/**
 * Takes an options object that it destructures.
 * @param options - the options
 */
export function destructured({ x }: { x: number }): number {
  return x;
}

/** Doubles a number. */
export const arrow = (n: number): number => n * 2;

/**
 * Takes a string.
 * @param value - a string
 */
export function overloaded(value: string): string;
export function overloaded(value: number): string;
export function overloaded(value: string | number): string {
  return String(value);
}

interface Base {
  inherited: number;
}

/** Has members with and without doc comments. */
export interface Shape extends Base {
  /** Documented. */
  documented: number;
  bare: number;
  /** Has an inline object type. */
  nested: { inner: number; [key: string]: number };
}

/** An object type written as a type alias. */
export type Literal = { field: string };

/** A class with public and private members. */
export class Thing {
  /** Documented. */
  readonly ok = 1;
  field = 2;
  /**
   * Makes one.
   * @param seed - where to start
   */
  constructor(private readonly seed: number) {}
  /**
   * Documented.
   * @param n - how many
   */
  run(n: number): number {
    return n + this.seed + this.hidden();
  }
  plain(): void {}
  private hidden(): number {
    return 0;
  }
  /** Reads a value. */
  get value(): number {
    return this.seed;
  }
  set value(_n: number) {}
}

import {
  CloudEvent,
  differences,
  type EventFormat,
  isCloudEvent,
  isPosthornError,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";
import type { SuiteCoverage } from "./binding-suite.js";
import {
  type EventVector,
  type InvalidVector,
  invalidEvent,
  invalidVectors,
  validVectors,
} from "./vectors.js";

/**
 * What {@link describeFormatConformance} registered: `cases` and `skipped` as every suite reports
 * them (its valid-vector round-trips, by vector name), and `allCases`, every case it runs.
 */
export interface FormatSuiteCoverage extends SuiteCoverage {
  /**
   * Every case the suite registered, each as `kind: name`: `count: ...` (the check that enough
   * vectors are carried), `round-trip: <vector>`, `batch: ...` (only for a format with
   * `encodeBatch` and `decodeBatch`), `json-data: ...`, `rejects: <invalid vector>` and
   * `corrupted: <vector>`. Skipped round-trips are listed too, as in `cases`.
   */
  readonly allCases: readonly string[];
}

/** Options for {@link describeFormatConformance}. */
export interface FormatConformanceOptions {
  /** Why a vector cannot be carried by this format, or `undefined` when it can. */
  skip?(vector: EventVector): string | undefined;
  /** Whether this format keeps value types (every format does; default `true`). */
  typed?: boolean;
}

/**
 * Asserts that `actual` is equivalent to `expected`, failing with the list of differences.
 *
 * @param actual - what came back; it must be a Posthorn `CloudEvent`
 * @param expected - the event that was sent
 * @param context - starts each failure message, e.g. the vector and path (default `""`)
 */
export function expectEquivalent(actual: unknown, expected: CloudEvent, context = ""): void {
  expect(isCloudEvent(actual), `${context}: decoded value is not a CloudEvent`).toBe(true);
  const diff = differences(expected, actual as CloudEvent);
  expect(diff, `${context}: not equivalent`).toEqual([]);
}

/**
 * Asserts that `action` throws a Posthorn error (any code, or one of `codes`).
 *
 * @param action - called once, synchronously. An action that returns a promise fails the
 *   assertion, saying so: for an async call use
 *   `await expect(promise).rejects.toMatchObject({ name: "PosthornError", code })`.
 * @param codes - the codes accepted; any code when left out
 */
export function expectTypedError(action: () => unknown, codes?: readonly string[]): void {
  let thrown: unknown;
  let returned: unknown;
  try {
    returned = action();
  } catch (err) {
    thrown = err;
  }
  if (typeof (returned as PromiseLike<unknown> | undefined)?.then === "function") {
    // Its rejection would otherwise surface later as an unhandled error of some other test.
    Promise.resolve(returned).catch(() => {});
    expect.fail(
      'expectTypedError checks a synchronous throw, but the action returned a promise: use await expect(promise).rejects.toMatchObject({ name: "PosthornError" }) for an async call',
    );
  }
  expect(thrown, "expected a typed error, got none").toBeDefined();
  expect(isPosthornError(thrown), `expected a PosthornError, got ${String(thrown)}`).toBe(true);
  if (codes) expect(codes).toContain((thrown as { code: string }).code);
}

/**
 * Throws a `TypeError` naming the suite when `format` is not an event format (no `encode` and
 * `decode` functions, or only one of `encodeBatch` and `decodeBatch`), so the mistake shows where
 * the suite is called instead of as a `TypeError` in every case.
 *
 * @param suite - the suite's name, to start the message
 * @param format - what was passed as the format
 */
export function checkFormat(suite: string, format: EventFormat): void {
  const f = format as Partial<EventFormat> | null | undefined;
  if (typeof f?.encode !== "function" || typeof f?.decode !== "function") {
    throw new TypeError(
      `${suite}: the format must be an EventFormat with encode(event) and decode(bytes), got ${f === null ? "null" : typeof f === "object" ? `an object with ${Object.keys(f).join(", ") || "no keys"}` : typeof f}`,
    );
  }
  if ((f.encodeBatch === undefined) !== (f.decodeBatch === undefined)) {
    throw new TypeError(
      `${suite}: format ${JSON.stringify(f.name)} has only one of encodeBatch and decodeBatch; give both, or neither`,
    );
  }
}

/**
 * Invalid vectors a path can detect, given whether it keeps types and name case.
 *
 * @param options - `typed`: the path keeps attribute value types; `caseSensitive`: it keeps the
 *   case of attribute names
 */
export function detectableInvalidVectors(options: {
  typed: boolean;
  caseSensitive: boolean;
}): InvalidVector[] {
  return invalidVectors.filter(
    (v) =>
      v.detectableBy === "any" ||
      (v.detectableBy === "typed" && options.typed) ||
      (v.detectableBy === "case-sensitive" && options.caseSensitive),
  );
}

/**
 * Deterministic corruptions of an encoding: truncations and single-byte flips.
 *
 * @param bytes - a valid encoding
 * @param count - how many truncations and flips, half each (default 24)
 * @returns the empty input, then the truncations, then the flipped copies (only the empty input
 *   when `bytes` is empty)
 */
export function corruptions(bytes: Uint8Array, count = 24): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(0)];
  const n = bytes.length;
  if (n === 0) return out;
  for (let i = 1; i <= count / 2; i++) {
    const cut = Math.floor((n * i) / (count / 2 + 1));
    out.push(bytes.subarray(0, cut));
  }
  for (let i = 0; i < count / 2; i++) {
    const flipped = bytes.slice();
    const at = Math.floor((n * (i + 0.5)) / (count / 2));
    flipped[at] = (flipped[at] as number) ^ (0x5a + i);
    out.push(flipped);
  }
  return out;
}

/**
 * The shared conformance suite for an event format: every valid vector round-trips to an
 * equivalent event, alone and in a batch; every invalid vector is rejected with a typed error
 * (at encoding or at decoding); truncated and corrupted bytes give a typed error or a valid event,
 * never anything else. Call it at the top level of a test file.
 *
 * @param format - the format under test
 * @param options - vectors to skip, and whether the format keeps value types (default true)
 * @returns the valid-vector round-trip cases it registered, by vector name, and those skipped
 *   (`name (reason)`), to check coverage with; and `allCases`, every case it registered by kind
 *   (round-trip, batch, JSON data, invalid vectors, corruptions). `cases` keeps to the
 *   round-trips, so checks written against it (the format packages' own) stay as they are
 * @throws TypeError when `format` has no `encode` and `decode`, or only one of `encodeBatch` and
 *   `decodeBatch`
 * @example
 * ```ts
 * describeFormatConformance(json);
 * ```
 */
export function describeFormatConformance(
  format: EventFormat,
  options: FormatConformanceOptions = {},
): FormatSuiteCoverage {
  checkFormat("describeFormatConformance", format);
  const cases: string[] = [];
  const allCases: string[] = [];
  // Registers a case and lists it under its kind; a vector the format cannot carry is skipped
  // with the format's stated reason in its title.
  const registerCase = (kind: string, name: string, fn: () => void, skip?: string): void => {
    allCases.push(`${kind}: ${name}`);
    it.skipIf(skip !== undefined)(skip === undefined ? name : `${name} (skipped: ${skip})`, fn);
  };
  const skipped: string[] = [];
  const typed = options.typed ?? true;
  const carried = validVectors.filter((vec) => options.skip?.(vec) === undefined);

  describe(`format conformance: ${format.name} (${format.contentType})`, () => {
    registerCase("count", "carries at least 40 vectors", () => {
      expect(
        carried.length,
        `the format carries ${carried.length} of the ${validVectors.length} valid vectors: skip() leaves out too many`,
      ).toBeGreaterThanOrEqual(40);
    });

    describe("valid vectors round-trip", () => {
      for (const vec of validVectors) {
        const reason = options.skip?.(vec);
        cases.push(vec.name);
        if (reason !== undefined) skipped.push(`${vec.name} (${reason})`);
        registerCase(
          "round-trip",
          vec.name,
          () => {
            const bytes = format.encode(vec.event);
            expect(bytes).toBeInstanceOf(Uint8Array);
            expectEquivalent(format.decode(bytes), vec.event, vec.name);
          },
          reason,
        );
      }
    });

    if (format.encodeBatch && format.decodeBatch) {
      const encodeBatch = format.encodeBatch.bind(format);
      const decodeBatch = format.decodeBatch.bind(format);
      describe(`batch (${format.batchContentType})`, () => {
        registerCase("batch", "round-trips every vector in one batch, in order", () => {
          const events = carried.map((x) => x.event);
          const back = decodeBatch(encodeBatch(events));
          expect(back).toHaveLength(events.length);
          for (const [i, e] of back.entries())
            expectEquivalent(e, events[i] as CloudEvent, carried[i]?.name);
        });
        registerCase("batch", "round-trips an empty batch", () => {
          expect(decodeBatch(encodeBatch([]))).toEqual([]);
        });
        registerCase("batch", "rejects a batch holding an invalid event", () => {
          const bad = invalidEvent(invalidVectors[0] as InvalidVector);
          const first = carried[0]?.event as CloudEvent;
          let bytes: Uint8Array;
          try {
            bytes = encodeBatch([first, bad]);
          } catch (err) {
            expect(isPosthornError(err)).toBe(true);
            return;
          }
          expectTypedError(() => decodeBatch(bytes));
        });
      });
    }

    describe("JSON data as JSON.stringify reads it", () => {
      const base = { specversion: "1.0", source: "/suite", type: "t" } as const;
      registerCase(
        "json-data",
        "Number, String and Boolean objects, toJSON results, members with no JSON left out",
        () => {
          const data = {
            n: new Number(5),
            s: new String("x"),
            b: new Boolean(true),
            at: new Date(0),
            gone: undefined,
            call: () => 1,
            nested: { toJSON: () => ({ k: [1, "two", null] }) },
          };
          const event = new CloudEvent({ ...base, id: "json-view", data });
          expect(format.decode(format.encode(event)).data).toEqual(
            JSON.parse(JSON.stringify(data)),
          );
        },
      );
      registerCase(
        "json-data",
        "an encode nested in another (data's toJSON encoding an event) leaves both whole",
        () => {
          const inner = new CloudEvent({ ...base, id: "inner", data: { inner: true } });
          let innerBytes: Uint8Array | undefined;
          const data = {
            toJSON: () => {
              innerBytes = format.encode(inner);
              return { outer: true };
            },
          };
          const outer = new CloudEvent({ ...base, id: "outer", data });
          const bytes = format.encode(outer);
          expect(format.decode(bytes).data).toEqual({ outer: true });
          expect(innerBytes).toBeInstanceOf(Uint8Array);
          expectEquivalent(format.decode(innerBytes as Uint8Array), inner, "inner");
        },
      );
    });

    describe("invalid vectors are rejected with a typed error", () => {
      for (const vec of detectableInvalidVectors({ typed, caseSensitive: true })) {
        registerCase("rejects", vec.name, () => {
          expectTypedError(
            () => format.decode(format.encode(invalidEvent(vec))),
            ["InvalidEvent", "MalformedInput"],
          );
        });
      }
    });

    describe("truncated and corrupted bytes", () => {
      for (const vec of carried.filter((x) => !x.tags.includes("large")).slice(0, 20)) {
        registerCase(
          "corrupted",
          `${vec.name}: every corruption decodes to a typed error or a valid event`,
          () => {
            for (const bad of corruptions(format.encode(vec.event))) {
              let result: unknown;
              try {
                result = format.decode(bad);
              } catch (err) {
                expect(isPosthornError(err), `untyped error: ${String(err)}`).toBe(true);
                continue;
              }
              expect(isCloudEvent(result)).toBe(true);
            }
          },
        );
      }
    });
  });
  return { cases, skipped, allCases };
}

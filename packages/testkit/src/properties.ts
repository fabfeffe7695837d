import {
  CloudEvent,
  type CloudEventInit,
  differences,
  type EventFormat,
  extensions,
  isCloudEvent,
  isContextAttribute,
  isPosthornError,
  isValidString,
} from "@posthorn/core";
import fc from "fast-check";
import { describe, expect, it as vitestIt } from "vitest";
import type { SuiteCoverage } from "./binding-suite.js";
import { inCi } from "./brokers.js";
import { checkFormat } from "./format-suite.js";

/**
 * How many generated cases each property runs: `POSTHORN_PROPERTY_RUNS` when set, else 1,000
 * under CI (`CI` set and not `false` or `0`) and 300 locally.
 *
 * @throws RangeError when `POSTHORN_PROPERTY_RUNS` is set to anything but a whole number of 1 or
 *   more (it was ignored, or a fraction was handed to fast-check)
 */
export function propertyRuns(): number {
  const given = process.env.POSTHORN_PROPERTY_RUNS;
  if (given !== undefined && given.trim() !== "") {
    const runs = Number(given);
    if (!Number.isInteger(runs) || runs < 1) {
      throw new RangeError(
        `POSTHORN_PROPERTY_RUNS must be a whole number of runs, 1 or more, got ${JSON.stringify(given)}`,
      );
    }
    return runs;
  }
  return inCi() ? 1000 : 300;
}

const validString = (minLength = 0, maxLength = 40): fc.Arbitrary<string> =>
  fc
    .string({ unit: "binary", minLength, maxLength })
    .filter((s) => s.length >= minLength && isValidString(s));

// Built on first use: constructing these costs time, and every test file imports the testkit.
let parts: ReturnType<typeof buildParts> | undefined;

function buildParts() {
  const sources = fc.oneof(
    fc.webUrl({ withQueryParameters: true }),
    fc.constantFrom(
      "/orders",
      "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
      "mailto:a@example.com",
      "../rel?x=1#f",
      "a/b",
    ),
  );

  const timestamps = fc
    .tuple(
      fc.date({
        min: new Date("0001-01-01T00:00:00Z"),
        max: new Date("9999-12-31T23:59:59Z"),
        noInvalidDate: true,
      }),
      fc.constantFrom("", ".5", ".123", ".123456", ".123456789", ".000"),
      fc.constantFrom("Z", "+00:00", "+05:30", "-08:00", "+14:00"),
    )
    .map(([d, frac, offset]) => `${d.toISOString().slice(0, 19)}${frac}${offset}`);

  const extensionName = fc
    .stringMatching(/^[a-z0-9]{1,20}$/)
    .filter((n) => n !== "data" && !isContextAttribute(n) && extensions.typeOf(n) === undefined);

  const extensionValue: fc.Arbitrary<string | number | boolean | Uint8Array> = fc.oneof(
    validString(0, 30),
    fc.integer({ min: -2147483648, max: 2147483647 }),
    fc.boolean(),
    fc.uint8Array({ maxLength: 32 }),
  );

  const jsonData = fc.record({
    datacontenttype: fc.constantFrom(
      "application/json",
      "application/vnd.example+json",
      "text/json",
    ),
    data: fc.jsonValue({ maxDepth: 3 }),
  });
  const textData = fc.record({
    datacontenttype: fc.constantFrom("text/plain", "text/csv; charset=utf-8", "application/xml"),
    data: validString(1, 200),
  });
  const binaryData = fc.record({
    datacontenttype: fc.constantFrom("application/octet-stream", "image/png"),
    data: fc.uint8Array({ minLength: 1, maxLength: 300 }),
  });
  return { sources, timestamps, extensionName, extensionValue, jsonData, textData, binaryData };
}

/** Options for {@link arbitraryEvent}. */
export interface ArbitraryEventOptions {
  /** Generate Binary extension values (some paths, like the `cloudevents` package, cannot carry them). */
  binaryExtensions?: boolean;
}

/**
 * A fast-check arbitrary of valid CloudEvents: Unicode in every string attribute, URI-reference
 * sources, timestamps with offsets and up to nanosecond fractions, up to six extensions of every
 * type (names that are not declared extensions, so untyped transports return Strings for them),
 * and JSON, text, binary or no data.
 *
 * @param options - whether extensions may hold Binary values (default true)
 */
export function arbitraryEvent(options: ArbitraryEventOptions = {}): fc.Arbitrary<CloudEvent> {
  parts ??= buildParts();
  const { sources, timestamps, extensionName, extensionValue, jsonData, textData, binaryData } =
    parts;
  const value =
    options.binaryExtensions === false
      ? extensionValue.filter((v) => !(v instanceof Uint8Array))
      : extensionValue;
  return fc
    .record(
      {
        id: validString(1, 40),
        source: sources,
        type: validString(1, 60),
        subject: validString(1, 40),
        time: timestamps,
        dataschema: fc.webUrl(),
        extensions: fc.dictionary(extensionName, value, { maxKeys: 6 }),
        payload: fc.oneof(jsonData, textData, binaryData, fc.constant(undefined)),
      },
      { requiredKeys: ["id", "source", "type", "extensions", "payload"] },
    )
    .map(({ extensions: ext, payload, ...attrs }) => {
      const init: Record<string, unknown> = { specversion: "1.0", ...attrs };
      for (const [name, v] of Object.entries(ext)) init[name] = v;
      if (payload) Object.assign(init, payload);
      return new CloudEvent(init as CloudEventInit);
    });
}

/**
 * Runs `decode` on input and checks the outcome is a valid event (or list of them) or a typed
 * error.
 *
 * @param decode - runs the decoder on one input, synchronously
 * @throws Error when the decoder throws an untyped error or returns anything else
 */
export function expectEventOrTypedError(decode: () => unknown): void {
  let result: unknown;
  try {
    result = decode();
  } catch (err) {
    if (!isPosthornError(err))
      throw new Error(`untyped error from decoder: ${String(err)}`, { cause: err });
    return;
  }
  const list = Array.isArray(result) ? result : [result];
  for (const item of list) {
    if (!isCloudEvent(item) && !(typeof item === "object" && item !== null && "body" in item)) {
      throw new Error(
        `decoder returned neither an event, a message nor a typed error: ${String(item)}`,
      );
    }
  }
}

/**
 * Property tests for a format: arbitrary valid events round-trip to equivalent events (alone and
 * in batches), and arbitrary or mutated bytes decode to a valid event or a typed error, never
 * anything else and never a hang.
 *
 * @param format - the format under test
 * @param options - options for the generated events (whether Binary extensions are generated)
 * @returns the cases it registered, to check coverage with
 * @throws TypeError when `format` has no `encode` and `decode`, or only one of `encodeBatch` and
 *   `decodeBatch`
 */
export function describeFormatProperties(
  format: EventFormat,
  options: ArbitraryEventOptions = {},
): SuiteCoverage {
  checkFormat("describeFormatProperties", format);
  const numRuns = propertyRuns();
  const cases: string[] = [];
  // Every property test below, by name, so the calling file can check what ran.
  const it = (name: string, fn: () => void): void => {
    cases.push(name);
    vitestIt(name, fn);
  };
  describe(`format properties: ${format.name} (${numRuns} cases each)`, () => {
    it("arbitrary valid events round-trip equivalently", () => {
      fc.assert(
        fc.property(arbitraryEvent(options), (event) => {
          expect(differences(event, format.decode(format.encode(event)))).toEqual([]);
        }),
        { numRuns },
      );
    });
    if (format.encodeBatch && format.decodeBatch) {
      const encodeBatch = format.encodeBatch.bind(format);
      const decodeBatch = format.decodeBatch.bind(format);
      it("arbitrary batches round-trip equivalently", () => {
        fc.assert(
          fc.property(fc.array(arbitraryEvent(options), { maxLength: 5 }), (events) => {
            const back = decodeBatch(encodeBatch(events));
            expect(back).toHaveLength(events.length);
            for (const [i, e] of back.entries())
              expect(differences(events[i] as CloudEvent, e)).toEqual([]);
          }),
          { numRuns: Math.ceil(numRuns / 4) },
        );
      });
    }
    it("arbitrary bytes give an event or a typed error", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
          expectEventOrTypedError(() => format.decode(bytes));
          if (format.decodeBatch) expectEventOrTypedError(() => format.decodeBatch?.(bytes));
        }),
        { numRuns },
      );
    });
    it("mutated encodings give an event or a typed error", () => {
      fc.assert(
        fc.property(
          arbitraryEvent(options),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.nat(),
          (event, flips, cut) => {
            const bytes = format.encode(event).slice();
            for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
            expectEventOrTypedError(() => format.decode(bytes));
            expectEventOrTypedError(() =>
              format.decode(bytes.subarray(0, cut % (bytes.length + 1))),
            );
          },
        ),
        { numRuns },
      );
    });
  });
  return { cases, skipped: [] };
}

/** What {@link describeMappingProperties} needs from a binding's mapping layer. */
export interface MappingPropertyHarness<M> {
  /** Shown in test names, e.g. `nats`. */
  readonly name: string;
  /** Content modes and formats to round-trip through, each a label and a pure round trip. */
  readonly paths: ReadonlyArray<{
    /** Starts the test name, e.g. `binary` or `structured JSON`. */
    readonly label: string;
    /** Encodes the event along this path and decodes it back. */
    roundTrip(event: CloudEvent): CloudEvent;
  }>;
  /** Arbitrary protocol messages (hostile headers, properties, bodies) for the decoder. */
  readonly hostileMessages: fc.Arbitrary<M>;
  /** The binding's decoder: an event, events, a Message for non-CloudEvents, or a typed error. */
  decode(message: M): unknown;
  /** Options for the generated events (e.g. no Binary extensions where a path cannot carry them). */
  readonly events?: ArbitraryEventOptions;
}

/** A content mode to encode in: binary, or structured in one format. */
export type ContentModeOptions =
  | {
      /** Binary mode. */
      readonly mode: "binary";
    }
  | {
      /** Structured mode. */
      readonly mode: "structured";
      /** The format of the structured message. */
      readonly format: EventFormat;
    };

/** One round-trip path of a {@link MappingPropertyHarness}. */
export type MappingPath = MappingPropertyHarness<unknown>["paths"][number];

/**
 * The round-trip paths of a binding with both content modes: binary, then structured in each of
 * `formats`, labelled `binary`, `structured JSON`, `structured avro`, ... (after `labelPrefix`).
 *
 * @param roundTrip - encodes the event in the given mode and decodes it as a subscriber would
 * @param formats - the formats to round-trip structured events through
 * @param labelPrefix - put before every label, e.g. `"MQTT 5 "`
 * @example
 * ```ts
 * describeMappingProperties({
 *   name: "nats",
 *   paths: contentModePaths((e, mode) => fromNatsMessage(toNatsMessage(e, mode), { formats }), formats),
 *   hostileMessages,
 *   decode,
 * });
 * ```
 */
export function contentModePaths(
  roundTrip: (event: CloudEvent, mode: ContentModeOptions) => CloudEvent,
  formats: readonly EventFormat[],
  labelPrefix = "",
): MappingPath[] {
  return [
    { label: `${labelPrefix}binary`, roundTrip: (e) => roundTrip(e, { mode: "binary" }) },
    ...formats.map((format) => ({
      // The acronym in capitals; the other formats by their own names.
      label: `${labelPrefix}structured ${format.name === "json" ? "JSON" : format.name}`,
      roundTrip: (e: CloudEvent) => roundTrip(e, { mode: "structured", format }),
    })),
  ];
}

/**
 * Property tests for a binding's mapping layer: arbitrary valid events round-trip through every
 * path, and arbitrary protocol messages decode to an event, a message or a typed error; nothing
 * pollutes `Object.prototype`.
 *
 * @param harness - the paths, the hostile messages and the decoder
 * @returns the cases it registered, to check coverage with
 */
export function describeMappingProperties<M>(harness: MappingPropertyHarness<M>): SuiteCoverage {
  const numRuns = propertyRuns();
  const cases: string[] = [];
  const it = (name: string, fn: () => void): void => {
    cases.push(name);
    vitestIt(name, fn);
  };
  describe(`mapping properties: ${harness.name} (${numRuns} cases each)`, () => {
    for (const path of harness.paths) {
      it(`${path.label}: arbitrary valid events round-trip equivalently`, () => {
        fc.assert(
          fc.property(arbitraryEvent(harness.events), (event) => {
            expect(differences(event, path.roundTrip(event))).toEqual([]);
          }),
          { numRuns },
        );
      });
    }
    it("arbitrary messages decode to an event, a message or a typed error", () => {
      fc.assert(
        fc.property(harness.hostileMessages, (message) => {
          expectEventOrTypedError(() => harness.decode(message));
          expect(Object.keys(Object.prototype)).toEqual([]);
        }),
        { numRuns },
      );
    });
  });
  return { cases, skipped: [] };
}

/**
 * Arbitrary header maps for header-based bindings: names drawn from the binding's attribute
 * prefix plus CloudEvents attribute names (in mixed case), hostile names (`__proto__`,
 * `constructor`), and random names; values random Unicode, percent sequences and control
 * characters.
 *
 * @param prefix - the binding's attribute prefix, e.g. `ce-` or `ce_`
 */
export function arbitraryHeaders(prefix: string): fc.Arbitrary<Record<string, string>> {
  const attr = fc.constantFrom(
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    "__proto__",
    "constructor",
    "prototype",
    "Id",
    "SPECVERSION",
    "ext",
    "a_b",
  );
  const name = fc.oneof(
    attr.map((a) => `${prefix}${a}`),
    fc.constantFrom("content-type", "Content-Type", "__proto__", "constructor"),
    fc.string({ maxLength: 12 }),
  );
  const value = fc.oneof(
    fc.constantFrom(
      "1.0",
      "0.3",
      "",
      "%",
      "%C0%A0",
      "%E2%82",
      '"quoted"',
      '"a\\"b"',
      "application/json",
      "application/cloudevents+json",
      "text/plain",
      "2024-01-01T00:00:00Z",
    ),
    fc.string({ unit: "binary", maxLength: 40 }),
    fc.string({ maxLength: 40 }).map((s) => `%${s}`),
  );
  return fc.dictionary(name, value, { maxKeys: 10, noNullPrototype: false });
}

/**
 * The seed corpus every target mutates: the testkit's valid vectors, events sampled from a
 * fast-check arbitrary (seeded, so the corpus is a function of `--seed`), the invalid vectors as
 * unchecked events, and hostile events (prototype-reaching names, out-of-range numbers) that
 * encoders write without checking. Plus the registries and format instances decoders are given.
 */
import {
  CloudEvent,
  type CloudEventInit,
  createUncheckedEvent,
  type EventFormat,
  ExtensionRegistry,
  extensions,
  isContextAttribute,
  isValidString,
  SPEC_EXTENSIONS,
} from "@posthorn/core";
import { avroCompactFormat, avroFormat } from "@posthorn/format-avro";
import { jsonFormat } from "@posthorn/format-json";
import { protobufFormat } from "@posthorn/format-protobuf";
import { invalidEvent, invalidVectors, validVectors } from "@posthorn/testkit/vectors";
import fc from "fast-check";
import { PROTO_NAMES } from "./mutate.js";
import type { Rng } from "./rng.js";

/**
 * A registry that declares types for extensions the vectors carry, some matching what they hold
 * (`priority` is an Integer) and some not (`padded` as a Timestamp), so decoders take their typed
 * paths: parsing header strings into declared types, and refusing what does not parse.
 */
export const typedRegistry: ExtensionRegistry = new ExtensionRegistry([
  ...SPEC_EXTENSIONS,
  { name: "flagged", type: "Boolean" },
  { name: "priority", type: "Integer" },
  { name: "lowest", type: "Integer" },
  { name: "highest", type: "Integer" },
  { name: "zero", type: "Integer" },
  { name: "signature", type: "Binary" },
  { name: "schemaref", type: "URI" },
  { name: "comment", type: "URI-reference" },
  { name: "looksnumeric", type: "Integer" },
  { name: "padded", type: "Timestamp" },
  { name: "e2", type: "Integer" },
  { name: "e3", type: "Boolean" },
  { name: "e4", type: "Binary" },
  { name: "greeting", type: "String" },
]);

/** The registries decoders are given: core's default one, or {@link typedRegistry}. */
export type RegistryName = "default" | "typed";

/** A registry by name. */
export function registryOf(name: RegistryName): ExtensionRegistry {
  return name === "typed" ? typedRegistry : extensions;
}

/** Options a format instance is made with. */
export interface FormatOptions {
  readonly registry: RegistryName;
  /** JSON nesting limit for decoding; `undefined` for the default (128). */
  readonly maxDepth?: number | undefined;
}

/** The event formats by name. */
export type FormatName = "json" | "avro" | "avro-compact" | "protobuf";

/** Every format name. */
export const FORMAT_NAMES: readonly FormatName[] = ["json", "avro", "avro-compact", "protobuf"];

const formatCache = new Map<string, EventFormat>();

/** A format instance with the given registry and depth limit (made once, then reused). */
export function formatOf(
  name: FormatName,
  options: FormatOptions = { registry: "default" },
): EventFormat {
  const key = `${name}/${options.registry}/${options.maxDepth ?? ""}`;
  let format = formatCache.get(key);
  if (format === undefined) {
    const registry = registryOf(options.registry);
    const depth = options.maxDepth === undefined ? {} : { maxDepth: options.maxDepth };
    switch (name) {
      case "json":
        format = jsonFormat({ registry, ...depth });
        break;
      case "avro":
        format = avroFormat({ registry, ...depth });
        break;
      case "avro-compact":
        format = avroCompactFormat({ registry, ...depth });
        break;
      default:
        format = protobufFormat({ registry, ...depth });
        break;
    }
    formatCache.set(key, format);
  }
  return format;
}

/** Every format, with one set of options, in {@link FORMAT_NAMES} order. */
export function allFormats(options: FormatOptions = { registry: "default" }): EventFormat[] {
  return FORMAT_NAMES.map((n) => formatOf(n, options));
}

/** The events inputs are made from. */
export interface Corpus {
  /** Valid events: the vectors but the large ones, then sampled ones. */
  readonly events: readonly CloudEvent[];
  /** The large vectors (1 MiB binary, 100 KB JSON), picked rarely. */
  readonly large: readonly CloudEvent[];
  /** Events that break a rule, unchecked, for encoders that write them anyway. */
  readonly invalid: readonly CloudEvent[];
}

const HOSTILE_VALUES: readonly unknown[] = [
  "x",
  "",
  2147483648,
  -2147483649,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  -0,
  true,
  null,
  new Uint8Array([0, 255]),
  { nested: 1 },
  [1, 2],
];

function hostileEvents(base: CloudEvent): CloudEvent[] {
  const out: CloudEvent[] = [];
  for (const name of PROTO_NAMES) {
    for (const value of [HOSTILE_VALUES[0], HOSTILE_VALUES[11]]) {
      // An own member named __proto__ (as JSON.parse makes one), not a prototype.
      const attrs = JSON.parse(JSON.stringify({ ...base.getAttributes(), x: 1 })) as Record<
        string,
        unknown
      >;
      delete attrs.x;
      Object.defineProperty(attrs, name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      out.push(createUncheckedEvent(attrs));
    }
  }
  for (const value of HOSTILE_VALUES) {
    out.push(createUncheckedEvent({ ...base.getAttributes(), ext: value }));
    out.push(
      createUncheckedEvent({
        ...base.getAttributes(),
        datacontenttype: "application/json",
        data: value,
      }),
    );
  }
  out.push(createUncheckedEvent({ ...base.getAttributes(), time: "0000-01-01T00:00:00+23:59" }));
  out.push(createUncheckedEvent({ ...base.getAttributes(), time: "9999-12-31T23:59:59-23:59" }));
  out.push(createUncheckedEvent({ ...base.getAttributes(), time: "2016-12-31T23:59:60Z" }));
  out.push(createUncheckedEvent({ ...base.getAttributes(), Id: "upper" }));
  return out;
}

/**
 * Arbitrary valid events, in the spirit of the testkit's `arbitraryEvent` (Unicode in every
 * string, URI-reference sources, offsets and fractions in times, typed extensions, JSON, text,
 * binary or no data) but built from cheap arbitraries: the testkit's takes about 3 s to build
 * (web URLs, regular expressions), which every worker would pay before its first input.
 */
function sampleEvents(seed: number, count: number): CloudEvent[] {
  // Code points mapped by hand: fc.string's "binary" unit builds a map of every code point first
  // (1.3 s).
  const codePoint = fc.oneof(
    fc.integer({ min: 0x20, max: 0x7e }),
    fc.integer({ min: 0xa0, max: 0xd7ff }),
    fc.integer({ min: 0xe000, max: 0x10ffff }),
  );
  const text = (min: number, max: number) =>
    fc
      .array(codePoint, { minLength: min, maxLength: max })
      .map((cps) => String.fromCodePoint(...cps))
      .filter((s) => s.length >= min && isValidString(s));
  const letters = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789");
  const name = fc
    .string({ unit: letters, minLength: 1, maxLength: 20 })
    .filter((n) => n !== "data" && !isContextAttribute(n) && extensions.typeOf(n) === undefined);
  const value = fc.oneof(
    text(0, 30),
    fc.integer({ min: -2147483648, max: 2147483647 }),
    fc.boolean(),
    fc.uint8Array({ maxLength: 32 }),
  );
  const time = fc
    .tuple(
      fc.integer({ min: -62_135_596_800, max: 253_402_300_799 }),
      fc.constantFrom("", ".5", ".123", ".123456", ".123456789", ".000"),
      fc.constantFrom("Z", "+00:00", "+05:30", "-08:00", "+14:00"),
    )
    .map(([s, frac, zone]) => `${new Date(s * 1000).toISOString().slice(0, 19)}${frac}${zone}`);
  const payload = fc.oneof(
    fc.record({
      datacontenttype: fc.constantFrom(
        "application/json",
        "application/vnd.example+json",
        "text/json",
      ),
      data: fc.jsonValue({ maxDepth: 3 }),
    }),
    fc.record({
      datacontenttype: fc.constantFrom("text/plain", "text/csv; charset=utf-8", "application/xml"),
      data: text(1, 200),
    }),
    fc.record({
      datacontenttype: fc.constantFrom("application/octet-stream", "image/png"),
      data: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    }),
    fc.constant(undefined),
  );
  const event = fc
    .record(
      {
        id: text(1, 40),
        source: fc.constantFrom(
          "/orders",
          "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
          "mailto:a@example.com",
          "../rel?x=1#f",
          "a/b",
          "https://example.com/a?b=c",
        ),
        type: text(1, 60),
        subject: text(1, 40),
        time,
        dataschema: fc.constantFrom("https://example.com/schema.json", "urn:schema:1"),
        ext: fc.dictionary(name, value, { maxKeys: 6 }),
        payload,
      },
      { requiredKeys: ["id", "source", "type", "ext", "payload"] },
    )
    .map(({ ext, payload: p, ...attributes }) => {
      const init: Record<string, unknown> = { specversion: "1.0", ...attributes };
      for (const [k, v] of Object.entries(ext)) init[k] = v;
      if (p) Object.assign(init, p);
      return new CloudEvent(init as CloudEventInit);
    });
  return fc.sample(event, { seed, numRuns: count });
}

let cached: { seed: number; corpus: Corpus } | undefined;

/**
 * The corpus for a seed: the same events, in the same order, for the same seed.
 *
 * @param seed - the run's seed
 */
export function corpus(seed: number): Corpus {
  if (cached?.seed === seed) return cached.corpus;
  const large = validVectors.filter((v) => v.tags.includes("large")).map((v) => v.event);
  const events = validVectors.filter((v) => !v.tags.includes("large")).map((v) => v.event);
  const sampled = sampleEvents(seed, 48);
  const minimal = validVectors[0]?.event as CloudEvent;
  const result: Corpus = {
    events: [...events, ...sampled],
    large,
    invalid: [...invalidVectors.map((v) => invalidEvent(v)), ...hostileEvents(minimal)],
  };
  cached = { seed, corpus: result };
  return result;
}

/**
 * An event to start an input from: valid mostly, invalid sometimes, large rarely.
 *
 * @param rng - the input's generator
 * @param c - the corpus
 * @param invalid - the chance of an invalid (unchecked) event, for encoders that write them
 */
export function pickEvent(rng: Rng, c: Corpus, invalid = 0.1): CloudEvent {
  if (rng.chance(0.015)) return rng.pick(c.large);
  if (rng.chance(invalid)) return rng.pick(c.invalid);
  return rng.pick(c.events);
}

/** One to four events, for batches (sometimes none). */
export function pickEvents(rng: Rng, c: Corpus, invalid = 0.05): CloudEvent[] {
  const n = rng.chance(0.1) ? 0 : 1 + rng.small(3);
  const out: CloudEvent[] = [];
  for (let i = 0; i < n; i++) out.push(pickEvent(rng, c, invalid));
  return out;
}

/** Decoding options most inputs use, and the odd ones some do. */
export function pickFormatOptions(rng: Rng): FormatOptions {
  return {
    registry: rng.chance(0.3) ? "typed" : "default",
    maxDepth: rng.chance(0.85) ? undefined : rng.pick([0, 1, 2, 3, 64, 1000]),
  };
}

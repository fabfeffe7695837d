/**
 * The event formats' decoders: `decode` and, where the format has one, `decodeBatch`, for JSON,
 * Avro, compact Avro and Protobuf. Inputs are encodings of corpus events, mutated byte-wise with
 * each format's own tokens and length fields, JSON inputs also member-wise.
 */
import type { CloudEvent, CloudEventLike, EventFormat } from "@posthorn/core";
import {
  type Corpus,
  corpus,
  type FormatName,
  type FormatOptions,
  formatOf,
  pickEvent,
  pickEvents,
  pickFormatOptions,
  registryOf,
} from "../corpus.js";
import { ATTRIBUTE_VALUES } from "../messages.js";
import {
  arbitraryBytes,
  type ByteShape,
  mutateBytes,
  ODD_CHARS,
  PROTO_NAMES,
  utf8,
  varint,
  zigzag,
} from "../mutate.js";
import { attempt, checkEvent, checkEvents, checkRoundTrip, Finding } from "../oracle.js";
import type { Rng } from "../rng.js";
import type { Target } from "../target.js";

/** An input of a format target. */
export interface FormatInput {
  /** `decode` or `decodeBatch`. */
  readonly batch: boolean;
  /** The registry and depth limit the format was made with. */
  readonly options: FormatOptions;
  /** The bytes decoded. */
  readonly bytes: Uint8Array;
}

const JSON_TOKENS = [
  '"__proto__"',
  '"constructor"',
  '"prototype"',
  '{"__proto__":{"polluted":true}}',
  '"__proto__":{"polluted":true},',
  '"constructor":{"prototype":{"polluted":true}},',
  '"specversion"',
  '"1.0"',
  '"data"',
  '"data_base64"',
  '"datacontenttype"',
  '"application/json"',
  '"text/plain"',
  '"time"',
  '"dataschema"',
  '"source"',
  '"id"',
  '"type"',
  '"subject"',
  "null",
  "true",
  "false",
  "0",
  "-0",
  "1e309",
  "-1e309",
  "2147483648",
  "-2147483649",
  "9007199254740993",
  "1.5",
  "1e-400",
  "[]",
  "{}",
  ",",
  ":",
  '"',
  "\\",
  '"\\ud800"',
  '"\\udc00\\ud800"',
  '"\\u0000"',
  "\\u0000",
  '"A==="',
  '"AA=="',
  "[[[[[[[[[[[[[[[[",
  "{{{{",
  '{"a":{"a":{"a":{"a":',
  '"\\"',
].map(utf8);

const PROTO_TOKENS: Uint8Array[] = [
  // Tags of the CloudEvent message (fields 1 to 8, length-delimited) and of the attribute value.
  ...[1, 2, 3, 4, 5, 6, 7, 8].map((f) => new Uint8Array([(f << 3) | 2])),
  ...[1, 2, 3, 4, 5, 6, 7].map((f) => new Uint8Array([(f << 3) | 2])),
  new Uint8Array([0x08]),
  new Uint8Array([0x10]),
  new Uint8Array([0x09]), // I64
  new Uint8Array([0x0d]), // I32
  new Uint8Array([0x0b]), // start group
  new Uint8Array([0x0c]), // end group
  new Uint8Array([0x00]), // field 0
  new Uint8Array([0x0e]), // wire type 6
  new Uint8Array([0x0f]), // wire type 7
  varint(0x7fffffffn << 3n),
  varint(2n ** 64n - 1n),
  new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // 11-byte varint
  // An attributes map entry: key "__proto__", value ce_string "x".
  new Uint8Array([
    0x2a,
    0x12,
    0x0a,
    0x09,
    ...utf8("__proto__"),
    0x12,
    0x05,
    0x1a,
    0x03,
    ...utf8("xyz"),
  ]),
  new Uint8Array([0x2a, 0x06, 0x0a, 0x04, ...utf8("data"), 0x12, 0x00]),
  ...["specversion", "id", "time", "constructor", "datacontenttype"].map(
    (k) => new Uint8Array([0x0a, k.length, ...utf8(k)]),
  ),
  ...PROTO_NAMES.map(utf8),
];

const AVRO_TOKENS: Uint8Array[] = [
  zigzag(0n),
  zigzag(1n),
  zigzag(-1n),
  zigzag(2n),
  zigzag(3n),
  zigzag(4n),
  zigzag(5n),
  zigzag(6n),
  zigzag(7n),
  zigzag(-64n),
  zigzag(2n ** 31n),
  zigzag(-(2n ** 31n) - 1n),
  zigzag(2n ** 62n),
  zigzag(-(2n ** 63n)),
  new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
  // A negative block count is followed by the block's byte size (Avro spec).
  new Uint8Array([...zigzag(-1n), ...zigzag(1000n)]),
  // A map entry named __proto__ holding the string branch.
  new Uint8Array([
    ...zigzag(1n),
    ...zigzag(9n),
    ...utf8("__proto__"),
    ...zigzag(3n),
    ...zigzag(1n),
    0x78,
    0x00,
  ]),
  ...["specversion", "id", "time", "constructor", "data"].map(
    (k) => new Uint8Array([...zigzag(BigInt(k.length)), ...utf8(k)]),
  ),
  ...PROTO_NAMES.map(utf8),
];

function shapeOf(name: FormatName): ByteShape {
  if (name === "json") return { dictionary: JSON_TOKENS };
  if (name === "protobuf") return { dictionary: PROTO_TOKENS, lengths: "varint" };
  return { dictionary: AVRO_TOKENS, lengths: "zigzag" };
}

const JSON_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  0,
  1.5,
  2147483648,
  -2147483649,
  1e308,
  "",
  "1.0",
  "\ud800",
  "\u0000",
  [],
  {},
  [1, "a", null],
  "AA==",
  "A===",
  "x".repeat(70_000),
  ...ATTRIBUTE_VALUES,
];

const JSON_NAMES: readonly string[] = [
  ...PROTO_NAMES,
  "specversion",
  "id",
  "source",
  "type",
  "data",
  "data_base64",
  "datacontenttype",
  "dataschema",
  "subject",
  "time",
  "priority",
  "flagged",
  "signature",
  "recordedtime",
  "severitynumber",
  "Id",
  "my-ext",
  "ext_",
  "",
  "a".repeat(300),
  ...ODD_CHARS.map((c) => `e${c}`),
];

function nested(depth: number, open: "[" | "{"): string {
  return open === "["
    ? `${"[".repeat(depth)}1${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** Member-wise mutation of a JSON event or batch: members added, removed, retyped, repeated. */
function mutateJson(rng: Rng, text: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  const targets: Record<string, unknown>[] = [];
  if (Array.isArray(value)) {
    for (const v of value)
      if (typeof v === "object" && v !== null) targets.push(v as Record<string, unknown>);
  } else if (typeof value === "object" && value !== null)
    targets.push(value as Record<string, unknown>);
  const rounds = 1 + rng.small(3);
  for (let r = 0; r < rounds && targets.length > 0; r++) {
    const obj = rng.pick(targets);
    const keys = Object.keys(obj);
    const op = rng.int(6);
    const key = rng.chance(0.5) && keys.length > 0 ? rng.pick(keys) : rng.pick(JSON_NAMES);
    if (op === 0 && keys.length > 0) delete obj[rng.pick(keys)];
    else if (op === 1) {
      const depth = rng.pick([100, 127, 128, 129, 1000, 20_000]);
      define(obj, key, JSON.parse(nested(Math.min(depth, 3000), rng.chance(0.5) ? "[" : "{")));
    } else define(obj, key, rng.pick(JSON_VALUES));
  }
  let out = JSON.stringify(value);
  if (rng.chance(0.2)) {
    // A repeated member, which JSON.parse resolves to the last one.
    const name = rng.pick(JSON_NAMES);
    const at = out.indexOf("{");
    if (at !== -1)
      out = `${out.slice(0, at + 1)}${JSON.stringify(name)}:${JSON.stringify(rng.pick(JSON_VALUES))},${out.slice(at + 1)}`;
  }
  if (rng.chance(0.1)) {
    const depth = rng.pick([128, 129, 5000, 200_000]);
    out = `${"[".repeat(depth)}${out}${"]".repeat(depth)}`;
  }
  return out;
}

function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Encodes with `format`, falling back to a valid event when the first one cannot be written. */
export function encodeSome(
  rng: Rng,
  c: Corpus,
  encode: (events: CloudEvent[]) => Uint8Array,
  batch: boolean,
): Uint8Array {
  for (let tries = 0; tries < 4; tries++) {
    const events = batch ? pickEvents(rng, c) : [pickEvent(rng, c)];
    try {
      return encode(events);
    } catch {
      // an invalid event the encoder refused: try another
    }
  }
  return encode([c.events[0] as CloudEvent]);
}

function formatTarget(name: FormatName, hasBatch: boolean): Target<FormatInput> {
  let c: Corpus;
  return {
    name,
    covers: hasBatch ? [`${name}.decode`, `${name}.decodeBatch`] : [`${name}.decode`],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const options = pickFormatOptions(rng);
      const batch = hasBatch && rng.chance(0.3);
      const format = formatOf(name, { registry: options.registry });
      const encode = (events: CloudEvent[]): Uint8Array =>
        batch
          ? (format.encodeBatch as (e: CloudEventLike[]) => Uint8Array)(events)
          : format.encode(events[0] as CloudEvent);
      const r = rng.int(100);
      if (r < 6) return { batch, options, bytes: arbitraryBytes(rng) };
      const seedBytes = encodeSome(rng, c, encode, batch);
      if (r < 16) return { batch, options, bytes: seedBytes };
      let bytes = seedBytes;
      if (name === "json" && r < 50) {
        bytes = utf8(mutateJson(rng, new TextDecoder().decode(seedBytes)));
        if (rng.chance(0.7)) return { batch, options, bytes };
      }
      const others = [encodeSome(rng, c, encode, batch), encodeSome(rng, c, encode, batch)];
      return { batch, options, bytes: mutateBytes(rng, bytes, { ...shapeOf(name), others }) };
    },
    run(input) {
      const format = formatOf(name, input.options);
      const registry = registryOf(input.options.registry);
      if (!input.batch) {
        const out = attempt(`${name}.decode`, () => format.decode(input.bytes));
        if (!out.ok) return;
        const event = checkEvent(out.value, `${name}.decode`);
        checkRoundTrip(event, (e) => format.decode(format.encode(e)), `${name}.decode`, registry);
        return;
      }
      const decodeBatch = format.decodeBatch?.bind(format);
      const encodeBatch = format.encodeBatch?.bind(format);
      if (!decodeBatch || !encodeBatch) throw new Error(`${name} has no batch`);
      const out = attempt(`${name}.decodeBatch`, () => decodeBatch(input.bytes));
      if (!out.ok) return;
      const events = checkEvents(out.value, `${name}.decodeBatch`);
      checkBatchRoundTrip(
        events,
        (list) => decodeBatch(encodeBatch(list)),
        `${name}.decodeBatch`,
        registry,
      );
    },
  };
}

/**
 * Checks that a decoded batch comes back as many equivalent events when encoded and decoded again.
 *
 * @param events - the decoded events
 * @param again - encodes them and decodes them again
 * @param what - the path, for the finding
 * @param registry - the registry the path used
 */
export function checkBatchRoundTrip(
  events: CloudEvent[],
  again: (events: CloudEvent[]) => unknown,
  what: string,
  registry: Parameters<typeof checkRoundTrip>[3],
): void {
  let back: unknown;
  try {
    back = again(events);
  } catch (err) {
    throw new Finding(
      "round-trip",
      `${what}: the decoded batch could not be encoded and decoded again: ${(err as Error)?.message}`,
      err,
    );
  }
  const list = checkEvents(back, `${what} (second decoding)`);
  if (list.length !== events.length) {
    throw new Finding("round-trip", `${what}: ${events.length} events came back as ${list.length}`);
  }
  events.forEach((event, i) => {
    checkRoundTrip(event, () => list[i], `${what}[${i}]`, registry);
  });
}

/** JSON: `json.decode` and `json.decodeBatch`. */
export const jsonTarget: Target<FormatInput> = formatTarget("json", true);
/** Avro: `avro.decode` (the format defines no batch). */
export const avroTarget: Target<FormatInput> = formatTarget("avro", false);
/** Compact Avro: `avroCompactFormat().decode` (the draft defines no batch). */
export const avroCompactTarget: Target<FormatInput> = formatTarget("avro-compact", false);
/** Protobuf: `protobuf.decode` and `protobuf.decodeBatch`. */
export const protobufTarget: Target<FormatInput> = formatTarget("protobuf", true);

/** The format every other target's structured inputs may be in. */
export function anyFormat(rng: Rng, options: FormatOptions): EventFormat {
  return formatOf(rng.pick(["json", "json", "avro", "avro-compact", "protobuf"] as const), options);
}

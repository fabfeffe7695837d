/**
 * Mutations of protocol messages as lists of header (property) entries plus a body: what HTTP,
 * Kafka, MQTT, NATS and AMQP carry attributes in. Entries keep their order and may repeat, so one
 * list can become each transport's shape (a record, a Web `Headers`, an array value per name).
 */
import { mutateString, ODD_CHARS, PROTO_NAMES, type StringShape } from "./mutate.js";
import type { Rng } from "./rng.js";

/** One header or property: a name and its value. */
export type Entry<V = string> = [name: string, value: V];

/** Content types worth swapping in: every format's, their batch types, data types, broken ones. */
export const CONTENT_TYPES: readonly string[] = [
  "application/cloudevents+json",
  "application/cloudevents-batch+json",
  "application/cloudevents+avro",
  "application/cloudevents+avro-compact",
  "application/cloudevents+protobuf",
  "application/cloudevents-batch+protobuf",
  "APPLICATION/CLOUDEVENTS+JSON; charset=UTF-8",
  "application/cloudevents+json;charset=latin1",
  "application/cloudevents",
  "application/cloudevents+xml",
  "application/cloudevents-batch+avro",
  "application/json",
  "application/json; charset=utf-8",
  "text/json",
  "application/vnd.x+json",
  "text/plain",
  "text/plain; charset=utf-8",
  "application/xml",
  "application/octet-stream",
  "image/png",
  "application/avro",
  "application/protobuf",
  "",
  " ",
  "/",
  "application/",
  "json",
  "application/json; =x",
  'application/json; a="unterminated',
  "application/json; __proto__=x; constructor=y",
  "text/plain; charset=\u00ff",
  "application/cloudevents+json\u0000",
  "application/\u212aml",
];

/** What the mutators need to know about one transport's names. */
export interface HeaderShape {
  /** The attribute prefix: `ce-`, `ce_`, `cloudEvents:`, or `""` (MQTT user properties). */
  readonly prefix: string;
  /** Other prefixes the transport reads, or look-alikes, to try too. */
  readonly otherPrefixes?: readonly string[];
  /** The name of the content type header, when it is a header (`content-type`, `Content-Type`). */
  readonly contentTypeName?: string;
  /** Longest header list made (transports cap the count; going past the cap is the point). */
  readonly maxEntries?: number;
}

const ATTRIBUTES = [
  "specversion",
  "id",
  "source",
  "type",
  "datacontenttype",
  "dataschema",
  "subject",
  "time",
  "data",
  "data_base64",
  "partitionkey",
  "traceparent",
  "recordedtime",
  "severitynumber",
  "sampledrate",
  "dataref",
  "flagged",
  "priority",
  "signature",
  "schemaref",
  "ext",
  "x",
];

/** Values worth putting in an attribute. */
export const ATTRIBUTE_VALUES: readonly string[] = [
  "1.0",
  "0.3",
  "2.0",
  "",
  " ",
  "true",
  "false",
  "TRUE",
  "0",
  "-0",
  "+1",
  "00123",
  "2147483647",
  "2147483648",
  "-2147483649",
  "1e3",
  "0x10",
  "NaN",
  "AAEC/f7/",
  "AAEC_f7_",
  "AA==",
  "A===",
  "====",
  "https://example.com/a?b#c",
  "urn:x",
  "../rel",
  "not a uri",
  "http://[::1",
  "2024-01-01T00:00:00Z",
  "2024-02-30T00:00:00Z",
  "2024-01-01T00:00:60Z",
  "0000-01-01T00:00:00+23:59",
  "9999-12-31T23:59:59-23:59",
  "2024-01-01t00:00:00.0000000000000000001z",
  "1985-04-12T23:20:50.52-08:00",
  "application/json",
  "text/plain",
  "__proto__",
  '{"a":1}',
  "%",
  "%ZZ",
  "%C3%A9",
  "%ED%A0%80",
  "\u00c3\u00a9",
];

function attributeName(rng: Rng, shape: HeaderShape): string {
  const prefix =
    shape.otherPrefixes && rng.chance(0.15) ? rng.pick(shape.otherPrefixes) : shape.prefix;
  const r = rng.int(10);
  let name: string;
  if (r < 5) name = rng.pick(ATTRIBUTES);
  else if (r < 7) name = rng.pick(PROTO_NAMES);
  else if (r < 8) name = `e${rng.int(100_000)}`;
  else if (r < 9) name = rng.pick(ODD_CHARS) + rng.pick(ATTRIBUTES);
  else name = "a".repeat(rng.pick([1, 20, 21, 300, 10_000]));
  return prefix + name;
}

function attributeValue(rng: Rng): string {
  return rng.chance(0.6)
    ? rng.pick(ATTRIBUTE_VALUES)
    : mutateString(rng, rng.pick(ATTRIBUTE_VALUES));
}

/**
 * One to four mutations of a header list: a value or a name changed, an entry repeated (as is, in
 * another case, with another value), removed or added, the content type swapped, the order
 * shuffled, many entries added.
 *
 * @param rng - the input's generator
 * @param entries - the list (not modified)
 * @param shape - the transport's prefixes and content type header
 * @returns a new list
 */
export function mutateEntries(rng: Rng, entries: readonly Entry[], shape: HeaderShape): Entry[] {
  const out: Entry[] = entries.map(([n, v]) => [n, v]);
  const rounds = 1 + rng.small(3);
  const names: StringShape = {
    dictionary: [shape.prefix, ...(shape.otherPrefixes ?? []), ...PROTO_NAMES, ...ATTRIBUTES],
  };
  for (let r = 0; r < rounds; r++) {
    const i = rng.int(out.length);
    const entry = out[i];
    switch (rng.int(12)) {
      case 0:
      case 1:
      case 2:
        if (entry) entry[1] = rng.chance(0.3) ? attributeValue(rng) : mutateString(rng, entry[1]);
        break;
      case 3:
        if (entry) entry[0] = mutateString(rng, entry[0], names);
        break;
      case 4:
        // The same name again: as it is, in another case, with the same or another value.
        if (entry) {
          const name = rng.chance(0.5) ? entry[0] : flipCase(rng, entry[0]);
          const value = rng.chance(0.5) ? entry[1] : attributeValue(rng);
          out.splice(rng.int(out.length + 1), 0, [name, value]);
        }
        break;
      case 5:
        if (entry) out.splice(i, 1);
        break;
      case 6:
      case 7:
        out.splice(rng.int(out.length + 1), 0, [attributeName(rng, shape), attributeValue(rng)]);
        break;
      case 8:
        if (shape.contentTypeName !== undefined) {
          const at = out.findIndex(
            ([n]) => n.toLowerCase() === shape.contentTypeName?.toLowerCase(),
          );
          const value = rng.chance(0.8)
            ? rng.pick(CONTENT_TYPES)
            : mutateString(rng, rng.pick(CONTENT_TYPES));
          if (at === -1 || rng.chance(0.2)) out.push([shape.contentTypeName, value]);
          else (out[at] as Entry)[1] = value;
        }
        break;
      case 9:
        for (let k = out.length - 1; k > 0; k--) {
          const j = rng.int(k + 1);
          [out[k], out[j]] = [out[j] as Entry, out[k] as Entry];
        }
        break;
      case 10: {
        // Many entries: past the transports' caps (256, 1024) or just below them.
        const count = rng.pick([50, 200, 255, 257, 1100, 5000]);
        const cap = shape.maxEntries ?? 20_000;
        for (let k = 0; k < count && out.length < cap; k++) {
          out.push([`${shape.prefix}m${k}`, rng.chance(0.9) ? "v" : attributeValue(rng)]);
        }
        break;
      }
      default:
        // An attribute removed by name, leaving the rest.
        if (out.length > 0) {
          const victim = rng.pick(ATTRIBUTES);
          const k = out.findIndex(([n]) => n.toLowerCase().endsWith(victim));
          if (k !== -1) out.splice(k, 1);
        }
        break;
    }
  }
  return out;
}

function flipCase(rng: Rng, s: string): string {
  let out = "";
  for (const ch of s) out += rng.chance(0.5) ? ch.toUpperCase() : ch.toLowerCase();
  return out;
}

/**
 * A plain record of the entries: a repeated name becomes an array of its values (or, with
 * `lastWins`, the last value). `__proto__` and other such names become own members (as
 * `JSON.parse` or a careful HTTP stack makes them), never the record's prototype.
 */
export function entriesToRecord<V>(
  entries: readonly Entry<V>[],
  options: { nullPrototype?: boolean; lastWins?: boolean } = {},
): Record<string, V | V[]> {
  const out: Record<string, V | V[]> = options.nullPrototype ? Object.create(null) : {};
  for (const [name, value] of entries) {
    if (Object.hasOwn(out, name) && !options.lastWins) {
      const seen = out[name] as V | V[];
      define(out, name, Array.isArray(seen) ? [...seen, value] : [seen, value]);
    } else define(out, name, value);
  }
  return out;
}

function define(target: object, name: string, value: unknown): void {
  Object.defineProperty(target, name, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** A record's entries again, one per value of an array-valued name. */
export function recordToEntries(record: Readonly<Record<string, unknown>>): Entry[] {
  const out: Entry[] = [];
  for (const name of Object.keys(record)) {
    const value = record[name];
    if (Array.isArray(value)) for (const v of value) out.push([name, String(v)]);
    else if (value !== undefined) out.push([name, String(value)]);
  }
  return out;
}

import { base64Encode, isBytes, utf8Decode, utf8Encode } from "./bytes.js";
import { isJsonContentType, isTextType, parseContentType } from "./content-type.js";
import { charsetBytes } from "./data.js";
import { CloudEvent, type CloudEventLike } from "./event.js";
import { extensions as defaultRegistry, type ExtensionRegistry } from "./extensions.js";
import {
  type AttributeType,
  type AttributeValue,
  canonicalString,
  canonicalTimestamp,
  parseCanonical,
} from "./types.js";

/** The data of an event reduced to what equivalence compares. */
export type CanonicalData =
  | {
      /** No data, or empty data (most transports cannot tell the two apart). */
      readonly kind: "none";
    }
  | {
      /** Data compared as bytes: binary data, or text under a non-JSON content type. */
      readonly kind: "bytes";
      /**
       * The bytes in standard base64; text as binary mode writes it (UTF-8, or the US-ASCII or
       * Latin-1 its charset names).
       */
      readonly base64: string;
    }
  | {
      /** Data compared as a JSON value: under a JSON content type, or with none. */
      readonly kind: "json";
      /** The value; bytes under a JSON content type are parsed when they are JSON. */
      readonly value: unknown;
    };

/** An event reduced to canonical strings (see `docs/concepts.md`, "Equivalence"). */
export interface CanonicalEvent {
  /** Every attribute's canonical string, sorted by name. */
  readonly attributes: Readonly<Record<string, string>>;
  /** The data, reduced to what equivalence compares. */
  readonly data: CanonicalData;
}

/** Options for {@link canonicalize} and {@link equivalent}. */
export interface EquivalenceOptions {
  /** Where declared Timestamp extensions are looked up. Defaults to the default registry. */
  registry?: ExtensionRegistry;
}

/**
 * Reduces an event to the canonical form equivalence is defined on:
 * - every attribute as its canonical string (Boolean `true`/`false`, Integer decimal, Binary
 *   base64), so a typed value and the string a header carried compare equal;
 * - Timestamps (`time` and declared Timestamp extensions) as the instant they name, at full
 *   precision, in UTC;
 * - a string held by a declared Integer, Boolean or Binary extension read as that type first, so
 *   `"05"` and `"+5"` for an Integer compare equal to 5;
 * - `datacontenttype` with the media type lower-cased and a `charset=utf-8` parameter dropped
 *   (UTF-8 is what Posthorn writes text in without one), and written as `application/json` when the
 *   event has non-binary data and no content type (JSON format 3.1.2);
 * - data as bytes (binary or text, text taken as the bytes `encodeData` writes for it: UTF-8,
 *   or US-ASCII or Latin-1 where its text type's charset says so) or as a JSON value under a JSON
 *   content type; empty data and no data are the same, since most transports cannot tell them
 *   apart.
 *
 * @param input - the event; one that is not a Posthorn `CloudEvent` is validated first
 * @param options - where declared Timestamp extensions are looked up
 * @throws {@link PosthornError} `InvalidEvent` when `input` is not a valid event
 */
export function canonicalize(
  input: CloudEventLike,
  options: EquivalenceOptions = {},
): CanonicalEvent {
  const event = CloudEvent.from(input);
  const registry = options.registry ?? defaultRegistry;
  const attributes: Record<string, string> = {};
  const data = event.data;
  for (const name of Object.keys(event).sort()) {
    if (name === "data") continue;
    const value = event[name] as AttributeValue;
    if (name === "datacontenttype") {
      attributes[name] = canonicalMediaType(value as string);
    } else if (typeof value === "string" && registry.typeOf(name) !== undefined) {
      attributes[name] = declaredCanonical(name, value, registry.typeOf(name) as AttributeType);
    } else {
      attributes[name] = canonicalString(value);
    }
  }
  if (attributes.datacontenttype === undefined && data !== undefined && !isBytes(data)) {
    attributes.datacontenttype = "application/json";
  }
  return {
    attributes: sortKeys(attributes),
    data: canonicalData(data, attributes.datacontenttype, event.datacontenttype),
  };
}

/**
 * The canonical string of a string value of a declared attribute: a Timestamp as its instant, an
 * Integer, Boolean or Binary read as that type (the constructor keeps `"05"` or `"+5"` for an
 * Integer as given, and a receiver that knows the declaration restores 5), a string that does not
 * read as its type as it stands.
 */
function declaredCanonical(name: string, value: string, type: AttributeType): string {
  if (type === "Timestamp") return canonicalTimestamp(value);
  if (type !== "Integer" && type !== "Boolean" && type !== "Binary") return value;
  try {
    return canonicalString(parseCanonical(value, type, name));
  } catch {
    return value;
  }
}

function sortKeys(record: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(record).sort()) out[key] = record[key] as string;
  return out;
}

/**
 * A media type in the form equivalence compares: type and subtype lower case, then the
 * parameters sorted by name, without `charset=utf-8`.
 *
 * @param value - a `Content-Type` value; one that does not parse is returned unchanged
 */
export function canonicalMediaType(value: string): string {
  const ct = parseContentType(value);
  if (!ct) return value;
  const params = Object.keys(ct.parameters)
    .filter((k) => !(k === "charset" && (ct.parameters[k] as string).toLowerCase() === "utf-8"))
    .sort()
    .map((k) => `;${k}=${ct.parameters[k]}`);
  return ct.mediaType + params.join("");
}

function canonicalData(
  data: unknown,
  contentType: string | undefined,
  ownContentType: string | undefined,
): CanonicalData {
  if (data === undefined) return { kind: "none" };
  const json = isJsonContentType(contentType);
  if (isBytes(data)) {
    if (data.length === 0) return { kind: "none" };
    if (json) {
      try {
        return { kind: "json", value: JSON.parse(utf8Decode(data)) };
      } catch {
        // not JSON after all: compare the bytes
      }
    }
    return { kind: "bytes", base64: base64Encode(data) };
  }
  if (typeof data === "string" && !json) {
    return data.length === 0
      ? { kind: "none" }
      : { kind: "bytes", base64: base64Encode(textBytes(data, ownContentType)) };
  }
  return { kind: "json", value: data };
}

// The bytes binary mode writes for text data (encodeData), so text sent under a Latin-1 charset
// compares equal to the bytes a receiver keeps; UTF-8 where that refuses the string.
function textBytes(text: string, contentType: string | undefined): Uint8Array {
  const ct = contentType === undefined ? undefined : parseContentType(contentType);
  const charset = ct !== undefined && isTextType(ct) ? ct.parameters.charset : undefined;
  if (charset === undefined) return utf8Encode(text);
  try {
    return charsetBytes(text, charset, contentType as string);
  } catch {
    return utf8Encode(text);
  }
}

/**
 * Lists how two events differ under {@link canonicalize}; empty when they are equivalent.
 * Each entry is a sentence naming the attribute, for test failure messages.
 *
 * @param a - the left event
 * @param b - the right event
 * @param options - where declared Timestamp extensions are looked up
 * @throws {@link PosthornError} `InvalidEvent` when either is not a valid event
 */
export function differences(
  a: CloudEventLike,
  b: CloudEventLike,
  options?: EquivalenceOptions,
): string[] {
  const ca = canonicalize(a, options);
  const cb = canonicalize(b, options);
  const out: string[] = [];
  const names = new Set([...Object.keys(ca.attributes), ...Object.keys(cb.attributes)]);
  for (const name of [...names].sort()) {
    const va = ca.attributes[name];
    const vb = cb.attributes[name];
    if (va === vb) continue;
    if (va === undefined)
      out.push(`${name}: absent on the left, ${JSON.stringify(vb)} on the right`);
    else if (vb === undefined)
      out.push(`${name}: ${JSON.stringify(va)} on the left, absent on the right`);
    else out.push(`${name}: ${clip(JSON.stringify(va))} != ${clip(JSON.stringify(vb))}`);
  }
  if (!dataEqual(ca.data, cb.data)) {
    out.push(`data: ${describe(ca.data)} != ${describe(cb.data)}`);
  }
  return out;
}

/**
 * Whether two events are equivalent: the same attribute names, the same canonical string for
 * each, and the same data (see {@link canonicalize}).
 *
 * @param a - one event
 * @param b - the other
 * @param options - where declared Timestamp extensions are looked up
 * @throws {@link PosthornError} `InvalidEvent` when either is not a valid event
 * @example
 * ```ts
 * expect(equivalent(sent, received)).toBe(true);
 * ```
 */
export function equivalent(
  a: CloudEventLike,
  b: CloudEventLike,
  options?: EquivalenceOptions,
): boolean {
  return differences(a, b, options).length === 0;
}

function dataEqual(a: CanonicalData, b: CanonicalData): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "none") return true;
  if (a.kind === "bytes") return a.base64 === (b as { base64: string }).base64;
  return deepEqual(a.value, (b as { value: unknown }).value);
}

/**
 * Structural equality of JSON values: arrays element by element, objects by their own
 * enumerable keys in any order, everything else with `===`.
 *
 * @param a - one value
 * @param b - the other
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
      return false;
  }
  return true;
}

function describe(d: CanonicalData): string {
  if (d.kind === "none") return "no data";
  if (d.kind === "bytes") return `bytes ${clip(d.base64)}`;
  return `JSON ${clip(JSON.stringify(d.value) ?? "undefined")}`;
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

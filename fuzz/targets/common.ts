/** What several binding targets share: which formats a decoder is given, limits, bodies. */
import type { EventFormat, ExtensionRegistry, JsonLimits } from "@posthorn/core";
import {
  allFormats,
  type Corpus,
  type FormatOptions,
  formatOf,
  type RegistryName,
  registryOf,
} from "../corpus.js";
import { arbitraryBytes, mutateBytes, utf8 } from "../mutate.js";
import type { Rng } from "../rng.js";
import { encodeSome } from "./formats.js";

/** The formats a binding decoder is given. */
export type FormatChoice = "all" | "json" | "none";

/** Decoding options a binding input carries. */
export interface BindingOptions {
  readonly formats: FormatChoice;
  readonly registry: RegistryName;
  /** The payload limit, when not the binding's default. */
  readonly maxPayloadBytes?: number | undefined;
  /** The JSON depth limit, when not the default. */
  readonly maxDepth?: number | undefined;
}

/** Options for a binding input: mostly every format and the defaults, sometimes tight limits. */
export function pickBindingOptions(rng: Rng): BindingOptions {
  const r = rng.int(10);
  return {
    formats: r < 8 ? "all" : r < 9 ? "json" : "none",
    registry: rng.chance(0.3) ? "typed" : "default",
    maxPayloadBytes: rng.chance(0.85)
      ? undefined
      : rng.pick([0, 1, 16, 1024, 1_048_576, 4_000_000]),
    maxDepth: rng.chance(0.9) ? undefined : rng.pick([0, 1, 2, 64, 1000]),
  };
}

/** The format options matching binding options (the same registry and depth limit). */
export function formatOptionsOf(o: BindingOptions): FormatOptions {
  return { registry: o.registry, maxDepth: o.maxDepth };
}

/** The formats a binding input's decoder is given. */
export function formatsOf(o: BindingOptions): EventFormat[] {
  if (o.formats === "none") return [];
  if (o.formats === "json") return [formatOf("json", formatOptionsOf(o))];
  return allFormats(formatOptionsOf(o));
}

/** The `json` limits option of the bindings. */
export function jsonLimitsOf(o: BindingOptions): { json?: JsonLimits } {
  return o.maxDepth === undefined ? {} : { json: { maxDepth: o.maxDepth } };
}

/** What every binding decoder is given: the formats, the registry, the payload and JSON limits. */
export function decodeOptionsOf(o: BindingOptions): {
  formats: EventFormat[];
  registry: ExtensionRegistry;
  maxPayloadBytes?: number;
  json?: JsonLimits;
} {
  return {
    formats: formatsOf(o),
    registry: registryOf(o.registry),
    ...(o.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: o.maxPayloadBytes }),
    ...jsonLimitsOf(o),
  };
}

/** A payload limit far above any input, for the second round of a round trip. */
export const ROUND_TRIP_LIMIT = 256 * 1024 * 1024;

/**
 * A mutated body: the same bytes mutated, another format's encoding, random bytes, or the body
 * as it was.
 */
export function mutateBody(rng: Rng, c: Corpus, body: Uint8Array): Uint8Array {
  const r = rng.int(10);
  if (r < 4) return body;
  if (r < 8) return mutateBytes(rng, body, { dictionary: BODY_TOKENS });
  if (r < 9) {
    const format = formatOf(rng.pick(["json", "avro", "avro-compact", "protobuf"] as const));
    return encodeSome(rng, c, (events) => format.encode(events[0] as never), false);
  }
  return arbitraryBytes(rng);
}

const BODY_TOKENS = [
  '"__proto__"',
  '{"__proto__":{"polluted":1}}',
  '"constructor"',
  "1e400",
  "[[[[[[[[",
  '"\\ud800"',
  "null",
  '"specversion":"1.0"',
  "{",
  "}",
].map(utf8);

/** A byte value as a string the way Node hands header values over: one character per byte. */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

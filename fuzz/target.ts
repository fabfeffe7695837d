/** What a fuzz target is, and how its inputs are shown in a report. */
import type { Rng } from "./rng.js";

/**
 * One fuzz target: a public decoder (or a few that read the same input) and how to make its
 * inputs. Inputs are plain data (objects, arrays, strings, numbers, `Uint8Array`s), so a report
 * can show them as JSON; `run` turns them into what the decoder takes (a `Headers`, a nats.js
 * message, a rhea message) itself.
 */
export interface Target<I = unknown> {
  /** The name `--target` takes. */
  readonly name: string;
  /** The public functions it calls, for the report and the docs. */
  readonly covers: readonly string[];
  /** Builds the corpus, starts servers; once per process, before the first input. */
  setup?(seed: number): Promise<void> | void;
  /** Stops what `setup` started. */
  teardown?(): Promise<void> | void;
  /** Makes one input; a pure function of the generator (and the seed `setup` was given). */
  generate(rng: Rng): I;
  /** Runs the decoders on the input and checks the oracle; throws a `Finding` when it is broken. */
  run(input: I): void | Promise<void>;
}

/**
 * An input as JSON: bytes as `{ "$hex": ... }` (with the text when it is printable UTF-8),
 * `undefined`, bigints, dates, symbols and functions tagged likewise; members named `__proto__`
 * kept as members.
 *
 * @param value - the input
 * @param limit - the most hex digits shown per byte array (the rest is counted)
 */
export function toRepro(value: unknown, limit = Number.POSITIVE_INFINITY, depth = 0): unknown {
  if (depth > 40) return "$too-deep";
  if (value === undefined) return { $undefined: true };
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (typeof value === "symbol") return { $symbol: value.description ?? "" };
  if (typeof value === "function") return { $function: value.name };
  if (typeof value === "number" && !Number.isFinite(value)) return { $number: String(value) };
  if (typeof value === "number" && Object.is(value, -0)) return { $number: "-0" };
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Uint8Array) return bytesRepro(value, limit);
  if (value instanceof ArrayBuffer)
    return { $arrayBuffer: bytesRepro(new Uint8Array(value), limit) };
  if (value instanceof Date) {
    return { $date: Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString() };
  }
  if (Array.isArray(value)) return value.map((v) => toRepro(v, limit, depth + 1));
  const out: Record<string, unknown> = {};
  if (Object.getPrototypeOf(value) === null) out.$nullPrototype = true;
  for (const key of Object.keys(value)) {
    Object.defineProperty(out, key, {
      value: toRepro((value as Record<string, unknown>)[key], limit, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

const strict = new TextDecoder("utf-8", { fatal: true });

function bytesRepro(bytes: Uint8Array, limit: number): unknown {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
  const out: Record<string, unknown> = {
    $hex: hex.length > limit ? `${hex.slice(0, limit)}...` : hex,
    length: bytes.length,
  };
  if (bytes.length <= 4096) {
    try {
      const text = strict.decode(bytes);
      if (!/[\u0000-\u0008\u000e-\u001f]/.test(text)) out.text = text;
    } catch {
      // not UTF-8: the hex says it all
    }
  }
  return out;
}

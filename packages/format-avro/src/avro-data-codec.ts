import {
  asDecodeError,
  checkCountOption,
  type DataCodec,
  inputBytes,
  invalidEvent,
  isAbsoluteUri,
  malformed,
  utf8Decode,
} from "@posthorn/core";
import avsc from "avsc";
import { AvroReader } from "./avro-io.js";

/** Content type of an Avro-encoded payload (a single datum, no container or registry header). */
export const AVRO_DATA_CONTENT_TYPE = "application/avro";

/**
 * An Avro schema: its JSON text (or a bare primitive type name such as `string`), its parsed JSON
 * (an object, or an array for a union), or a type already compiled by `avsc`.
 */
export type AvroSchemaDefinition = string | object;

/** Options for {@link avroDataCodec}. */
export interface AvroDataCodecOptions {
  /** The absolute URI naming the schema; events carry it as `dataschema`. */
  dataschema?: string;
  /**
   * Most items an array or map of zero-byte items (nulls, empty records) may claim, since their
   * count is not bounded by the input's size: a whole number, 0 or more, or `Infinity`; anything
   * else is `NotSupported` when the codec is made. Default 65536.
   */
  maxZeroSizeItems?: number;
  /**
   * Deepest nesting of records, arrays, maps and unions accepted when decoding: a whole number, 0
   * or more, or `Infinity`; anything else is `NotSupported` when the codec is made. Default 256.
   */
  maxDepth?: number;
}

interface AvroTypeNode {
  readonly typeName: string;
  readonly itemsType?: AvroTypeNode;
  readonly valuesType?: AvroTypeNode;
  readonly types?: readonly AvroTypeNode[];
  readonly fields?: readonly { readonly name: string; readonly type: AvroTypeNode }[];
  readonly symbols?: readonly string[];
  readonly size?: number;
  readonly underlyingType?: AvroTypeNode;
}

interface CompiledType extends AvroTypeNode {
  toBuffer(value: unknown): Uint8Array;
  fromBuffer(buffer: Uint8Array): unknown;
}

type BufferCtor = { from(b: ArrayBufferLike, offset: number, length: number): Uint8Array };
const NodeBuffer = (globalThis as { Buffer?: BufferCtor }).Buffer;

/**
 * A data codec for Avro payloads in binary mode (content type `application/avro`), the way Kafka
 * users send records: `encode` writes a value with the user's schema, `decode` reads it back.
 * Input is first walked against the schema with every length and count checked against the
 * remaining bytes, so truncated or hostile bytes give `MalformedInput` and never a hang or a huge
 * allocation, and map keys named `__proto__` and invalid UTF-8 in strings and keys are refused
 * (`avsc` would read replacement characters). The payload is a bare Avro datum: no
 * object-container header and no schema-registry prefix.
 *
 * @param schema - the schema, as JSON text, parsed JSON, or an `avsc` type
 * @param options - the `dataschema` URI and decoding limits
 * @throws {@link PosthornError} `InvalidEvent` when the schema or `dataschema` is not valid, or a
 *   record of the schema has a field named `__proto__` (no JavaScript object holds it as a field);
 *   `NotSupported` for a `maxZeroSizeItems` or `maxDepth` that is not a whole number of 0 or more
 *   (or `Infinity`): `NaN` compared false and turned the limit off
 * @example
 * ```ts
 * const orders = avroDataCodec<Order>(orderSchema, { dataschema: "https://example.com/order.avsc" });
 * const event = CloudEvent.create({ type: "order.created", source: "/orders",
 *   datacontenttype: orders.contentType, dataschema: orders.dataschema, data: orders.encode(order) });
 * const order = orders.decode(event.data as Uint8Array);
 * ```
 */
export function avroDataCodec<T = unknown>(
  schema: AvroSchemaDefinition,
  options: AvroDataCodecOptions = {},
): DataCodec<T> {
  let type: CompiledType;
  try {
    const parsed = typeof schema === "string" ? parseSchemaText(schema) : schema;
    type = (avsc.Type.isType(parsed)
      ? parsed
      : avsc.Type.forSchema(parsed as never)) as unknown as CompiledType;
  } catch (err) {
    throw invalidEvent(`not a valid Avro schema: ${(err as Error).message}`, "dataschema", err);
  }
  const protoField = fieldNamedProto(type, new Set());
  if (protoField !== undefined) {
    // avsc's record constructor assigns each field to `this`: a field named __proto__ replaced
    // the decoded record's prototype with the field's value, and the field itself was lost.
    throw invalidEvent(
      `not a usable Avro schema: record ${protoField} has a field named __proto__, which a JavaScript object cannot hold as a field`,
      "dataschema",
    );
  }
  checkCountOption("maxZeroSizeItems", options.maxZeroSizeItems, 0);
  checkCountOption("maxDepth", options.maxDepth, 0);
  const dataschema = options.dataschema;
  if (dataschema !== undefined && !isAbsoluteUri(dataschema)) {
    throw invalidEvent("dataschema must be an absolute URI", "dataschema");
  }
  const limits: WalkLimits = {
    maxZeroSizeItems: options.maxZeroSizeItems ?? 65536,
    maxDepth: options.maxDepth ?? 256,
  };
  const minSizes = new Map<AvroTypeNode, number>();
  return {
    contentType: AVRO_DATA_CONTENT_TYPE,
    ...(dataschema === undefined ? {} : { dataschema }),
    encode(value: T): Uint8Array {
      try {
        const out = type.toBuffer(value);
        return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      } catch (err) {
        throw invalidEvent(
          `value does not match the Avro schema: ${(err as Error).message}`,
          "data",
          err,
        );
      }
    },
    decode(input: Uint8Array): T {
      try {
        const bytes = inputBytes(input, "avroDataCodec decode");
        const reader = new AvroReader(bytes);
        walk(type, reader, limits, minSizes, 0, { zeroSizeItems: 0 });
        reader.expectEnd("Avro data");
        const buffer = NodeBuffer
          ? NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
          : bytes;
        return type.fromBuffer(buffer) as T;
      } catch (err) {
        throw asDecodeError(err, "Avro data");
      }
    },
  };
}

/** The name of a record (reached from `t`) that has a field named `__proto__`, if any. */
function fieldNamedProto(t: AvroTypeNode, seen: Set<AvroTypeNode>): string | undefined {
  if (seen.has(t)) return undefined;
  seen.add(t);
  for (const field of t.fields ?? []) {
    if (field.name === "__proto__") return (t as { name?: string }).name ?? "(anonymous)";
  }
  const inner = [
    ...(t.fields ?? []).map((f) => f.type),
    ...(t.types ?? []),
    t.itemsType,
    t.valuesType,
    t.underlyingType,
  ];
  for (const child of inner) {
    const found = child === undefined ? undefined : fieldNamedProto(child, seen);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Schema JSON text, or a bare type name such as `string` (not JSON, but a valid schema). */
function parseSchemaText(text: string): unknown {
  const t = text.trim();
  return t.startsWith("{") || t.startsWith("[") || t.startsWith('"') ? JSON.parse(t) : t;
}

interface WalkLimits {
  readonly maxZeroSizeItems: number;
  readonly maxDepth: number;
}

/** The fewest bytes a value of the type takes (recursive types count 0 for the recursion). */
function minSize(t: AvroTypeNode, memo: Map<AvroTypeNode, number>): number {
  const known = memo.get(t);
  if (known !== undefined) return known;
  memo.set(t, 0);
  let size: number;
  switch (t.typeName) {
    case "null":
      size = 0;
      break;
    case "float":
      size = 4;
      break;
    case "double":
      size = 8;
      break;
    case "fixed":
      size = t.size ?? 0;
      break;
    case "record":
    case "error":
      size = 0;
      for (const f of t.fields ?? []) size += minSize(f.type, memo);
      break;
    default:
      if (t.typeName.startsWith("logical:") && t.underlyingType) {
        size = minSize(t.underlyingType, memo);
      } else if (t.typeName.startsWith("union")) {
        size = 1;
      } else {
        // boolean, int, long, bytes, string, enum, array, map: at least one byte
        size = 1;
      }
  }
  memo.set(t, size);
  return size;
}

const PROTO_KEY = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"

function walk(
  t: AvroTypeNode,
  r: AvroReader,
  limits: WalkLimits,
  memo: Map<AvroTypeNode, number>,
  depth: number,
  budget: { zeroSizeItems: number },
): void {
  if (depth > limits.maxDepth) {
    throw malformed(`Avro data is nested deeper than ${limits.maxDepth} levels`);
  }
  switch (t.typeName) {
    case "null":
      return;
    case "boolean":
      r.boolean();
      return;
    case "int":
      r.int();
      return;
    case "long":
      r.long();
      return;
    case "float":
      skip(r, 4);
      return;
    case "double":
      skip(r, 8);
      return;
    case "bytes":
      skip(r, r.length());
      return;
    case "string":
      checkUtf8(r, r.length());
      return;
    case "fixed":
      skip(r, t.size ?? 0);
      return;
    case "enum": {
      const i = r.long();
      if (i < 0 || i >= (t.symbols?.length ?? 0))
        throw malformed(`Avro enum index ${i} is out of range`);
      return;
    }
    case "array":
    case "map": {
      const item = (t.typeName === "array" ? t.itemsType : t.valuesType) as AvroTypeNode;
      const isMap = t.typeName === "map";
      const itemSize = minSize(item, memo) + (isMap ? 1 : 0);
      for (let n = r.blockCount(Math.max(itemSize, 1)); ; n = r.blockCount(Math.max(itemSize, 1))) {
        if (n === 0) return;
        if (itemSize === 0) {
          budget.zeroSizeItems += n;
          if (budget.zeroSizeItems > limits.maxZeroSizeItems) {
            throw malformed(`Avro data claims more than ${limits.maxZeroSizeItems} empty items`);
          }
        }
        for (let i = 0; i < n; i++) {
          if (isMap) checkKey(r);
          walk(item, r, limits, memo, depth + 1, budget);
        }
      }
    }
    case "record":
    case "error":
      for (const f of t.fields ?? []) walk(f.type, r, limits, memo, depth + 1, budget);
      return;
    default: {
      if (t.typeName.startsWith("logical:") && t.underlyingType) {
        walk(t.underlyingType, r, limits, memo, depth, budget);
        return;
      }
      if (t.typeName.startsWith("union") && t.types) {
        const branch = t.types[r.branch(t.types.length)] as AvroTypeNode;
        walk(branch, r, limits, memo, depth + 1, budget);
        return;
      }
      throw malformed(`Avro type ${t.typeName} is not supported`);
    }
  }
}

/**
 * Skips a string of `n` bytes, refusing invalid UTF-8: avsc decodes it with replacement
 * characters, so a corrupted string silently became another one.
 */
function checkUtf8(r: AvroReader, n: number): void {
  const end = r.pos + n;
  for (let i = r.pos; i < end; i++) {
    if ((r.buf[i] as number) >= 0x80) {
      utf8Decode(r.buf.subarray(r.pos, end), "Avro string");
      break;
    }
  }
  r.pos = end;
}

function skip(r: AvroReader, n: number): void {
  if (n > r.remaining) throw malformed("Avro data is truncated");
  r.pos += n;
}

function checkKey(r: AvroReader): void {
  const n = r.length();
  if (n === PROTO_KEY.length) {
    let same = true;
    for (let i = 0; i < n; i++) if (r.buf[r.pos + i] !== PROTO_KEY[i]) same = false;
    if (same) throw malformed("Avro map key __proto__ is refused");
  }
  checkUtf8(r, n);
}

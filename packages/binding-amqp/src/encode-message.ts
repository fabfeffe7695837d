import {
  binaryContentType,
  CloudEvent,
  type CloudEventLike,
  extensions as defaultRegistry,
  type ExtensionRegistry,
  encodeData,
  formatWithRegistry,
  invalidEvent,
  isBytes,
  isCloudEvent,
  isInteger,
  PosthornError,
  prefixedName,
} from "@posthorn/core";
import { AMQP_PREFIX } from "./amqp-message.js";
import type { BufferPool } from "./buffer-pool.js";
import { checkBinaryOptions, unknownMode } from "./options.js";
import { type ToAmqpMessageOptions, timestampMillis } from "./to-message.js";

/** Options for {@link encodeAmqpMessage}: those of `toAmqpMessage`, without the rhea codec. */
export type EncodeAmqpMessageOptions = Omit<ToAmqpMessageOptions, "codec">;

// AMQP 1.0 type codes (amqp-core-types 1.6) and section descriptors (amqp-core-messaging 3.2).
const NULL = 0x40;
const TRUE = 0x41;
const FALSE = 0x42;
const SMALLINT = 0x54;
const INT = 0x71;
const SMALLLONG = 0x55;
const LONG = 0x81;
const TIMESTAMP = 0x83;
const VBIN8 = 0xa0;
export const VBIN32 = 0xb0;
export const STR8 = 0xa1;
export const STR32 = 0xb1;
export const SYM8 = 0xa3;
export const SYM32 = 0xb3;
const LIST32 = 0xd0;
export const MAP32 = 0xd1;
const SMALLULONG = 0x53;
const LIST8 = 0xc0;
const HEADER = 0x70;
const PROPERTIES = 0x73;
const APPLICATION_PROPERTIES = 0x74;
export const DATA = 0x75;
export const MESSAGE_ANNOTATIONS = 0x72;
const AMQP_VALUE = 0x77;

/** A growable byte buffer for one message, taken from a pool when one is given. */
export class Writer {
  buffer: Buffer;
  /** The buffer when it came from the pool (the publisher hands it back after settlement). */
  pooled: Buffer | undefined;
  at = 0;

  constructor(
    size: number,
    readonly pool?: BufferPool,
  ) {
    this.pooled = pool?.take(size);
    this.buffer = this.pooled ?? Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.at + n <= this.buffer.length) return;
    const size = Math.max(this.buffer.length * 2, this.at + n);
    const pooled = this.pool?.take(size);
    const next = pooled ?? Buffer.allocUnsafe(size);
    this.buffer.copy(next, 0, 0, this.at);
    // Nothing has seen the old buffer but this writer.
    if (this.pooled !== undefined) this.pool?.give(this.pooled);
    this.pooled = pooled;
    this.buffer = next;
  }

  /** Bytes as they are. */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.at);
    this.at += bytes.length;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buffer[this.at++] = b;
  }

  uint32(n: number): void {
    this.ensure(4);
    this.buffer.writeUInt32BE(n, this.at);
    this.at += 4;
  }

  descriptor(code: number): void {
    this.ensure(3);
    this.buffer[this.at++] = 0x00;
    this.buffer[this.at++] = SMALLULONG;
    this.buffer[this.at++] = code;
  }

  /** A string, symbol or binary: the 8-bit-length form when it fits. */
  variable(small: number, large: number, text: string | undefined, bytes?: Uint8Array): void {
    if (text !== undefined && text.length <= 64 && this.ascii(small, text)) return;
    const length = text === undefined ? (bytes as Uint8Array).length : Buffer.byteLength(text);
    this.ensure(length + 5);
    if (length <= 255) {
      this.buffer[this.at++] = small;
      this.buffer[this.at++] = length;
    } else {
      this.buffer[this.at++] = large;
      this.buffer.writeUInt32BE(length, this.at);
      this.at += 4;
    }
    if (text === undefined) this.buffer.set(bytes as Uint8Array, this.at);
    else this.buffer.write(text, this.at, length, "utf8");
    this.at += length;
  }

  /**
   * Writes a short string in the 8-bit-length form when it is all ASCII (then its UTF-8 bytes are
   * its char codes), copying in JavaScript: for the short names and values of event attributes
   * that is several times cheaper than measuring and writing through the native UTF-8 encoder.
   * Returns false, having written nothing, when the text holds a non-ASCII character.
   */
  ascii(code: number, text: string): boolean {
    const n = text.length;
    this.ensure(n + 2);
    const buffer = this.buffer;
    const start = this.at + 2;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) return false;
      buffer[start + i] = c;
    }
    buffer[this.at] = code;
    buffer[this.at + 1] = n;
    this.at = start + n;
    return true;
  }

  integer(n: number, asInt: boolean): void {
    this.ensure(9);
    if (n >= -128 && n <= 127) {
      this.buffer[this.at++] = asInt ? SMALLINT : SMALLLONG;
      this.buffer.writeInt8(n, this.at++);
    } else if (asInt) {
      this.buffer[this.at++] = INT;
      this.buffer.writeInt32BE(n, this.at);
      this.at += 4;
    } else {
      this.buffer[this.at++] = LONG;
      this.buffer.writeBigInt64BE(BigInt(n), this.at);
      this.at += 8;
    }
  }

  timestamp(ms: number): void {
    this.ensure(9);
    this.buffer[this.at++] = TIMESTAMP;
    this.buffer.writeBigInt64BE(BigInt(ms), this.at);
    this.at += 8;
  }

  /** Starts a list32 or map32 and returns where its size goes. */
  open(code: number): number {
    this.ensure(9);
    this.buffer[this.at++] = code;
    const sizeAt = this.at;
    this.at += 8;
    return sizeAt;
  }

  /** Fills in the size and count of a compound opened at `sizeAt`. */
  close(sizeAt: number, count: number): void {
    this.buffer.writeUInt32BE(this.at - sizeAt - 4, sizeAt);
    this.buffer.writeUInt32BE(count, sizeAt + 4);
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.at);
  }
}

/**
 * Maps a CloudEvent straight to the bytes of an AMQP 1.0 bare message, as {@link toAmqpMessage}
 * maps it (same sections, same AMQP types), without going through a client library's generic
 * encoder: a `properties` section carrying `content-type`, `application-properties` with the
 * `cloudEvents:` attributes in binary mode, and one data section (an AMQP null value when the
 * event has no data). Send the bytes as a pre-encoded payload (rhea:
 * `sender.send(bytes, undefined, 0)`).
 *
 * @param input - the event; one that is not a Posthorn `CloudEvent` is validated first
 * @param options - mode (`binary` by default, or `structured`), format, prefix, Integer type
 *   and extension registry, as for {@link toAmqpMessage}
 * @returns the encoded bare message
 * @throws {@link PosthornError} as {@link toAmqpMessage} does
 */
export function encodeAmqpMessage(
  input: CloudEventLike,
  options: EncodeAmqpMessageOptions = {},
): Buffer {
  return encodeWithPool(input, options, undefined).bytes;
}

/**
 * {@link encodeAmqpMessage}, writing into a buffer from `pool` when the message is large enough
 * for one: `pooled` is that buffer (which `bytes` is a view of), to hand back once nothing reads
 * the bytes any more. With `durable` given, the message starts with a header section carrying
 * only that flag.
 *
 * @internal
 */
export function encodeWithPool(
  input: CloudEventLike,
  options: EncodeAmqpMessageOptions,
  pool: BufferPool | undefined,
  durable?: boolean,
): { bytes: Buffer; pooled: Buffer | undefined } {
  const event = isCloudEvent(input) ? input : CloudEvent.from(input);
  const mode = options.mode ?? "binary";
  if (mode === "structured") {
    const format = options.format;
    if (format === undefined) {
      throw new PosthornError("NotSupported", "structured mode needs an event format");
    }
    const body = formatWithRegistry(format, options.registry).encode(event);
    const w = new Writer(body.length + 64 + format.contentType.length, pool);
    if (durable !== undefined) writeHeader(w, durable);
    writeProperties(w, format.contentType);
    writeBody(w, body);
    return { bytes: w.bytes(), pooled: w.pooled };
  }
  if (mode !== "binary") throw unknownMode(mode);
  checkBinaryOptions(options);
  const prefix = options.prefix ?? AMQP_PREFIX;
  const asInt = options.integerType === "int";
  const registry = options.registry ?? defaultRegistry;
  const record = event as unknown as Record<string, unknown>;
  const data = record.data;
  const datacontenttype = record.datacontenttype as string | undefined;
  const bytes = encodeData(data, datacontenttype);
  const w = new Writer(512 + (bytes?.length ?? 0), pool);
  if (durable !== undefined) writeHeader(w, durable);
  const contentType = binaryContentType(data, datacontenttype);
  if (contentType !== undefined) writeProperties(w, contentType);
  w.descriptor(APPLICATION_PROPERTIES);
  const mapAt = w.open(MAP32);
  let count = 0;
  for (const name of Object.keys(record)) {
    if (name === "data" || name === "datacontenttype") continue;
    const value = record[name];
    if (value === undefined || value === null) continue;
    // 3.1.3.1 names, 3.1.3.2 values in their AMQP types.
    w.variable(STR8, STR32, prefixedName(prefix, name));
    writeValue(w, name, value, registry, asInt);
    count += 2;
  }
  w.close(mapAt, count);
  writeBody(w, bytes);
  return { bytes: w.bytes(), pooled: w.pooled };
}

// AMQP messaging 3.2.1: the header's first field, durable (false when absent, so a message
// without it is not kept across a broker restart); the other fields keep their defaults.
function writeHeader(w: Writer, durable: boolean): void {
  w.descriptor(HEADER);
  w.byte(LIST8);
  w.byte(2); // size: the count and one element
  w.byte(1); // count
  w.byte(durable ? TRUE : FALSE);
}

// 3.1.1 / 3.2.1: content-type is field 6 of the properties list; the fields before it are null.
function writeProperties(w: Writer, contentType: string): void {
  w.descriptor(PROPERTIES);
  const at = w.open(LIST32);
  for (let i = 0; i < 6; i++) w.byte(NULL);
  w.variable(SYM8, SYM32, contentType);
  w.close(at, 7);
}

// 3.1.2 / 3.2.2: the application data as one data section.
function writeBody(w: Writer, bytes: Uint8Array | undefined): void {
  if (bytes === undefined) {
    w.descriptor(AMQP_VALUE);
    w.byte(NULL);
    return;
  }
  w.descriptor(DATA);
  w.variable(VBIN8, VBIN32, undefined, bytes);
}

function writeValue(
  w: Writer,
  name: string,
  value: unknown,
  registry: ExtensionRegistry,
  asInt: boolean,
): void {
  switch (typeof value) {
    case "string": {
      const ms = registry.typeOf(name) === "Timestamp" ? timestampMillis(value) : undefined;
      if (ms === undefined) w.variable(STR8, STR32, value);
      else w.timestamp(ms);
      return;
    }
    case "boolean":
      w.byte(value ? TRUE : FALSE);
      return;
    case "number":
      if (!isInteger(value)) {
        throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
      }
      w.integer(value, asInt);
      return;
    default:
      if (isBytes(value)) {
        w.variable(VBIN8, VBIN32, undefined, value);
        return;
      }
      throw invalidEvent(
        `${name} has a value of type ${typeof value}, which no AMQP property type carries`,
        name,
      );
  }
}

/**
 * Primitive types of the Kafka wire protocol (big-endian, length-prefixed strings and arrays), as
 * described in the protocol guide's "Protocol Primitive Types" section. Only the non-flexible
 * encodings are implemented: the broker advertises versions that do not need compact strings or
 * tagged fields.
 */

/** A request body or frame that cannot be parsed; the broker closes the connection on it. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** Kafka API keys the test broker implements. */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  InitProducerId: 22,
  DeleteGroups: 42,
} as const;

/** Kafka error codes the test broker returns (protocol guide, "Error Codes"). */
export const ErrorCode = {
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  COORDINATOR_NOT_AVAILABLE: 15,
  INVALID_TOPIC_EXCEPTION: 17,
  RECORD_LIST_TOO_LARGE: 18,
  ILLEGAL_GENERATION: 22,
  INCONSISTENT_GROUP_PROTOCOL: 23,
  INVALID_GROUP_ID: 24,
  UNKNOWN_MEMBER_ID: 25,
  INVALID_SESSION_TIMEOUT: 26,
  REBALANCE_IN_PROGRESS: 27,
  UNSUPPORTED_VERSION: 35,
  TOPIC_ALREADY_EXISTS: 36,
  INVALID_PARTITIONS: 37,
  INVALID_REPLICATION_FACTOR: 38,
  INVALID_REQUEST: 42,
  UNSUPPORTED_FOR_MESSAGE_FORMAT: 43,
  OUT_OF_ORDER_SEQUENCE_NUMBER: 45,
  INVALID_PRODUCER_EPOCH: 47,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 53,
  UNSUPPORTED_COMPRESSION_TYPE: 76,
  NON_EMPTY_GROUP: 68,
  GROUP_ID_NOT_FOUND: 69,
  INVALID_RECORD: 87,
} as const;

/** Reads protocol primitives from a request body, with bounds checks that throw {@link ProtocolError}. */
export class Reader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.pos = start;
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.end - this.pos;
  }

  /** The current read position in the underlying buffer. */
  get offset(): number {
    return this.pos;
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.end) {
      throw new ProtocolError(
        `truncated body: need ${n} bytes at ${this.pos}, have ${this.remaining}`,
      );
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int8(): number {
    return this.buf.readInt8(this.need(1));
  }

  bool(): boolean {
    return this.int8() !== 0;
  }

  int16(): number {
    return this.buf.readInt16BE(this.need(2));
  }

  int32(): number {
    return this.buf.readInt32BE(this.need(4));
  }

  /** An int64 as a JS number (offsets, producer ids and timestamps here stay far below 2^53). */
  int64(): number {
    return Number(this.buf.readBigInt64BE(this.need(8)));
  }

  /**
   * An int64 exactly, for a value the broker hands back as it was sent (a committed offset): as a
   * number, one past 2^53 came back changed, and 2^63 - 1 read as 2^63, which no int64 holds.
   */
  int64Exact(): bigint {
    return this.buf.readBigInt64BE(this.need(8));
  }

  nullableString(): string | null {
    const len = this.int16();
    if (len < 0) return null;
    const at = this.need(len);
    return this.buf.toString("utf8", at, at + len);
  }

  string(): string {
    const s = this.nullableString();
    if (s === null) throw new ProtocolError("null where a string is required");
    return s;
  }

  /** A nullable byte array; the returned buffer is a view into the request frame. */
  nullableBytes(): Buffer | null {
    const len = this.int32();
    if (len < 0) return null;
    const at = this.need(len);
    return this.buf.subarray(at, at + len);
  }

  bytes(): Buffer {
    return this.nullableBytes() ?? Buffer.alloc(0);
  }

  /** A nullable array: `null` for length -1. Each element takes at least `minSize` bytes. */
  nullableArray<T>(read: (r: Reader) => T, minSize = 1): T[] | null {
    const count = this.int32();
    if (count < 0) return null;
    if (count * minSize > this.remaining) {
      throw new ProtocolError(`array of ${count} elements does not fit in ${this.remaining} bytes`);
    }
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(read(this));
    return out;
  }

  array<T>(read: (r: Reader) => T, minSize = 1): T[] {
    return this.nullableArray(read, minSize) ?? [];
  }
}

/** Builds a response body in a growing buffer. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private ensure(n: number): number {
    if (this.pos + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.pos + n) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, 0, this.pos);
      this.buf = next;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int8(v: number): this {
    const at = this.ensure(1);
    this.buf.writeInt8(v, at);
    return this;
  }

  bool(v: boolean): this {
    return this.int8(v ? 1 : 0);
  }

  int16(v: number): this {
    const at = this.ensure(2);
    this.buf.writeInt16BE(v, at);
    return this;
  }

  int32(v: number): this {
    const at = this.ensure(4);
    this.buf.writeInt32BE(v, at);
    return this;
  }

  /** An int64; a bigint is written exactly (wrapped to 64 bits, as Kafka's longs wrap). */
  int64(v: number | bigint): this {
    const at = this.ensure(8);
    this.buf.writeBigInt64BE(typeof v === "bigint" ? BigInt.asIntN(64, v) : BigInt(v), at);
    return this;
  }

  nullableString(v: string | null): this {
    if (v === null) return this.int16(-1);
    const len = Buffer.byteLength(v);
    this.int16(len);
    const at = this.ensure(len);
    this.buf.write(v, at, len, "utf8");
    return this;
  }

  string(v: string): this {
    return this.nullableString(v);
  }

  nullableBytes(v: Uint8Array | null): this {
    if (v === null) return this.int32(-1);
    this.int32(v.length);
    return this.raw(v);
  }

  raw(v: Uint8Array): this {
    const at = this.ensure(v.length);
    this.buf.set(v, at);
    return this;
  }

  array<T>(items: readonly T[], write: (w: Writer, item: T) => void): this {
    this.int32(items.length);
    for (const item of items) write(this, item);
    return this;
  }

  nullableArray<T>(items: readonly T[] | null, write: (w: Writer, item: T) => void): this {
    if (items === null) return this.int32(-1);
    return this.array(items, write);
  }

  /** The bytes written so far (a view, valid until the next write). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

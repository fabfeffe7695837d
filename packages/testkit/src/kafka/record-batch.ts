/**
 * Record batches (magic v2), the unit the broker stores and serves. Layout per the protocol guide's
 * "Record Batch" section:
 *
 * ```
 * baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 | crc uint32 |
 * attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64 |
 * producerId int64 | producerEpoch int16 | baseSequence int32 | records count int32 | records...
 * ```
 *
 * The CRC-32C covers everything from `attributes` to the end, so the broker may rewrite
 * `baseOffset` and `partitionLeaderEpoch` without touching it.
 */

import { crc32c } from "./crc32c.js";
import { ErrorCode } from "./protocol.js";

/** Size of the batch header up to and including the record count. */
export const BATCH_HEADER_SIZE = 61;
const LENGTH_OFFSET = 8;
const MAGIC_OFFSET = 16;
const CRC_OFFSET = 17;
const ATTRIBUTES_OFFSET = 21;
const LAST_OFFSET_DELTA_OFFSET = 23;
const BASE_TIMESTAMP_OFFSET = 27;
const MAX_TIMESTAMP_OFFSET = 35;
const PRODUCER_ID_OFFSET = 43;
const PRODUCER_EPOCH_OFFSET = 51;
const BASE_SEQUENCE_OFFSET = 53;
const RECORD_COUNT_OFFSET = 57;

/** A validated batch from a produce request, with the fields the broker needs. */
export interface IncomingBatch {
  /** A copy of the batch bytes, owned by the broker (base offset not yet assigned). */
  readonly bytes: Buffer;
  readonly recordCount: number;
  readonly lastOffsetDelta: number;
  readonly maxTimestamp: bigint;
  /**
   * Exactly as sent: read as a number, ids past 2^53 that differ (2^53 and 2^53 + 1) were one
   * producer, and the second one's first batch was taken for a retry of the first's and dropped.
   */
  readonly producerId: bigint;
  readonly producerEpoch: number;
  readonly baseSequence: number;
  readonly transactional: boolean;
}

/** Why a produce request's record set was refused: a Kafka error code and a reason for the log. */
export interface BatchError {
  readonly errorCode: number;
  readonly reason: string;
}

/**
 * Splits a produce request's record set into batches and validates each: size, magic 2, CRC-32C,
 * record count against the offset delta, known compression codec, and, for uncompressed batches,
 * that every record parses and fills its declared length exactly.
 */
export function parseBatches(records: Buffer): IncomingBatch[] | BatchError {
  const out: IncomingBatch[] = [];
  let pos = 0;
  if (records.length === 0)
    return { errorCode: ErrorCode.INVALID_RECORD, reason: "empty record set" };
  while (pos < records.length) {
    if (records.length - pos < BATCH_HEADER_SIZE) {
      return { errorCode: ErrorCode.CORRUPT_MESSAGE, reason: "truncated record batch header" };
    }
    const batchLength = records.readInt32BE(pos + LENGTH_OFFSET);
    const total = batchLength + 12;
    if (batchLength < BATCH_HEADER_SIZE - 12 || pos + total > records.length) {
      return { errorCode: ErrorCode.CORRUPT_MESSAGE, reason: `bad batch length ${batchLength}` };
    }
    const magic = records.readInt8(pos + MAGIC_OFFSET);
    if (magic !== 2) {
      return {
        errorCode: ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        reason: `record batch magic ${magic} (only magic 2 is supported)`,
      };
    }
    const stated = records.readUInt32BE(pos + CRC_OFFSET);
    const actual = crc32c(records, pos + ATTRIBUTES_OFFSET, pos + total);
    if (stated !== actual) {
      return {
        errorCode: ErrorCode.CORRUPT_MESSAGE,
        reason: `CRC-32C mismatch (stated ${stated.toString(16)}, computed ${actual.toString(16)})`,
      };
    }
    const attributes = records.readInt16BE(pos + ATTRIBUTES_OFFSET);
    const codec = attributes & 0x07;
    if (codec > 4) {
      return {
        errorCode: ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
        reason: `compression codec ${codec}`,
      };
    }
    if (attributes & 0x20) {
      return { errorCode: ErrorCode.INVALID_RECORD, reason: "control batches cannot be produced" };
    }
    const lastOffsetDelta = records.readInt32BE(pos + LAST_OFFSET_DELTA_OFFSET);
    const recordCount = records.readInt32BE(pos + RECORD_COUNT_OFFSET);
    if (recordCount <= 0 || lastOffsetDelta !== recordCount - 1) {
      return {
        errorCode: ErrorCode.INVALID_RECORD,
        reason: `record count ${recordCount} does not match last offset delta ${lastOffsetDelta}`,
      };
    }
    if (codec === 0) {
      const problem = checkRecords(records, pos + BATCH_HEADER_SIZE, pos + total, recordCount);
      if (problem) return { errorCode: ErrorCode.CORRUPT_MESSAGE, reason: problem };
    }
    const bytes = Buffer.from(records.subarray(pos, pos + total));
    out.push({
      bytes,
      recordCount,
      lastOffsetDelta,
      maxTimestamp: bytes.readBigInt64BE(MAX_TIMESTAMP_OFFSET),
      producerId: bytes.readBigInt64BE(PRODUCER_ID_OFFSET),
      producerEpoch: bytes.readInt16BE(PRODUCER_EPOCH_OFFSET),
      baseSequence: bytes.readInt32BE(BASE_SEQUENCE_OFFSET),
      transactional: (attributes & 0x10) !== 0,
    });
    pos += total;
  }
  return out;
}

/** Writes the offset the log assigned into a stored batch (outside the CRC-covered range). */
export function assignBaseOffset(bytes: Buffer, baseOffset: number): void {
  bytes.writeBigInt64BE(BigInt(baseOffset), 0);
  bytes.writeInt32BE(0, 12); // partition leader epoch of the single, never-changing leader
}

/** A zigzag varint cursor over `buf`, returning `undefined` past `end` or on overlong encodings. */
class VarintCursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  varint(): number | undefined {
    let result = 0;
    let factor = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) return undefined;
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * factor;
      if ((b & 0x80) === 0) return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
      factor *= 128;
    }
    return undefined;
  }

  /** A zigzag varlong exactly (a record's timestamp delta may use all 64 bits). */
  varlong(): bigint | undefined {
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) return undefined;
      const b = this.buf[this.pos++] as number;
      result |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return BigInt.asIntN(64, (result >> 1n) ^ -(result & 1n));
    }
    return undefined;
  }

  skip(n: number): boolean {
    if (n < 0 || this.pos + n > this.end) return false;
    this.pos += n;
    return true;
  }
}

/** Returns a reason when the uncompressed records in `[start, end)` are malformed, else undefined. */
function checkRecords(buf: Buffer, start: number, end: number, count: number): string | undefined {
  const c = new VarintCursor(buf, start, end);
  for (let i = 0; i < count; i++) {
    const length = c.varint();
    if (length === undefined || length <= 0 || c.pos + length > end)
      return `record ${i}: bad length`;
    const recordEnd = c.pos + length;
    const r = new VarintCursor(buf, c.pos, recordEnd);
    if (!r.skip(1)) return `record ${i}: truncated`;
    if (r.varint() === undefined) return `record ${i}: bad timestamp delta`;
    const offsetDelta = r.varint();
    if (offsetDelta !== i) return `record ${i}: offset delta ${offsetDelta}`;
    const keyLen = r.varint();
    if (keyLen === undefined || keyLen < -1 || (keyLen > 0 && !r.skip(keyLen))) {
      return `record ${i}: bad key`;
    }
    const valueLen = r.varint();
    if (valueLen === undefined || valueLen < -1 || (valueLen > 0 && !r.skip(valueLen))) {
      return `record ${i}: bad value`;
    }
    const headers = r.varint();
    if (headers === undefined || headers < 0) return `record ${i}: bad header count`;
    for (let h = 0; h < headers; h++) {
      const hk = r.varint();
      if (hk === undefined || hk < 0 || !r.skip(hk)) return `record ${i}: bad header key`;
      const hv = r.varint();
      if (hv === undefined || hv < -1 || (hv > 0 && !r.skip(hv)))
        return `record ${i}: bad header value`;
    }
    if (r.pos !== recordEnd) return `record ${i}: ${recordEnd - r.pos} stray bytes`;
    c.pos = recordEnd;
  }
  if (c.pos !== end) return `${end - c.pos} bytes after the last record`;
  return undefined;
}

/**
 * The offset of the first record in a stored batch whose timestamp is at least `timestamp`, or
 * undefined. Uncompressed batches are searched record by record; compressed ones answer with their
 * base offset when their max timestamp qualifies. Timestamps are compared and returned exactly
 * (bigints): read as a number, one near 2^63 became 2^63, which ListOffsets could not write, and
 * the connection that asked was closed; and a record stamped 2^53 was found for 2^53 + 1.
 */
export function offsetForTimestamp(
  bytes: Buffer,
  timestamp: bigint,
): { offset: number; timestamp: bigint } | undefined {
  const baseOffset = Number(bytes.readBigInt64BE(0));
  const maxTimestamp = bytes.readBigInt64BE(MAX_TIMESTAMP_OFFSET);
  if (maxTimestamp < timestamp) return undefined;
  const attributes = bytes.readInt16BE(ATTRIBUTES_OFFSET);
  if ((attributes & 0x07) !== 0) return { offset: baseOffset, timestamp: maxTimestamp };
  const base = bytes.readBigInt64BE(BASE_TIMESTAMP_OFFSET);
  const count = bytes.readInt32BE(RECORD_COUNT_OFFSET);
  const c = new VarintCursor(bytes, BATCH_HEADER_SIZE, bytes.length);
  for (let i = 0; i < count; i++) {
    const length = c.varint() ?? 0;
    const recordEnd = c.pos + length;
    const r = new VarintCursor(bytes, c.pos + 1, recordEnd);
    const delta = r.varlong() ?? 0n;
    const offsetDelta = r.varint() ?? i;
    // The delta is a varlong: the sum wraps as Kafka's long arithmetic does.
    const recordTimestamp = BigInt.asIntN(64, base + delta);
    if (recordTimestamp >= timestamp) {
      return { offset: baseOffset + offsetDelta, timestamp: recordTimestamp };
    }
    c.pos = recordEnd;
  }
  return { offset: baseOffset, timestamp: maxTimestamp };
}

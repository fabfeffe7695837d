/**
 * The in-memory log of one partition: stored record batches with broker-assigned offsets, the
 * idempotent producer state, and the long-poll waiters woken on append.
 */

import { ErrorCode } from "./protocol.js";
import { assignBaseOffset, type IncomingBatch, offsetForTimestamp } from "./record-batch.js";

interface StoredBatch {
  readonly baseOffset: number;
  readonly lastOffset: number;
  readonly bytes: Buffer;
}

interface ProducerState {
  epoch: number;
  lastSequence: number;
  /** The last few batches, to answer retries of an already-appended batch (Kafka keeps 5). */
  readonly recent: { firstSequence: number; lastSequence: number; baseOffset: number }[];
}

const MAX_RECENT = 5;
const INT32_MAX = 0x7fffffff;

function nextSequence(seq: number): number {
  return seq === INT32_MAX ? 0 : seq + 1;
}

function lastSequenceOf(batch: IncomingBatch): number {
  const last = batch.baseSequence + batch.lastOffsetDelta;
  return last > INT32_MAX ? last - INT32_MAX - 1 : last;
}

/** Result of appending a batch: an error code, and the base offset it got (or had, for a duplicate). */
export interface AppendResult {
  readonly errorCode: number;
  readonly baseOffset: number;
  readonly reason?: string;
}

/** One partition's log. */
export class PartitionLog {
  private readonly batches: StoredBatch[] = [];
  private readonly producers = new Map<number, ProducerState>();
  private readonly waiters = new Set<() => void>();
  /** The next offset to assign; equals the high watermark (there are no followers). */
  highWatermark = 0;
  readonly logStartOffset = 0;

  /**
   * Appends a validated batch. Idempotent batches (producer id >= 0) must continue the producer's
   * sequence in this partition: a retry of one of the last five batches is answered with its
   * original offset and not stored again, a gap gives OUT_OF_ORDER_SEQUENCE_NUMBER, an older
   * epoch INVALID_PRODUCER_EPOCH.
   */
  append(batch: IncomingBatch): AppendResult {
    if (batch.producerId >= 0) {
      const check = this.checkSequence(batch);
      if (check) return check;
    }
    const baseOffset = this.highWatermark;
    assignBaseOffset(batch.bytes, baseOffset);
    this.batches.push({
      baseOffset,
      lastOffset: baseOffset + batch.lastOffsetDelta,
      bytes: batch.bytes,
    });
    this.highWatermark = baseOffset + batch.lastOffsetDelta + 1;
    if (batch.producerId >= 0) this.recordSequence(batch, baseOffset);
    this.wake();
    return { errorCode: ErrorCode.NONE, baseOffset };
  }

  private checkSequence(batch: IncomingBatch): AppendResult | undefined {
    const state = this.producers.get(batch.producerId);
    const fail = (errorCode: number, reason: string): AppendResult => ({
      errorCode,
      baseOffset: -1,
      reason,
    });
    if (!state || batch.producerEpoch > state.epoch) {
      if (batch.baseSequence !== 0) {
        return fail(
          ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
          `producer ${batch.producerId} epoch ${batch.producerEpoch} must start at sequence 0, got ${batch.baseSequence}`,
        );
      }
      return undefined;
    }
    if (batch.producerEpoch < state.epoch) {
      return fail(
        ErrorCode.INVALID_PRODUCER_EPOCH,
        `producer ${batch.producerId} epoch ${batch.producerEpoch} is older than ${state.epoch}`,
      );
    }
    const last = lastSequenceOf(batch);
    const dup = state.recent.find(
      (r) => r.firstSequence === batch.baseSequence && r.lastSequence === last,
    );
    if (dup) return { errorCode: ErrorCode.NONE, baseOffset: dup.baseOffset, reason: "duplicate" };
    if (batch.baseSequence !== nextSequence(state.lastSequence)) {
      return fail(
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        `producer ${batch.producerId}: expected sequence ${nextSequence(state.lastSequence)}, got ${batch.baseSequence}`,
      );
    }
    return undefined;
  }

  private recordSequence(batch: IncomingBatch, baseOffset: number): void {
    let state = this.producers.get(batch.producerId);
    if (!state || batch.producerEpoch > state.epoch) {
      state = { epoch: batch.producerEpoch, lastSequence: -1, recent: [] };
      this.producers.set(batch.producerId, state);
    }
    state.lastSequence = lastSequenceOf(batch);
    state.recent.push({
      firstSequence: batch.baseSequence,
      lastSequence: state.lastSequence,
      baseOffset,
    });
    if (state.recent.length > MAX_RECENT) state.recent.shift();
  }

  /** Index of the first batch whose last offset is at or after `offset`. */
  private indexFor(offset: number): number {
    let lo = 0;
    let hi = this.batches.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.batches[mid] as StoredBatch).lastOffset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Batches from `offset` on, whole (the first one may start before `offset`; clients skip the
   * records before it), up to `maxBytes`, but always at least one batch so a large batch cannot
   * stall a consumer.
   */
  read(offset: number, maxBytes: number, alwaysOne: boolean): { chunks: Buffer[]; size: number } {
    const chunks: Buffer[] = [];
    let size = 0;
    for (let i = this.indexFor(offset); i < this.batches.length; i++) {
      const b = (this.batches[i] as StoredBatch).bytes;
      if (size + b.length > maxBytes && (size > 0 || !alwaysOne)) break;
      chunks.push(b);
      size += b.length;
    }
    return { chunks, size };
  }

  /** Bytes available from `offset` on (stops counting once `atLeast` is reached). */
  available(offset: number, atLeast: number): number {
    let size = 0;
    for (let i = this.indexFor(offset); i < this.batches.length && size < atLeast; i++) {
      size += (this.batches[i] as StoredBatch).bytes.length;
    }
    return size;
  }

  /** ListOffsets: the first offset whose record timestamp is at least `timestamp`. */
  offsetForTimestamp(timestamp: number): { offset: number; timestamp: bigint } | undefined {
    for (const b of this.batches) {
      const found = offsetForTimestamp(b.bytes, timestamp);
      if (found) return found;
    }
    return undefined;
  }

  /** Registers a callback for the next append; returns its removal. */
  onAppend(wake: () => void): () => void {
    this.waiters.add(wake);
    return () => this.waiters.delete(wake);
  }

  /** Wakes every waiter (on append, or when the partition goes away). */
  wake(): void {
    if (this.waiters.size === 0) return;
    const all = [...this.waiters];
    this.waiters.clear();
    for (const w of all) w();
  }
}

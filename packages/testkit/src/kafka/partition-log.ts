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
  private readonly producers = new Map<bigint, ProducerState>();
  private readonly waiters = new Set<() => void>();
  /** The next offset to assign; equals the high watermark (there are no followers). */
  highWatermark = 0;
  readonly logStartOffset = 0;

  /**
   * Appends the validated batches of one produce request for this partition, all or none: every
   * batch is checked first, its sequence against the producer's state as the batches before it
   * leave it, and a failing one leaves the log untouched. Idempotent batches (producer id >= 0)
   * must continue the producer's sequence in this partition: a retry of one of the last five
   * batches is answered with its original offset and not stored again, a gap gives
   * OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH. The result carries the
   * first batch's base offset.
   */
  append(batches: readonly IncomingBatch[]): AppendResult {
    // Producer states as the batches checked so far leave them, copied on first use: appending
    // batch by batch stored the ones before a failing batch that was still refused.
    const planned = new Map<bigint, ProducerState | undefined>();
    const plan: { batch: IncomingBatch; baseOffset: number; duplicate: boolean }[] = [];
    let next = this.highWatermark;
    for (const batch of batches) {
      if (batch.producerId < 0n) {
        plan.push({ batch, baseOffset: next, duplicate: false });
        next += batch.lastOffsetDelta + 1;
        continue;
      }
      if (!planned.has(batch.producerId)) {
        const state = this.producers.get(batch.producerId);
        planned.set(
          batch.producerId,
          state && {
            epoch: state.epoch,
            lastSequence: state.lastSequence,
            recent: [...state.recent],
          },
        );
      }
      const state = planned.get(batch.producerId);
      const check = checkSequence(batch, state);
      if (check && check.errorCode !== ErrorCode.NONE) return check;
      if (check) {
        plan.push({ batch, baseOffset: check.baseOffset, duplicate: true });
        continue;
      }
      planned.set(batch.producerId, recordSequence(batch, state, next));
      plan.push({ batch, baseOffset: next, duplicate: false });
      next += batch.lastOffsetDelta + 1;
    }
    let appended = false;
    for (const { batch, baseOffset, duplicate } of plan) {
      if (duplicate) continue;
      assignBaseOffset(batch.bytes, baseOffset);
      this.batches.push({
        baseOffset,
        lastOffset: baseOffset + batch.lastOffsetDelta,
        bytes: batch.bytes,
      });
      appended = true;
    }
    for (const [id, state] of planned) if (state) this.producers.set(id, state);
    this.highWatermark = next;
    if (appended) this.wake();
    const first = plan[0];
    if (!first) return { errorCode: ErrorCode.NONE, baseOffset: -1 };
    return {
      errorCode: ErrorCode.NONE,
      baseOffset: first.baseOffset,
      ...(plan.every((p) => p.duplicate) ? { reason: "duplicate" } : {}),
    };
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
  offsetForTimestamp(timestamp: bigint): { offset: number; timestamp: bigint } | undefined {
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

/**
 * Checks an idempotent batch against its producer's state: undefined when it continues the
 * sequence, NONE with the original offset for a retry of a recent batch, else the error.
 */
function checkSequence(
  batch: IncomingBatch,
  state: ProducerState | undefined,
): AppendResult | undefined {
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

/** The producer state after `batch` is stored at `baseOffset` (a new one for a new epoch). */
function recordSequence(
  batch: IncomingBatch,
  state: ProducerState | undefined,
  baseOffset: number,
): ProducerState {
  const next =
    !state || batch.producerEpoch > state.epoch
      ? { epoch: batch.producerEpoch, lastSequence: -1, recent: [] }
      : state;
  next.lastSequence = lastSequenceOf(batch);
  next.recent.push({
    firstSequence: batch.baseSequence,
    lastSequence: next.lastSequence,
    baseOffset,
  });
  if (next.recent.length > MAX_RECENT) next.recent.shift();
  return next;
}

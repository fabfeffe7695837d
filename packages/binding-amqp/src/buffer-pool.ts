/**
 * Encoding buffers for large messages, handed back once the broker has settled the message that
 * was sent from them, and reused.
 *
 * Node serves `Buffer.allocUnsafe` below 4 KiB from a shared slab; above that every message is a
 * fresh allocation outside the JavaScript heap, and V8 answers that external memory with full
 * collections. With 64 KiB events the publisher's side of an end-to-end run did 49-55 full
 * collections where a publisher of pre-encoded bytes did 40.
 *
 * A buffer comes back only through {@link BufferPool.give}, which the publisher calls when the
 * peer settled the transfer: rhea has written the frame by then (it keeps a reference to the
 * bytes until it writes them, on a later tick). A publish that fails any other way (timeout,
 * lost link) leaves its buffer to the garbage collector.
 */
export class BufferPool {
  readonly #free: Buffer[] = [];
  #bytes = 0;

  /**
   * @param maxBytes - the most the free buffers may add up to; past it a returned one is dropped
   * @param minSize - requests smaller than this are not served (Node's shared slab serves them)
   */
  constructor(
    readonly maxBytes: number,
    readonly minSize = 4096,
  ) {}

  /** How many bytes the free buffers hold. */
  get freeBytes(): number {
    return this.#bytes;
  }

  /**
   * A buffer of at least `size` bytes, reused when a free one is large enough and not more than
   * twice as large; `undefined` below `minSize`.
   *
   * @param size - bytes needed
   */
  take(size: number): Buffer | undefined {
    if (size < this.minSize) return undefined;
    const free = this.#free;
    for (let i = free.length - 1; i >= 0; i--) {
      const b = free[i] as Buffer;
      if (b.length >= size && b.length <= size * 2) {
        free[i] = free[free.length - 1] as Buffer;
        free.pop();
        this.#bytes -= b.length;
        return b;
      }
    }
    // Rounded up to 4 KiB, so that events of similar sizes share buffers.
    return Buffer.allocUnsafeSlow(Math.ceil(size / 4096) * 4096);
  }

  /** Lets go of every free buffer (a closed publisher keeps none). */
  clear(): void {
    this.#free.length = 0;
    this.#bytes = 0;
  }

  /**
   * Hands a buffer back for reuse. Only for a buffer nothing reads any more.
   *
   * @param buffer - a buffer {@link BufferPool.take} returned
   */
  give(buffer: Buffer): void {
    if (this.#bytes + buffer.length > this.maxBytes) return;
    this.#free.push(buffer);
    this.#bytes += buffer.length;
  }
}

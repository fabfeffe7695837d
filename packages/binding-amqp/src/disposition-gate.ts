import type { Connection } from "rhea";

/**
 * Keeps dispositions with different outcomes out of one batch. rhea (3.0.5) writes the
 * dispositions of one event-loop turn as ranges of consecutive delivery ids, and merges a
 * delivery into the range before it without comparing outcomes while that range holds a single
 * delivery: `accept()` of one delivery followed by `release()` of the next in the same turn
 * reaches the peer as two `accepted`, and the released message is lost. The gate applies
 * settlements whose outcome differs from the ones already written in this turn only in a later
 * turn (after rhea's `process.nextTick` flush), in order.
 */
class DispositionGate {
  #key: string | undefined;
  #scheduled = false;
  readonly #waiting: Array<{ key: string; run: () => void }> = [];

  /** Resolves once every submitted settlement has been handed to rhea and written. */
  async idle(): Promise<void> {
    do {
      await new Promise((resolve) => setImmediate(resolve));
    } while (this.#waiting.length > 0);
  }

  submit(key: string, run: () => void): void {
    if (this.#waiting.length === 0 && (this.#key === undefined || this.#key === key)) {
      this.#key = key;
      run();
    } else {
      this.#waiting.push({ key, run });
    }
    this.#arm();
  }

  #arm(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    // rhea wrote the previous turn's dispositions on process.nextTick, before this callback.
    this.#key = undefined;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0] as { key: string; run: () => void };
      if (this.#key !== undefined && next.key !== this.#key) break;
      this.#waiting.shift();
      this.#key = next.key;
      next.run();
    }
    if (this.#key !== undefined) this.#arm();
  }
}

const gates = new WeakMap<Connection, DispositionGate>();

/** The gate of a connection (one per connection: rhea batches across its links). */
export function dispositionGate(connection: Connection): DispositionGate {
  let gate = gates.get(connection);
  if (!gate) {
    gate = new DispositionGate();
    gates.set(connection, gate);
  }
  return gate;
}

/** An item a {@link SlotSet} can hold: it carries its own position in the set. */
export interface Slotted {
  /** Where the item sits in its set, or -1 when it is in none. Managed by the set. */
  slot: number;
}

/**
 * A set of short-lived items (a subscriber's unsettled deliveries), kept in an array in which
 * each item knows its index: adding appends, deleting moves the last item into the gap. Both are
 * O(1), and a deleted item is no longer referenced by anything the set holds.
 *
 * For the bindings' subscribers, in place of a `Set` or `Map` keyed by delivery. Under load (tens
 * of thousands of deliveries added and deleted a second) those made V8's young-generation
 * collector promote settled deliveries (with their received bytes) into the old generation: the
 * AMQP subscriber promoted about 700 KB per collection instead of about 150 KB, several
 * microseconds of CPU per delivery; the MQTT subscriber's heap peaked at 193 MiB instead of 51 MiB
 * over 100,000 1 KiB events (a bare mqtt.js subscriber: 52 MiB).
 *
 * Iterating goes over a copy, so the loop may delete items, including the current one.
 *
 * @typeParam T - the items; each is in at most one set at a time
 */
export class SlotSet<T extends Slotted> implements Iterable<T> {
  readonly #items: T[] = [];

  /** How many items the set holds. */
  get size(): number {
    return this.#items.length;
  }

  /**
   * Adds an item not in any set.
   *
   * @param item - the item; its `slot` must be -1
   */
  add(item: T): void {
    item.slot = this.#items.length;
    this.#items.push(item);
  }

  /**
   * Whether the set holds `item`.
   *
   * @param item - the item
   */
  has(item: T): boolean {
    return item.slot >= 0 && this.#items[item.slot] === item;
  }

  /**
   * Removes an item; does nothing when it is not in this set.
   *
   * @param item - the item
   * @returns whether it was in the set
   */
  delete(item: T): boolean {
    if (!this.has(item)) return false;
    const items = this.#items;
    const at = item.slot;
    const last = items.pop() as T;
    if (last !== item) {
      items[at] = last;
      last.slot = at;
    }
    item.slot = -1;
    return true;
  }

  /** Removes every item. */
  clear(): void {
    for (const item of this.#items) item.slot = -1;
    this.#items.length = 0;
  }

  /** The items, in no particular order, from a copy taken when iteration starts. */
  [Symbol.iterator](): Iterator<T> {
    return this.#items.slice()[Symbol.iterator]();
  }
}

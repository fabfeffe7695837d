import { describe, expect, it } from "vitest";
import { SlotSet } from "../src/slot-set.js";

interface Item {
  id: number;
  slot: number;
}
const item = (id: number): Item => ({ id, slot: -1 });
const ids = (set: SlotSet<Item>) => [...set].map((i) => i.id).sort((a, b) => a - b);

describe("SlotSet (the AMQP subscriber's unsettled deliveries)", () => {
  it("adds, deletes from any position, and keeps every remaining item findable", () => {
    const set = new SlotSet<Item>();
    const items = Array.from({ length: 6 }, (_, i) => item(i));
    for (const i of items) set.add(i);
    expect(set.size).toBe(6);
    expect(set.delete(items[0] as Item)).toBe(true);
    expect(set.delete(items[5] as Item)).toBe(true);
    expect(set.delete(items[2] as Item)).toBe(true);
    expect(ids(set)).toEqual([1, 3, 4]);
    // Each remaining item can still be deleted: its slot followed the moves.
    for (const i of [items[4], items[1], items[3]] as Item[]) expect(set.delete(i)).toBe(true);
    expect(set.size).toBe(0);
  });

  it("ignores an item it does not hold, and one deleted twice", () => {
    const a = new SlotSet<Item>();
    const b = new SlotSet<Item>();
    const x = item(1);
    const y = item(2);
    a.add(x);
    b.add(y);
    expect(a.has(y)).toBe(false);
    expect(a.has(x)).toBe(true);
    expect(a.delete(y)).toBe(false);
    expect(a.delete(x)).toBe(true);
    expect(a.has(x)).toBe(false);
    expect(a.delete(x)).toBe(false);
    expect(x.slot).toBe(-1);
    expect(b.size).toBe(1);
  });

  it("lets a loop over it delete items, the current one included", () => {
    const set = new SlotSet<Item>();
    for (let i = 0; i < 5; i++) set.add(item(i));
    const seen: number[] = [];
    for (const i of set) {
      seen.push(i.id);
      set.delete(i);
    }
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4]);
    expect(set.size).toBe(0);
  });

  it("matches a Set over 10,000 random adds and deletes", () => {
    const set = new SlotSet<Item>();
    const model = new Set<Item>();
    const pool = Array.from({ length: 50 }, (_, i) => item(i));
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let step = 0; step < 10_000; step++) {
      const x = pool[next() % pool.length] as Item;
      expect(set.has(x)).toBe(model.has(x));
      if (model.has(x)) {
        expect(set.delete(x)).toBe(true);
        model.delete(x);
      } else if (next() % 2 === 0) {
        set.add(x);
        model.add(x);
      } else expect(set.delete(x)).toBe(false);
      expect(set.size).toBe(model.size);
    }
    expect(ids(set)).toEqual([...model].map((i) => i.id).sort((a, b) => a - b));
  });

  it("clears every item's slot", () => {
    const set = new SlotSet<Item>();
    const x = item(1);
    set.add(x);
    set.clear();
    expect(set.size).toBe(0);
    expect(x.slot).toBe(-1);
    expect(set.delete(x)).toBe(false);
  });
});

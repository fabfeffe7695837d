import { describe, expect, it } from "vitest";
import { BufferPool } from "../src/buffer-pool.js";

describe("BufferPool (the AMQP publisher's encoding buffers for large messages)", () => {
  it("serves nothing below its minimum size: Node's shared slab does", () => {
    expect(new BufferPool(1 << 20).take(4095)).toBeUndefined();
  });

  it("hands a returned buffer out again for a request it fits, at most twice its size", () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(65_536 + 600) as Buffer;
    expect(a.length).toBeGreaterThanOrEqual(65_536 + 600);
    expect(a.length % 4096).toBe(0);
    pool.give(a);
    expect(pool.freeBytes).toBe(a.length);
    // Too large for it, and too small (less than half its size): fresh buffers.
    expect(pool.take(a.length + 1)).not.toBe(a);
    expect(pool.take(Math.floor(a.length / 2) - 1)).not.toBe(a);
    expect(pool.take(65_536)).toBe(a);
    expect(pool.freeBytes).toBe(0);
  });

  it("drops what would take its free buffers past maxBytes", () => {
    const pool = new BufferPool(100_000);
    const a = pool.take(60_000) as Buffer;
    const b = pool.take(60_000) as Buffer;
    pool.give(a);
    pool.give(b);
    expect(pool.freeBytes).toBe(a.length);
    expect(pool.take(60_000)).toBe(a);
    expect(pool.take(60_000)).not.toBe(b);
  });

  it("lets go of every free buffer on clear(), and serves fresh ones after", () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(10_000) as Buffer;
    pool.give(a);
    pool.clear();
    expect(pool.freeBytes).toBe(0);
    expect(pool.take(10_000)).not.toBe(a);
  });
});

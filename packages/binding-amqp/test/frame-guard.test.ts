// The frame guard's checks, on bytes: what rhea's own encoder writes passes untouched, what would
// make rhea's decoder allocate without bound, recurse off the stack or throw is refused, and a byte
// stream gives the same result however the socket cuts it into chunks.

import {
  checkAmqpMessage,
  FrameGuard,
  toAmqpMessage,
  UNDECODABLE_ANNOTATION,
} from "@posthorn/binding-amqp";
import { validVectors, vector } from "@posthorn/testkit";
import fc from "fast-check";
import rhea from "rhea";
import { describe, expect, it } from "vitest";

const limits = { maxDepth: 32, maxValues: 1_000_000 };
const bytes = (...parts: Array<number | number[] | Uint8Array>): Buffer =>
  Buffer.concat(
    parts.map((p) => (typeof p === "number" ? Buffer.from([p]) : Buffer.from(p as Uint8Array))),
  );
const u32 = (n: number): number[] => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
/** A message of one application-properties section holding `value` under "k". */
const inProperties = (value: Buffer): Buffer => {
  const entries = bytes(0xa1, 1, 0x6b, value);
  return bytes(0x00, 0x53, 0x74, 0xd1, u32(entries.length + 4), u32(2), entries);
};

describe("checkAmqpMessage", () => {
  it("passes every message rhea's encoder writes for the test vectors", () => {
    for (const { name, event } of validVectors) {
      const message = toAmqpMessage(event, { codec: rhea });
      const wire = rhea.message.encode(message as never);
      expect(checkAmqpMessage(wire, limits), name).toBeUndefined();
    }
  });

  it("passes any value rhea can encode in a message, which rhea then decodes", () => {
    const leaf = fc.oneof(
      fc.string().map((s) => rhea.types.wrap_string(s)),
      fc.integer().map((n) => rhea.types.wrap_int(n)),
      fc.double({ noNaN: true }).map((n) => rhea.types.wrap_double(n)),
      fc.boolean().map((b) => rhea.types.wrap_boolean(b)),
      fc.uint8Array({ maxLength: 40 }).map((b) => rhea.types.wrap_binary(Buffer.from(b))),
      fc.constant(rhea.types.wrap(null)),
      fc.string().map((s) => rhea.types.wrap_symbol(s.replace(/[^\x20-\x7e]/g, ""))),
    );
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        leaf,
        fc.array(tie("tree"), { maxLength: 5 }).map((xs) => rhea.types.wrap_list(xs as never)),
        fc
          .array(fc.tuple(fc.string({ maxLength: 8 }), tie("tree")), { maxLength: 4 })
          .map((kv) => rhea.types.wrap_map(Object.fromEntries(kv) as never)),
        fc
          .array(fc.integer(), { maxLength: 6 })
          .map((xs) => rhea.types.wrap_array(xs, 0x71, undefined)),
      ),
    }));
    fc.assert(
      fc.property(tree, (value) => {
        const wire = rhea.message.encode({ body: value, subject: "s" } as never);
        expect(checkAmqpMessage(wire, limits)).toBeUndefined();
        expect(() => rhea.message.decode(wire)).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it("refuses the encodings that make rhea allocate without bound, quickly", () => {
    const attacks: Array<[string, Buffer, RegExp]> = [
      // 2^32 - 1 nulls, which take no bytes: rhea builds an array that long.
      [
        "an array of empty elements",
        inProperties(bytes(0xf0, u32(5), u32(0xffffffff), 0x40)),
        /empty elements/,
      ],
      [
        "a list claiming 13.7 million elements",
        inProperties(bytes(0xd0, u32(8), u32(13_700_000), 0x40, 0x40, 0x40, 0x40)),
        /claims 13700000 elements/,
      ],
      ["a map with an odd count", inProperties(bytes(0xc1, 3, 1, 0x40, 0x40)), /odd number/],
      [
        "a data section claiming 4 GiB",
        bytes(0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 1, 2),
        /more bytes than there are/,
      ],
      ["an unknown typecode", inProperties(bytes(0x99)), /not an AMQP typecode/],
      ["a section without descriptor", bytes(0xa1, 1, 0x61), /no descriptor/],
      ["a section AMQP does not define", bytes(0x00, 0x53, 0x7f, 0x40), /not one AMQP 1.0 defines/],
      [
        "a header section that is not a list",
        bytes(0x00, 0x53, 0x70, 0xa1, 1, 0x61),
        /header section .* not encoded as one/,
      ],
      [
        "a list whose size exceeds its elements",
        inProperties(bytes(0xc0, 3, 1, 0x40, 0x40)),
        /declares more bytes/,
      ],
    ];
    for (const [name, wire, reason] of attacks) {
      const started = performance.now();
      expect(checkAmqpMessage(wire, limits), name).toMatch(reason);
      expect(performance.now() - started, name).toBeLessThan(50);
    }
  });

  it("refuses nesting deeper than maxDepth without overflowing the stack, and counts values", () => {
    // 134 KB of nested maps overflowed rhea's stack; 100,000 nested lists here.
    const depth = 100_000;
    const nested = Buffer.alloc(depth * 9 + 1, 0x40);
    for (let i = 0; i < depth; i++) {
      nested[i * 9] = 0xd0;
      nested.writeUInt32BE(nested.length - (i * 9 + 5), i * 9 + 1);
      nested.writeUInt32BE(1, i * 9 + 5);
    }
    expect(checkAmqpMessage(inProperties(nested), limits)).toMatch(/nested more than 32 deep/);
    // 33 levels pass with maxDepth 40, fail with 32.
    let inner: Buffer = Buffer.from([0x40]);
    for (let i = 0; i < 33; i++) inner = bytes(0xc0, inner.length + 1, 1, inner);
    expect(
      checkAmqpMessage(bytes(0x00, 0x53, 0x77, inner), { maxDepth: 40, maxValues: 100 }),
    ).toBeUndefined();
    expect(
      checkAmqpMessage(bytes(0x00, 0x53, 0x77, inner), { maxDepth: 32, maxValues: 100 }),
    ).toMatch(/deep/);
    // 24 KB of empty lists in one list: 24,000 values, fine under the default, refused under 1,000.
    const many = bytes(0xd0, u32(24_004), u32(24_000), Buffer.alloc(24_000, 0x45));
    expect(checkAmqpMessage(bytes(0x00, 0x53, 0x77, many), limits)).toBeUndefined();
    expect(
      checkAmqpMessage(bytes(0x00, 0x53, 0x77, many), { maxDepth: 32, maxValues: 1_000 }),
    ).toMatch(/more than 1000 values/);
  });

  it("never passes what rhea's decoder throws on (mutated messages)", () => {
    const seed = rhea.message.encode(
      toAmqpMessage(vector("typical").event, { codec: rhea }) as never,
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(seed.length),
        (edits, cut) => {
          const wire = Buffer.from(seed.subarray(0, Math.max(cut, 1)));
          for (const [at, value] of edits) if (at < wire.length) wire[at] = value;
          if (checkAmqpMessage(wire, limits) === undefined) {
            expect(() => rhea.message.decode(wire)).not.toThrow();
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

// Frames by hand (AMQP 1.0, 2.3.1): size, data offset 2, type, channel, body.
const frame = (channel: number, body: Buffer, type = 0): Buffer =>
  bytes(u32(body.length + 8), 2, type, [channel >> 8, channel & 255], body);
const list = (...fields: Buffer[]): Buffer => {
  const body = Buffer.concat(fields);
  return bytes(0xc0, body.length + 1, fields.length, body);
};
const transfer = (handle: number, id: number | undefined, more: boolean, payload: Buffer): Buffer =>
  frame(
    1,
    bytes(
      0x00,
      0x53,
      0x14,
      list(
        bytes(0x52, handle),
        id === undefined ? bytes(0x40) : bytes(0x52, id),
        id === undefined ? bytes(0x40) : bytes(0xa0, 1, id),
        id === undefined ? bytes(0x40) : bytes(0x43),
        bytes(0x42),
        bytes(more ? 0x41 : 0x42),
      ),
      payload,
    ),
  );
const HEADER = Buffer.from("AMQP\x00\x01\x00\x00", "latin1");
const OPEN = frame(0, bytes(0x00, 0x53, 0x10, list(bytes(0xa1, 1, 0x63))));
const EMPTY_FRAME = bytes(u32(8), 2, 0, 0, 0);

/** What the guard passes on for `stream` cut at `cuts`. */
function through(stream: Buffer, cuts: number[], options = {}): Buffer {
  const guard = new FrameGuard(options);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const to of [...cuts, stream.length]) {
    const passed = guard.feed(stream.subarray(from, to));
    if (passed !== undefined) out.push(passed);
    from = to;
  }
  return Buffer.concat(out);
}

/** Decodes the messages a stream's transfers carry, as rhea would join them. */
function messagesOf(stream: Buffer): unknown[] {
  const messages: unknown[] = [];
  const partial = new Map<number, Buffer[]>();
  let at = HEADER.length;
  while (at < stream.length) {
    const size = stream.readUInt32BE(at);
    const f = stream.subarray(at, at + size);
    at += size;
    if (size === 8) continue;
    const reader = new (
      rhea.types as unknown as { Reader: new (b: Buffer) => { read(): unknown; position: number } }
    ).Reader(f.subarray(8));
    const performative = reader.read() as {
      descriptor: { value: number };
      value: Array<{ value: unknown }>;
    };
    if (performative.descriptor.value !== 0x14) continue;
    const handle = performative.value[0]?.value as number;
    const parts = partial.get(handle) ?? [];
    parts.push(f.subarray(8 + reader.position));
    if (performative.value[5]?.value === true) {
      partial.set(handle, parts);
    } else {
      partial.delete(handle);
      messages.push(rhea.message.decode(Buffer.concat(parts)));
    }
  }
  return messages;
}

describe("FrameGuard", () => {
  const good = rhea.message.encode(
    toAmqpMessage(vector("typical").event, { codec: rhea }) as never,
  );
  const bad = bytes(0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 1, 2);

  it("passes a stream of valid frames as it came, chunk for chunk", () => {
    const stream = bytes(HEADER, OPEN, EMPTY_FRAME, transfer(0, 0, false, good));
    const guard = new FrameGuard();
    expect(guard.feed(stream)).toBe(stream);
  });

  it("gives the same bytes however the stream is cut, for valid, invalid and multi-frame messages", () => {
    const stream = bytes(
      HEADER,
      OPEN,
      transfer(0, 0, true, good.subarray(0, 100)),
      EMPTY_FRAME,
      transfer(0, undefined, false, good.subarray(100)),
      transfer(0, 1, false, bad),
      transfer(0, 2, true, bad.subarray(0, 4)),
      transfer(0, undefined, false, bad.subarray(4)),
      transfer(0, 3, false, good),
    );
    const whole = through(stream, []);
    for (let cut = 1; cut < stream.length; cut++) {
      expect(through(stream, [cut])).toEqual(whole);
    }
    expect(
      through(
        stream,
        Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
      ),
    ).toEqual(whole);
    const messages = messagesOf(whole) as Array<{
      body: { content?: Buffer } | undefined;
      message_annotations?: Record<string, string>;
    }>;
    expect(messages).toHaveLength(4);
    expect(messages[0]).toEqual(rhea.message.decode(good));
    expect(messages[3]).toEqual(rhea.message.decode(good));
    for (const marked of [messages[1], messages[2]]) {
      expect(marked?.message_annotations?.[UNDECODABLE_ANNOTATION]).toMatch(
        /^MalformedInput: .*claims more bytes than there are/,
      );
      // The original bytes travel as the marked message's body.
      expect(Buffer.from(marked?.body?.content ?? [])).toEqual(bad);
    }
  });

  it("holds the frames after an unfinished message and releases them in order", () => {
    const guard = new FrameGuard();
    const first = transfer(0, 0, true, good.subarray(0, 50));
    expect(guard.feed(bytes(HEADER, first))).toEqual(HEADER);
    expect(guard.feed(EMPTY_FRAME)).toBeUndefined();
    const last = transfer(0, undefined, false, good.subarray(50));
    expect(guard.feed(last)).toEqual(bytes(first, EMPTY_FRAME, last));
  });

  it("passes a message larger than maxMessageBytes as a marked message without its bytes", () => {
    const big = rhea.message.encode({
      body: rhea.message.data_section(Buffer.alloc(5_000, 7)),
    } as never);
    const stream = bytes(
      HEADER,
      transfer(0, 0, true, big.subarray(0, 2_000)),
      transfer(0, undefined, true, big.subarray(2_000, 4_000)),
      transfer(0, undefined, false, big.subarray(4_000)),
      transfer(0, 1, false, good),
    );
    const out = through(stream, [], { maxMessageBytes: 3_000 });
    const messages = messagesOf(out) as Array<{
      message_annotations?: Record<string, string>;
      body?: { content?: Buffer };
    }>;
    expect(messages).toHaveLength(2);
    expect(messages[0]?.message_annotations?.[UNDECODABLE_ANNOTATION]).toMatch(
      /^PayloadTooLarge: /,
    );
    expect(messages[0]?.body?.content?.length).toBe(0);
    expect(messages[1]).toEqual(rhea.message.decode(good));
    expect(out.length).toBeLessThan(good.length + 400);
  });

  it("ends the connection on a broken frame: bad sizes, data offsets, types and performatives", () => {
    const broken: Array<[string, Buffer, RegExp]> = [
      ["a frame shorter than its header", bytes(u32(4), 2, 0, 0, 0), /fewer than its header/],
      [
        "a frame past maxFrameBytes",
        bytes(u32(70_000), 2, 0, 0, 0),
        /larger than the limit of 65536 \(the frame guard's maxFrameBytes\)/,
      ],
      ["a data offset past the frame", bytes(u32(8), 9, 0, 0, 0), /data offset/],
      ["an unknown frame type", bytes(u32(9), 2, 7, 0, 0, 0x40), /unknown type 7/],
      ["a body that is no performative", frame(0, bytes(0xa1, 1, 0x61)), /not a performative/],
      [
        "an unknown performative",
        frame(0, bytes(0x00, 0x53, 0x33, 0x45)),
        /not one AMQP 1.0 defines/,
      ],
      [
        "an open holding 2^32 nulls",
        frame(0, bytes(0x00, 0x53, 0x10, 0xc0, 11, 1, 0xf0, u32(5), u32(0xffffffff), 0x40)),
        /empty elements/,
      ],
    ];
    for (const [name, bad, reason] of broken) {
      const guard = new FrameGuard({ maxFrameBytes: 65_536 });
      expect(() => guard.feed(bytes(HEADER, bad)), name).toThrow(reason);
      try {
        new FrameGuard({ maxFrameBytes: 65_536 }).feed(bytes(HEADER, bad));
      } catch (err) {
        expect((err as { code?: string }).code, name).toBe("MalformedInput");
      }
    }
  });
});

// Wire-level tests of the Kafka test broker: requests built by hand over a raw TCP socket, to check
// error codes and connection handling that well-behaved clients never exercise.
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type KafkaTestBroker, startKafkaBroker } from "../src/index.js";
import { crc32c } from "../src/kafka/crc32c.js";
import { ApiKey, ErrorCode, Reader, Writer } from "../src/kafka/protocol.js";

/** A minimal Kafka client: frames requests, matches responses by correlation id. */
class RawClient {
  private buffered = Buffer.alloc(0);
  private nextId = 1;
  private readonly waiting = new Map<number, (body: Reader) => void>();
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4) {
        const size = this.buffered.readInt32BE(0);
        if (this.buffered.length < size + 4) break;
        const frame = this.buffered.subarray(4, size + 4);
        this.buffered = this.buffered.subarray(size + 4);
        const id = frame.readInt32BE(0);
        this.waiting.get(id)?.(new Reader(frame, 4));
        this.waiting.delete(id);
      }
    });
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => {});
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  /** Sends a request; resolves with a reader positioned after the response header. */
  request(apiKey: number, version: number, body: (w: Writer) => void): Promise<Reader> {
    const id = this.nextId++;
    const w = new Writer();
    w.int16(apiKey).int16(version).int32(id).nullableString("raw-test");
    body(w);
    const payload = w.finish();
    const frame = Buffer.alloc(4 + payload.length);
    frame.writeInt32BE(payload.length, 0);
    payload.copy(frame, 4);
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.write(frame);
    });
  }

  /** Sends a request that gets no response (acks=0). */
  fireAndForget(apiKey: number, version: number, body: (w: Writer) => void): void {
    void this.request(apiKey, version, body);
  }

  close(): void {
    this.socket.destroy();
  }
}

interface TestRecord {
  key: string | null;
  value: string | null;
  headers?: [string, string][];
  /** The record's timestamp delta from the batch's base timestamp. Default 0. */
  timestampDelta?: number;
}

function varint(out: number[], n: number): void {
  let v = n >= 0 ? n * 2 : -n * 2 - 1;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function bytesField(out: number[], s: string | null): void {
  if (s === null) {
    varint(out, -1);
    return;
  }
  const b = Buffer.from(s);
  varint(out, b.length);
  out.push(...b);
}

/** Encodes a magic-v2 record batch (uncompressed) with a valid CRC-32C. */
function recordBatch(
  records: TestRecord[],
  producer: { id: number | bigint; epoch: number; sequence: number } = {
    id: -1,
    epoch: -1,
    sequence: -1,
  },
): Buffer {
  const body: number[] = [];
  records.forEach((r, i) => {
    const rec: number[] = [0];
    varint(rec, r.timestampDelta ?? 0); // timestamp delta
    varint(rec, i); // offset delta
    bytesField(rec, r.key);
    bytesField(rec, r.value);
    varint(rec, r.headers?.length ?? 0);
    for (const [k, v] of r.headers ?? []) {
      bytesField(rec, k);
      bytesField(rec, v);
    }
    varint(body, rec.length);
    body.push(...rec);
  });
  const now = Date.now();
  const buf = Buffer.alloc(61 + body.length);
  buf.writeBigInt64BE(0n, 0);
  buf.writeInt32BE(buf.length - 12, 8);
  buf.writeInt32BE(0, 12);
  buf.writeInt8(2, 16);
  buf.writeInt16BE(0, 21);
  buf.writeInt32BE(records.length - 1, 23);
  buf.writeBigInt64BE(BigInt(now), 27);
  buf.writeBigInt64BE(BigInt(now), 35);
  buf.writeBigInt64BE(BigInt(producer.id), 43);
  buf.writeInt16BE(producer.epoch, 51);
  buf.writeInt32BE(producer.sequence, 53);
  buf.writeInt32BE(records.length, 57);
  Buffer.from(body).copy(buf, 61);
  buf.writeUInt32BE(crc32c(buf, 21), 17);
  return buf;
}

/** Produce v7 of one batch to one partition; returns [error code, base offset]. */
async function produce(
  c: RawClient,
  topic: string,
  partition: number,
  batch: Buffer,
): Promise<[number, number]> {
  const r = await c.request(ApiKey.Produce, 7, (w) => {
    w.nullableString(null).int16(-1).int32(1000);
    w.int32(1).string(topic).int32(1).int32(partition).nullableBytes(batch);
  });
  r.int32(); // topics
  r.string();
  r.int32(); // partitions
  r.int32();
  const error = r.int16();
  return [error, r.int64()];
}

async function latestOffset(c: RawClient, topic: string, partition: number): Promise<number> {
  const r = await c.request(ApiKey.ListOffsets, 3, (w) => {
    w.int32(-1).int8(0).int32(1).string(topic).int32(1).int32(partition).int64(-1);
  });
  r.int32(); // throttle
  r.int32();
  r.string();
  r.int32();
  r.int32();
  expect(r.int16()).toBe(ErrorCode.NONE);
  r.int64();
  return r.int64();
}

/** Fetch v11 of one partition; returns the error code, high watermark and record bytes. */
async function fetchOnce(
  c: RawClient,
  topic: string,
  offset: number,
  maxWaitMs: number,
): Promise<{ error: number; highWatermark: number; records: Buffer | null }> {
  const r = await c.request(ApiKey.Fetch, 11, (w) => {
    w.int32(-1)
      .int32(maxWaitMs)
      .int32(1)
      .int32(1 << 20)
      .int8(0)
      .int32(0)
      .int32(-1);
    w.int32(1)
      .string(topic)
      .int32(1)
      .int32(0)
      .int32(-1)
      .int64(offset)
      .int64(-1)
      .int32(1 << 20);
    w.int32(0).string("");
  });
  r.int32(); // throttle
  expect(r.int16()).toBe(ErrorCode.NONE);
  r.int32(); // session id
  r.int32();
  r.string();
  r.int32();
  r.int32();
  const error = r.int16();
  const highWatermark = r.int64();
  r.int64();
  r.int64();
  r.int32(); // aborted transactions (null)
  r.int32(); // preferred read replica
  return { error, highWatermark, records: r.nullableBytes() };
}

describe("Kafka test broker at the wire level", () => {
  let broker: KafkaTestBroker;
  const logged: string[] = [];
  const clients: RawClient[] = [];

  beforeAll(async () => {
    broker = await startKafkaBroker({ log: (line) => logged.push(line), maxFrameBytes: 1 << 20 });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await broker?.stop();
  });

  async function client(): Promise<RawClient> {
    const c = await RawClient.open(broker.port);
    clients.push(c);
    return c;
  }

  it("answers a too-new ApiVersions request in the v0 shape with UNSUPPORTED_VERSION", async () => {
    const c = await client();
    const r = await c.request(ApiKey.ApiVersions, 3, (w) => {
      // v3 body: compact strings and tagged fields the broker does not need to parse
      w.int8(0).int8(5).raw(Buffer.from("test")).int8(2).raw(Buffer.from("1")).int8(0);
    });
    expect(r.int16()).toBe(ErrorCode.UNSUPPORTED_VERSION);
    const apis = r.array((r) => ({ key: r.int16(), min: r.int16(), max: r.int16() }));
    expect(apis.find((a) => a.key === ApiKey.ApiVersions)).toEqual({ key: 18, min: 0, max: 2 });
    expect(r.remaining).toBe(0);
    const ok = await c.request(ApiKey.ApiVersions, 2, () => {});
    expect(ok.int16()).toBe(ErrorCode.NONE);
    expect(ok.array((r) => [r.int16(), r.int16(), r.int16()]).length).toBeGreaterThan(10);
    expect(ok.int32()).toBe(0);
  });

  it("rejects a batch whose CRC-32C does not match with CORRUPT_MESSAGE and stores nothing", async () => {
    const c = await client();
    broker.createTopic("raw-crc", 1);
    const batch = recordBatch([{ key: "k", value: "hello" }]);
    const corrupt = Buffer.from(batch);
    const at = corrupt.length - 3;
    corrupt.writeUInt8(corrupt.readUInt8(at) ^ 0xff, at);
    expect((await produce(c, "raw-crc", 0, corrupt))[0]).toBe(ErrorCode.CORRUPT_MESSAGE);
    expect(await latestOffset(c, "raw-crc", 0)).toBe(0);
    expect(await produce(c, "raw-crc", 0, batch)).toEqual([ErrorCode.NONE, 0]);
    expect(await latestOffset(c, "raw-crc", 0)).toBe(1);
    expect(logged.some((l) => l.includes("CRC-32C mismatch"))).toBe(true);
  });

  it("rejects a batch whose records do not parse, even with a valid CRC", async () => {
    const c = await client();
    broker.createTopic("raw-bad-records", 1);
    const batch = recordBatch([{ key: "k", value: "v" }]);
    batch.writeInt32BE(2, 57); // claims two records
    batch.writeInt32BE(1, 23);
    batch.writeUInt32BE(crc32c(batch, 21), 17);
    expect((await produce(c, "raw-bad-records", 0, batch))[0]).toBe(ErrorCode.CORRUPT_MESSAGE);
    expect(await latestOffset(c, "raw-bad-records", 0)).toBe(0);
  });

  it("deduplicates retried idempotent batches and rejects sequence gaps", async () => {
    const c = await client();
    broker.createTopic("raw-idem", 1);
    const init = await c.request(ApiKey.InitProducerId, 1, (w) =>
      w.nullableString(null).int32(60_000),
    );
    init.int32();
    expect(init.int16()).toBe(ErrorCode.NONE);
    const id = init.int64();
    const epoch = init.int16();
    const three = [
      { key: "a", value: "1" },
      { key: "b", value: "2" },
      { key: "c", value: "3" },
    ];
    const first = recordBatch(three, { id, epoch, sequence: 0 });
    expect(await produce(c, "raw-idem", 0, first)).toEqual([ErrorCode.NONE, 0]);
    // A retry of the same batch is acknowledged with its original offset and not stored twice.
    expect(await produce(c, "raw-idem", 0, first)).toEqual([ErrorCode.NONE, 0]);
    expect(await latestOffset(c, "raw-idem", 0)).toBe(3);
    const gap = recordBatch([{ key: "d", value: "4" }], { id, epoch, sequence: 5 });
    expect((await produce(c, "raw-idem", 0, gap))[0]).toBe(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    const next = recordBatch([{ key: "d", value: "4" }], { id, epoch, sequence: 3 });
    expect(await produce(c, "raw-idem", 0, next)).toEqual([ErrorCode.NONE, 3]);
    const fenced = recordBatch([{ key: "e", value: "5" }], { id, epoch: epoch - 1, sequence: 0 });
    expect((await produce(c, "raw-idem", 0, fenced))[0]).toBe(ErrorCode.INVALID_PRODUCER_EPOCH);
    expect(await latestOffset(c, "raw-idem", 0)).toBe(4);
  });

  it("stores none of a partition's batches when one of them is refused", async () => {
    const c = await client();
    broker.createTopic("raw-all-or-none", 1);
    const init = await c.request(ApiKey.InitProducerId, 1, (w) =>
      w.nullableString(null).int32(60_000),
    );
    init.int32();
    expect(init.int16()).toBe(ErrorCode.NONE);
    const id = init.int64();
    const epoch = init.int16();
    const two = [
      { key: "a", value: "1" },
      { key: "b", value: "2" },
    ];
    const transactional = recordBatch([{ key: "t", value: "x" }]);
    transactional.writeInt16BE(0x10, 21);
    transactional.writeUInt32BE(crc32c(transactional, 21), 17);
    const cases: [string, Buffer[], number][] = [
      // The old broker stored the plain batch's 2 records, then refused the transactional one.
      [
        "a plain batch, then a transactional one",
        [recordBatch(two), transactional],
        ErrorCode.INVALID_RECORD,
      ],
      // It stored sequence 0's record, then refused the gap.
      [
        "sequence 0, then a gap",
        [
          recordBatch([{ key: "c", value: "3" }], { id, epoch, sequence: 0 }),
          recordBatch([{ key: "d", value: "4" }], { id, epoch, sequence: 2 }),
        ],
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
      ],
    ];
    for (const [what, batches, expected] of cases) {
      expect([what, (await produce(c, "raw-all-or-none", 0, Buffer.concat(batches)))[0]]).toEqual([
        what,
        expected,
      ]);
      expect([what, await latestOffset(c, "raw-all-or-none", 0)]).toEqual([what, 0]);
    }
    // Nothing of the refused request counts towards the producer's sequence: it starts at 0, and
    // each batch of one request continues the sequence the batches before it leave.
    const chained = Buffer.concat([
      recordBatch(two, { id, epoch, sequence: 0 }),
      recordBatch([{ key: "c", value: "3" }], { id, epoch, sequence: 2 }),
    ]);
    expect(await produce(c, "raw-all-or-none", 0, chained)).toEqual([ErrorCode.NONE, 0]);
    expect(await latestOffset(c, "raw-all-or-none", 0)).toBe(3);
    // A retry of that request is acknowledged with its first offset and stores nothing again.
    expect(await produce(c, "raw-all-or-none", 0, chained)).toEqual([ErrorCode.NONE, 0]);
    expect(await latestOffset(c, "raw-all-or-none", 0)).toBe(3);
    const fetched = await fetchOnce(c, "raw-all-or-none", 0, 0);
    expect(fetched.highWatermark).toBe(3);
  });

  it("stores records produced with acks=0 without answering", async () => {
    const c = await client();
    broker.createTopic("raw-acks0", 1);
    c.fireAndForget(ApiKey.Produce, 7, (w) => {
      w.nullableString(null).int16(0).int32(1000);
      w.int32(1)
        .string("raw-acks0")
        .int32(1)
        .int32(0)
        .nullableBytes(recordBatch([{ key: null, value: "x" }]));
    });
    // Requests on a connection are handled in order, so this answer comes after the produce.
    expect(await latestOffset(c, "raw-acks0", 0)).toBe(1);
  });

  it("parks a fetch until records arrive, and returns empty after max wait otherwise", async () => {
    const waiter = await client();
    const writer = await client();
    broker.createTopic("raw-poll", 1);

    const t0 = Date.now();
    const empty = await fetchOnce(waiter, "raw-poll", 0, 150);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(empty.records?.length ?? 0).toBe(0);

    const started = Date.now();
    const pending = fetchOnce(waiter, "raw-poll", 0, 10_000);
    await new Promise((r) => setTimeout(r, 100));
    await produce(
      writer,
      "raw-poll",
      0,
      recordBatch([{ key: "k", value: "v", headers: [["h", "1"]] }]),
    );
    const got = await pending;
    expect(Date.now() - started).toBeLessThan(2000);
    expect(got.error).toBe(ErrorCode.NONE);
    expect(got.highWatermark).toBe(1);
    expect(got.records?.readBigInt64BE(0)).toBe(0n); // base offset assigned by the broker
    expect(got.records && crc32c(got.records, 21)).toBe(got.records?.readUInt32BE(17));

    expect((await fetchOnce(waiter, "raw-poll", 7, 0)).error).toBe(ErrorCode.OFFSET_OUT_OF_RANGE);
  });

  it("runs the join/sync/heartbeat protocol with REBALANCE_IN_PROGRESS and generations", async () => {
    const a = await client();
    const b = await client();
    const join = async (c: RawClient, memberId: string) => {
      const r = await c.request(ApiKey.JoinGroup, 5, (w) => {
        w.string("raw-group")
          .int32(5000)
          .int32(5000)
          .string(memberId)
          .nullableString(null)
          .string("consumer");
        w.int32(1)
          .string("range")
          .nullableBytes(Buffer.from(`meta-${memberId || "new"}`));
      });
      r.int32();
      return {
        error: r.int16(),
        generation: r.int32(),
        protocol: r.string(),
        leader: r.string(),
        memberId: r.string(),
        members: r.array((r) => ({
          id: r.string(),
          instance: r.nullableString(),
          meta: r.bytes().toString(),
        })),
      };
    };
    const sync = async (
      c: RawClient,
      generation: number,
      memberId: string,
      assignments: [string, string][],
    ) => {
      const r = await c.request(ApiKey.SyncGroup, 3, (w) => {
        w.string("raw-group").int32(generation).string(memberId).nullableString(null);
        w.array(assignments, (w, [m, a]) => w.string(m).nullableBytes(Buffer.from(a)));
      });
      r.int32();
      return { error: r.int16(), assignment: r.bytes().toString() };
    };
    const heartbeat = async (c: RawClient, generation: number, memberId: string) => {
      const r = await c.request(ApiKey.Heartbeat, 3, (w) => {
        w.string("raw-group").int32(generation).string(memberId).nullableString(null);
      });
      r.int32();
      return r.int16();
    };

    // OffsetCommit v5 of one partition of "raw-group-topic".
    broker.createTopic("raw-group-topic", 1);
    const commit = async (c: RawClient, generation: number, memberId: string, offset: number) => {
      const r = await c.request(ApiKey.OffsetCommit, 5, (w) => {
        w.string("raw-group").int32(generation).string(memberId);
        w.int32(1).string("raw-group-topic").int32(1).int32(0).int64(offset).nullableString(null);
      });
      r.int32();
      r.int32(); // one topic
      r.string();
      r.int32(); // one partition
      r.int32();
      return r.int16();
    };

    const a1 = await join(a, "");
    expect(a1).toMatchObject({ error: 0, generation: 1, protocol: "range", leader: a1.memberId });
    expect(a1.members).toHaveLength(1);
    expect(await sync(a, 1, a1.memberId, [[a1.memberId, "all"]])).toEqual({
      error: 0,
      assignment: "all",
    });
    expect(await heartbeat(a, 1, a1.memberId)).toBe(ErrorCode.NONE);

    const b1Pending = join(b, ""); // parks until a rejoins
    await new Promise((r) => setTimeout(r, 50));
    expect(await heartbeat(a, 1, a1.memberId)).toBe(ErrorCode.REBALANCE_IN_PROGRESS);
    // Told of the rebalance, a member still commits what it processed before it rejoins (as
    // Kafka allows in PreparingRebalance), so the next owner does not read it again.
    expect(await commit(a, 1, a1.memberId, 5)).toBe(ErrorCode.NONE);
    const [a2, b1] = await Promise.all([join(a, a1.memberId), b1Pending]);
    expect(a2.generation).toBe(2);
    expect(b1.generation).toBe(2);
    expect(a2.leader).toBe(a1.memberId);
    expect(a2.members.map((m) => m.id).sort()).toEqual([a1.memberId, b1.memberId].sort());
    expect(b1.members).toEqual([]); // only the leader gets the metadata

    // Between the join and the assignment: an old generation is refused, the new one waits.
    expect(await commit(a, 1, a1.memberId, 6)).toBe(ErrorCode.ILLEGAL_GENERATION);
    expect(await commit(a, 2, a1.memberId, 6)).toBe(ErrorCode.REBALANCE_IN_PROGRESS);
    const bSync = sync(b, 2, b1.memberId, []); // waits for the leader's assignment
    const aSync = await sync(a, 2, a1.memberId, [
      [a1.memberId, "p0"],
      [b1.memberId, "p1"],
    ]);
    expect(aSync).toEqual({ error: 0, assignment: "p0" });
    expect(await bSync).toEqual({ error: 0, assignment: "p1" });
    expect(await heartbeat(b, 1, b1.memberId)).toBe(ErrorCode.ILLEGAL_GENERATION);
    expect(await heartbeat(b, 2, "nobody")).toBe(ErrorCode.UNKNOWN_MEMBER_ID);

    const leave = await b.request(ApiKey.LeaveGroup, 3, (w) => {
      w.string("raw-group").int32(1).string(b1.memberId).nullableString(null);
    });
    leave.int32();
    expect(leave.int16()).toBe(ErrorCode.NONE);
    expect(await heartbeat(a, 2, a1.memberId)).toBe(ErrorCode.REBALANCE_IN_PROGRESS);
    const a3 = await join(a, a1.memberId);
    expect(a3).toMatchObject({ error: 0, generation: 3 });
    expect(a3.members).toHaveLength(1);
  });

  it("closes a connection on an unknown API key, a bad frame size or a truncated body, and keeps serving", async () => {
    const unknown = await client();
    void unknown.request(999, 0, () => {});
    await unknown.closed;
    expect(logged.some((l) => l.includes("unknown or unsupported API key 999"))).toBe(true);

    const oversized = await client();
    const header = Buffer.alloc(4);
    header.writeInt32BE(2 << 20, 0); // over the 1 MiB limit of this broker
    oversized.socket.write(header);
    await oversized.closed;
    expect(logged.some((l) => l.includes("invalid frame size"))).toBe(true);

    const negative = await client();
    negative.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xf0]));
    await negative.closed;

    const truncated = await client();
    void truncated.request(ApiKey.Metadata, 6, (w) => w.int32(1000)); // 1000 topics, no bytes
    await truncated.closed;
    expect(logged.some((l) => l.includes("malformed api key 3 v6"))).toBe(true);

    const unsupported = await client();
    void unsupported.request(ApiKey.Fetch, 12, () => {});
    await unsupported.closed;
    expect(logged.some((l) => l.includes("Fetch v12 not supported"))).toBe(true);

    const healthy = await client();
    const r = await healthy.request(ApiKey.ApiVersions, 0, () => {});
    expect(r.int16()).toBe(ErrorCode.NONE);
  });

  it("reassembles requests split across many TCP writes and pipelined requests in one write", async () => {
    const c = await client();
    const w = new Writer();
    for (let id = 100; id < 103; id++) {
      const body = new Writer()
        .int16(ApiKey.ApiVersions)
        .int16(1)
        .int32(id)
        .nullableString("x")
        .finish();
      w.int32(body.length).raw(body);
    }
    const bytes = Buffer.from(w.finish());
    const ids: number[] = [];
    let buffered = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => {
      c.socket.on("data", (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        while (buffered.length >= 4 && buffered.length >= buffered.readInt32BE(0) + 4) {
          ids.push(buffered.readInt32BE(4));
          buffered = buffered.subarray(buffered.readInt32BE(0) + 4);
        }
        if (ids.length === 3) resolve();
      });
    });
    for (let i = 0; i < bytes.length; i += 3) {
      c.socket.write(bytes.subarray(i, i + 3));
      if (i % 12 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await done;
    expect(ids).toEqual([100, 101, 102]);
  });

  it("hands back int64 values at the edge of the range exactly: a committed offset and a record timestamp", async () => {
    const max = 2n ** 63n - 1n;
    // An int64 read exactly, as two int32 halves.
    const int64 = (r: Reader) => (BigInt(r.int32()) << 32n) | BigInt(r.int32() >>> 0);
    broker.createTopic("raw-int64-topic", 2);
    const c = await client();
    const answer = (request: Promise<Reader>): Promise<Reader> =>
      Promise.race([
        request,
        c.closed.then(() => {
          throw new Error("the broker closed the connection instead of answering");
        }),
      ]);
    // A standalone commit (generation -1, no member) of the largest offset an int64 holds.
    const committed = await c.request(ApiKey.OffsetCommit, 5, (w) => {
      w.string("raw-int64-group").int32(-1).string("");
      w.int32(1).string("raw-int64-topic").int32(2);
      for (const [partition, offset] of [
        [0, max],
        [1, 2n ** 53n + 1n],
      ] as const) {
        w.int32(partition).int64(offset).nullableString(null);
      }
    });
    committed.int32();
    committed.int32();
    committed.string();
    committed.int32();
    committed.int32();
    expect(committed.int16()).toBe(ErrorCode.NONE);
    committed.int32();
    expect(committed.int16()).toBe(ErrorCode.NONE);

    // The old broker read them as numbers: 2^53 + 1 came back as 2^53, and 2^63 - 1 as 2^63,
    // which it could not write, so every OffsetFetch of the group closed the connection.
    const fetched = await answer(
      c.request(ApiKey.OffsetFetch, 4, (w) => {
        w.string("raw-int64-group").int32(1).string("raw-int64-topic").int32(2).int32(0).int32(1);
      }),
    );
    fetched.int32();
    fetched.int32();
    expect(fetched.string()).toBe("raw-int64-topic");
    const offsets = fetched.array((r) => {
      const partition = r.int32();
      const offset = int64(r);
      r.nullableString();
      return [partition, offset, r.int16()];
    });
    expect(offsets).toEqual([
      [0, max, ErrorCode.NONE],
      [1, 2n ** 53n + 1n, ErrorCode.NONE],
    ]);

    // A record stamped with the largest timestamp, found by ListOffsets with that timestamp.
    const batch = recordBatch([{ key: null, value: "late" }]);
    batch.writeBigInt64BE(max, 27); // base timestamp (the record's delta is 0)
    batch.writeBigInt64BE(max, 35); // max timestamp
    batch.writeUInt32BE(crc32c(batch, 21), 17);
    expect(await produce(c, "raw-int64-topic", 0, batch)).toEqual([ErrorCode.NONE, 0]);
    const listed = await answer(
      c.request(ApiKey.ListOffsets, 3, (w) => {
        w.int32(-1).int8(0).int32(1).string("raw-int64-topic").int32(1).int32(0).int64(Date.now());
      }),
    );
    listed.int32();
    listed.int32();
    listed.string();
    listed.int32();
    listed.int32();
    expect(listed.int16()).toBe(ErrorCode.NONE);
    expect(int64(listed)).toBe(max);
    expect(listed.int64()).toBe(0);
  });
});

describe("Kafka test broker and int64 values past 2^53", () => {
  it("tells apart producer ids and ListOffsets timestamps that differ past 2^53", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    const c = await RawClient.open(broker.port);
    // An int64 read exactly, as two int32 halves.
    const int64 = (r: Reader) => (BigInt(r.int32()) << 32n) | BigInt(r.int32() >>> 0);
    const big = 2n ** 53n;
    try {
      // Two producers whose ids a number cannot tell apart, each with its first batch. The old
      // broker took the second for a retry of the first's: acknowledged at offset 0, not stored.
      broker.createTopic("int64-producers", 1);
      for (const [id, value] of [
        [big, "from 2^53"],
        [big + 1n, "from 2^53 + 1"],
      ] as const) {
        const batch = recordBatch([{ key: null, value }], { id, epoch: 0, sequence: 0 });
        expect(await produce(c, "int64-producers", 0, batch)).toEqual([
          ErrorCode.NONE,
          id === big ? 0 : 1,
        ]);
      }
      expect(await latestOffset(c, "int64-producers", 0)).toBe(2);

      // Records stamped 2^53 and 2^53 + 1 (a delta of 1 from the base timestamp).
      broker.createTopic("int64-timestamps", 1);
      const batch = recordBatch([
        { key: null, value: "at 2^53" },
        { key: null, value: "at 2^53 + 1", timestampDelta: 1 },
      ]);
      batch.writeBigInt64BE(big, 27);
      batch.writeBigInt64BE(big + 1n, 35);
      batch.writeUInt32BE(crc32c(batch, 21), 17);
      expect(await produce(c, "int64-timestamps", 0, batch)).toEqual([ErrorCode.NONE, 0]);
      const listed = async (timestamp: bigint): Promise<[bigint, number]> => {
        const r = await c.request(ApiKey.ListOffsets, 3, (w) => {
          w.int32(-1).int8(0).int32(1).string("int64-timestamps").int32(1).int32(0);
          w.int64(timestamp);
        });
        r.int32();
        r.int32();
        r.string();
        r.int32();
        r.int32();
        expect(r.int16()).toBe(ErrorCode.NONE);
        return [int64(r), r.int64()];
      };
      // The old broker read 2^53 + 1 as 2^53 and found the first record.
      expect(await listed(big + 1n)).toEqual([big + 1n, 1]);
      expect(await listed(big)).toEqual([big, 0]);
      expect(await listed(big + 2n)).toEqual([-1n, -1]);
    } finally {
      c.close();
      await broker.stop();
    }
  });
});

describe("Kafka test broker lifecycle", () => {
  it("stop() closes client connections and frees the port", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    const c = await RawClient.open(broker.port);
    const r = await c.request(ApiKey.ApiVersions, 2, () => {});
    expect(r.int16()).toBe(ErrorCode.NONE);
    await broker.stop();
    await c.closed;
    const again = await startKafkaBroker({ port: broker.port, log: () => {} });
    expect(again.port).toBe(broker.port);
    await again.stop();
  });

  it("refuses to start on a port already in use", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    try {
      await expect(startKafkaBroker({ port: broker.port, log: () => {} })).rejects.toThrow(
        /EADDRINUSE/,
      );
    } finally {
      await broker.stop();
    }
  });

  it("restart() drops connections mid-fetch and serves the same data on the same port", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    try {
      broker.createTopic("life", 1);
      const c = await RawClient.open(broker.port);
      expect((await produce(c, "life", 0, recordBatch([{ key: "k", value: "v" }])))[0]).toBe(0);
      void fetchOnce(c, "life", 1, 30_000).catch(() => {}); // parked
      await new Promise((r) => setTimeout(r, 50));
      await broker.restart();
      await c.closed;
      const d = await RawClient.open(broker.port);
      expect(await latestOffset(d, "life", 0)).toBe(1);
      d.close();
    } finally {
      await broker.stop();
    }
  });

  it.each([
    [
      { maxFrameBytes: Number.NaN },
      /maxFrameBytes must be a whole number of bytes, 64 or more, got NaN/,
    ],
    [{ maxFrameBytes: -1 }, /maxFrameBytes .* got -1/],
    [
      { defaultPartitions: 20_000 },
      /defaultPartitions must be a whole number from 1 to 10000, got 20000/,
    ],
    [{ defaultPartitions: 0 }, /defaultPartitions .* got 0/],
    [{ port: -1 }, /port must be a whole number from 0 \(a free port\) to 65535, got -1/],
    [{ port: "9092" }, /port .* got "9092"/],
    [{ host: "" }, /host must be a non-empty string/],
    [{ autoCreateTopics: "false" }, /autoCreateTopics must be true or false, got "false"/],
    [{ traceRequests: 1 }, /traceRequests must be true or false, got 1/],
    [{ log: "console" }, /log must be a function taking one line, got "console"/],
    [
      { stalledFrameTimeoutMs: 0 },
      /stalledFrameTimeoutMs must be a whole number of milliseconds from 1 to 2147483647, got 0/,
    ],
    [{ stalledFrameTimeoutMs: 2 ** 31 }, /stalledFrameTimeoutMs .* got 2147483648/],
  ])("refuses the option %j before it listens", async (options, message) => {
    await expect(startKafkaBroker(options as never)).rejects.toThrow(message);
  });

  it("answers DeleteGroups v0 and v1 per group: deleted, unknown, empty id, named twice", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    const c = await RawClient.open(broker.port);
    try {
      const versions = await c.request(ApiKey.ApiVersions, 2, () => {});
      versions.int16();
      const apis = versions.array((r) => ({ key: r.int16(), min: r.int16(), max: r.int16() }));
      expect(apis.find((a) => a.key === ApiKey.DeleteGroups)).toEqual({ key: 42, min: 0, max: 1 });

      broker.createTopic("raw-delete-topic", 1);
      const commit = async (group: string, generation: number, memberId: string) => {
        const r = await c.request(ApiKey.OffsetCommit, 5, (w) => {
          w.string(group).int32(generation).string(memberId);
          w.int32(1).string("raw-delete-topic").int32(1).int32(0).int64(7).nullableString(null);
        });
        r.int32();
        r.int32();
        r.string();
        r.int32();
        r.int32();
        return r.int16();
      };
      const deleteGroups = async (version: number, ids: string[]) => {
        const r = await c.request(ApiKey.DeleteGroups, version, (w) => {
          w.array(ids, (w, id) => w.string(id));
        });
        expect(r.int32()).toBe(0); // throttle_time_ms
        const results = r.array((r) => [r.string(), r.int16()] as const);
        expect(r.remaining).toBe(0);
        return results;
      };
      // A standalone commit (generation -1, no member) makes an empty group with offsets; a commit
      // refused for an unknown member makes no group.
      expect(await commit("raw-delete-standalone", -1, "")).toBe(ErrorCode.NONE);
      expect(await commit("raw-delete-refused", 3, "nobody")).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
      expect(
        await deleteGroups(0, [
          "raw-delete-standalone",
          "raw-delete-refused",
          "",
          "raw-delete-standalone",
        ]),
      ).toEqual([
        ["raw-delete-standalone", ErrorCode.NONE],
        ["raw-delete-refused", ErrorCode.GROUP_ID_NOT_FOUND],
        ["", ErrorCode.INVALID_GROUP_ID],
      ]);
      expect(await deleteGroups(1, ["raw-delete-standalone"])).toEqual([
        ["raw-delete-standalone", ErrorCode.GROUP_ID_NOT_FOUND],
      ]);
    } finally {
      c.close();
      await broker.stop();
    }
  });

  it("names an IPv6 host in brackets in its bootstrap address", async () => {
    const broker = await startKafkaBroker({ host: "::1", log: () => {} });
    try {
      expect(broker.brokers).toEqual([`[::1]:${broker.port}`]);
    } finally {
      await broker.stop();
    }
  });

  it("validates createTopic arguments", async () => {
    const broker = await startKafkaBroker({ log: () => {} });
    try {
      expect(() => broker.createTopic("bad name!")).toThrow(RangeError);
      expect(() => broker.createTopic(undefined as never)).toThrow(/invalid topic name undefined/);
      expect(() => broker.createTopic("t", 1.5)).toThrow(/invalid partition count 1.5: a whole/);
      expect(() => broker.createTopic("ok", 0)).toThrow(RangeError);
      broker.createTopic("ok", 2);
      broker.createTopic("ok", 5); // exists: no-op
      const c = await RawClient.open(broker.port);
      expect(await latestOffset(c, "ok", 1)).toBe(0);
      c.close();
    } finally {
      await broker.stop();
    }
  });
});

describe("Kafka test broker under hostile input", () => {
  it("survives random frames and mutated requests, and keeps serving", async () => {
    const logged: string[] = [];
    const broker = await startKafkaBroker({ log: (l) => logged.push(l), maxFrameBytes: 1 << 16 });
    try {
      broker.createTopic("fuzz", 2);
      // Deterministic pseudo-random numbers (xorshift), so a failure is reproducible.
      let seed = Number(process.env.KAFKA_BROKER_FUZZ_SEED ?? 0x2545f491);
      const rand = (n: number) => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % n;
      };
      const valid: [number, number, (w: Writer) => void][] = [
        [ApiKey.Metadata, 6, (w) => w.int32(1).string("fuzz").bool(true)],
        [
          ApiKey.Produce,
          7,
          (w) => {
            w.nullableString(null).int16(1).int32(1000).int32(1).string("fuzz").int32(1).int32(0);
            w.nullableBytes(recordBatch([{ key: "k", value: "v", headers: [["h", "x"]] }]));
          },
        ],
        [
          ApiKey.Fetch,
          11,
          (w) => {
            w.int32(-1)
              .int32(10)
              .int32(1)
              .int32(1 << 20)
              .int8(0)
              .int32(0)
              .int32(-1);
            w.int32(1)
              .string("fuzz")
              .int32(1)
              .int32(0)
              .int32(-1)
              .int64(0)
              .int64(-1)
              .int32(1 << 20);
            w.int32(0).string("");
          },
        ],
        [
          ApiKey.JoinGroup,
          5,
          (w) => {
            w.string("fuzz-g")
              .int32(100)
              .int32(100)
              .string("")
              .nullableString(null)
              .string("consumer");
            w.int32(1).string("range").nullableBytes(Buffer.from("m"));
          },
        ],
        [
          ApiKey.OffsetCommit,
          2,
          (w) =>
            w
              .string("fuzz-g")
              .int32(-1)
              .string("")
              .int64(-1)
              .int32(1)
              .string("fuzz")
              .int32(1)
              .int32(0)
              .int64(1)
              .nullableString(null),
        ],
        [
          ApiKey.ListOffsets,
          3,
          (w) => w.int32(-1).int8(0).int32(1).string("fuzz").int32(1).int32(0).int64(-2),
        ],
        [
          ApiKey.CreateTopics,
          3,
          (w) =>
            w
              .int32(1)
              .string("fuzz-new")
              .int32(2)
              .int16(1)
              .int32(0)
              .int32(0)
              .int32(100)
              .bool(false),
        ],
      ];
      const rounds = Number(process.env.KAFKA_BROKER_FUZZ_ROUNDS ?? 150);
      for (let round = 0; round < rounds; round++) {
        const socket = connect(broker.port, "127.0.0.1");
        socket.on("error", () => {});
        await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
        let frame: Buffer;
        if (round % 3 === 0) {
          frame = Buffer.alloc(4 + rand(64));
          for (let i = 4; i < frame.length; i++) frame[i] = rand(256);
          frame.writeInt32BE(frame.length - 4, 0);
        } else {
          const [key, version, body] = valid[rand(valid.length)] as (typeof valid)[number];
          const w = new Writer().int16(key).int16(version).int32(round).nullableString("fuzz");
          body(w);
          const payload = Buffer.from(w.finish());
          const flips = 1 + rand(4);
          for (let f = 0; f < flips; f++) {
            const at = 4 + rand(Math.max(1, payload.length - 4)); // keep key and version mostly
            payload[at] = rand(256);
          }
          const cut = rand(4) === 0 ? rand(payload.length) : payload.length;
          frame = Buffer.alloc(4 + cut);
          frame.writeInt32BE(cut, 0);
          payload.copy(frame, 4, 0, cut);
        }
        socket.write(frame);
        await new Promise((r) => setTimeout(r, 5));
        socket.destroy();
      }
      const c = await RawClient.open(broker.port);
      const r = await c.request(ApiKey.ApiVersions, 2, () => {});
      expect(r.int16()).toBe(ErrorCode.NONE);
      expect(await latestOffset(c, "fuzz", 1)).toBeGreaterThanOrEqual(0);
      c.close();
      expect(logged.some((l) => l.startsWith("closing connection"))).toBe(true);
      expect(logged.filter((l) => l.includes("error handling"))).toEqual([]);
      if (process.env.KAFKA_BROKER_FUZZ_ROUNDS) console.log(logged.join("\n"));
    } finally {
      await broker.stop();
    }
  });
});

describe("Kafka test broker and a client that does not read its responses", () => {
  it("handles no more of its requests until it reads, so its responses do not pile up in memory", async () => {
    const handled: string[] = [];
    const broker = await startKafkaBroker({
      log: (l) => {
        if (l.includes("from slow-reader")) handled.push(l);
      },
      traceRequests: true,
    });
    const sockets: Socket[] = [];
    try {
      broker.createTopic("slow-reader-topic", 1);
      const producer = await RawClient.open(broker.port);
      sockets.push(producer.socket);
      // One batch of 1 MiB (16 records of 64 KiB): each fetch below is answered with all of it.
      const [error] = await produce(
        producer,
        "slow-reader-topic",
        0,
        recordBatch(Array.from({ length: 16 }, () => ({ key: null, value: "x".repeat(1 << 16) }))),
      );
      expect(error).toBe(ErrorCode.NONE);

      const requests = 300;
      const frames: Buffer[] = [];
      for (let id = 1; id <= requests; id++) {
        const w = new Writer();
        w.int16(ApiKey.Fetch).int16(11).int32(id).nullableString("slow-reader");
        w.int32(-1)
          .int32(0)
          .int32(1)
          .int32(2 << 20)
          .int8(0)
          .int32(0)
          .int32(-1);
        w.int32(1)
          .string("slow-reader-topic")
          .int32(1)
          .int32(0)
          .int32(-1)
          .int64(0)
          .int64(-1)
          .int32(2 << 20);
        w.int32(0).string("");
        const body = w.finish();
        frames.push(new Writer().int32(body.length).raw(body).finish().slice());
      }
      // 300 requests of under 100 bytes, each answered with 1 MiB, from a client that reads
      // nothing: the old broker handled all of them at once and held 300 MiB of responses.
      const slow = connect(broker.port, "127.0.0.1");
      sockets.push(slow);
      slow.pause();
      await new Promise<void>((resolve) => slow.once("connect", () => resolve()));
      slow.write(Buffer.concat(frames));
      // What is not handled cannot be awaited: give the broker time it would use to handle them.
      const settle = Date.now() + 1000;
      while (Date.now() < settle && handled.length < requests) {
        await new Promise((r) => setTimeout(r, 50));
      }
      // What the socket buffers take before the broker waits (a few MiB), not all 300.
      expect(handled.length).toBeGreaterThan(0);
      expect(handled.length).toBeLessThan(40);

      // Once the client reads, every request is answered, in order.
      const ids: number[] = [];
      let buffered = Buffer.alloc(0);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${ids.length} of ${requests} responses within 20 s`)),
          20_000,
        );
        slow.on("data", (chunk: Buffer) => {
          buffered = Buffer.concat([buffered, chunk]);
          while (buffered.length >= 4 && buffered.length >= buffered.readInt32BE(0) + 4) {
            ids.push(buffered.readInt32BE(4));
            buffered = buffered.subarray(buffered.readInt32BE(0) + 4);
          }
          if (ids.length === requests) {
            clearTimeout(timer);
            resolve();
          }
        });
        slow.resume();
      });
      expect(ids).toEqual(Array.from({ length: requests }, (_, i) => i + 1));
    } finally {
      for (const s of sockets) s.destroy();
      await broker.stop();
    }
  });
});

describe("Kafka test broker and large requests queued behind a parked fetch", () => {
  it("stops reading once about maxFrameBytes of requests wait, not after 64 of any size", async () => {
    const broker = await startKafkaBroker({ log: () => {}, maxFrameBytes: 1 << 20 });
    const sockets: Socket[] = [];
    try {
      broker.createTopic("queued-bytes-topic", 1);
      const frame = (id: number, body: (w: Writer) => void, padTo = 0): Buffer => {
        const w = new Writer();
        w.int16(id === 1 ? ApiKey.Fetch : ApiKey.ApiVersions)
          .int16(id === 1 ? 11 : 0)
          .int32(id)
          .nullableString("queued-bytes");
        body(w);
        const payload = Buffer.alloc(Math.max(padTo, w.finish().length));
        w.finish().copy(payload);
        return new Writer().int32(payload.length).raw(payload).finish().slice();
      };
      // A fetch parked for 30 s holds the connection; behind it, 60 requests of almost 1 MiB each
      // (ApiVersions reads no body, so the padding is ignored), 60 MiB in all.
      const parked = frame(1, (w) => {
        w.int32(-1)
          .int32(30_000)
          .int32(1)
          .int32(1 << 20)
          .int8(0)
          .int32(0)
          .int32(-1);
        w.int32(1)
          .string("queued-bytes-topic")
          .int32(1)
          .int32(0)
          .int32(-1)
          .int64(0)
          .int64(-1)
          .int32(1 << 20);
        w.int32(0).string("");
      });
      const requests = 60;
      const client = connect(broker.port, "127.0.0.1");
      sockets.push(client);
      await new Promise<void>((resolve) => client.once("connect", () => resolve()));
      const ids: number[] = [];
      let buffered = Buffer.alloc(0);
      const answered = new Promise<void>((resolve) => {
        client.on("data", (chunk: Buffer) => {
          buffered = Buffer.concat([buffered, chunk]);
          while (buffered.length >= 4 && buffered.length >= buffered.readInt32BE(0) + 4) {
            ids.push(buffered.readInt32BE(4));
            buffered = buffered.subarray(buffered.readInt32BE(0) + 4);
          }
          if (ids.length === requests + 1) resolve();
        });
      });
      client.write(parked);
      for (let id = 2; id <= requests + 1; id++) client.write(frame(id, () => {}, (1 << 20) - 64));
      // The old broker read on until 64 requests waited: all 60 MiB, and so 6.4 GB with the
      // default 100 MiB limit. What it does not read cannot be awaited: give it the time.
      const settle = Date.now() + 1000;
      while (Date.now() < settle && client.writableLength > 0) {
        await new Promise((r) => setTimeout(r, 50));
      }
      // The broker holds about 1 MiB, the kernel's socket buffers a few more: the rest stays here.
      expect(client.writableLength).toBeGreaterThan(30 << 20);

      // A record wakes the fetch; then every request is answered, in order.
      const producer = await RawClient.open(broker.port);
      sockets.push(producer.socket);
      const [error] = await produce(
        producer,
        "queued-bytes-topic",
        0,
        recordBatch([{ key: null, value: "wake" }]),
      );
      expect(error).toBe(ErrorCode.NONE);
      await Promise.race([
        answered,
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new Error(`only ${ids.length} of ${requests + 1} answers within 20 s`)),
            20_000,
          ),
        ),
      ]);
      expect(ids).toEqual(Array.from({ length: requests + 1 }, (_, i) => i + 1));
    } finally {
      for (const s of sockets) s.destroy();
      await broker.stop();
    }
  });
});

describe("Kafka test broker and a client that stalls mid-frame", () => {
  it("closes a connection that sent part of a frame and then nothing for stalledFrameTimeoutMs", async () => {
    const timeout = 300;
    const logged: string[] = [];
    const broker = await startKafkaBroker({
      log: (line) => logged.push(line),
      stalledFrameTimeoutMs: timeout,
    });
    const clients: RawClient[] = [];
    const open = async (): Promise<RawClient> => {
      const c = await RawClient.open(broker.port);
      clients.push(c);
      return c;
    };
    const within = <T>(ms: number, what: string, p: Promise<T>): Promise<T> =>
      Promise.race([
        p,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms),
        ),
      ]);
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // An ApiVersions v2 request, framed, to send in pieces.
    const w = new Writer();
    w.int16(ApiKey.ApiVersions).int16(2).int32(7).nullableString("stall-test");
    const payload = w.finish();
    const frame = Buffer.alloc(4 + payload.length);
    frame.writeInt32BE(payload.length, 0);
    payload.copy(frame, 4);
    try {
      // A size that promises 1 MiB, and 100 bytes of it: the old broker held them as long as
      // the client stayed connected.
      const stalled = await open();
      const started = Date.now();
      const head = Buffer.alloc(104);
      head.writeInt32BE(1 << 20, 0);
      stalled.socket.write(head);
      await within(10 * timeout, "the stalled connection was not closed", stalled.closed);
      expect(Date.now() - started).toBeGreaterThanOrEqual(timeout - 50);
      expect(logged.some((l) => l.includes("stalledFrameTimeoutMs"))).toBe(true);

      // The timeout runs from the last data, not from the frame's first byte: a frame sent in
      // three pieces, each well within the timeout but the whole longer, is answered.
      const slow = await open();
      let slowClosed = false;
      void slow.closed.then(() => {
        slowClosed = true;
      });
      const answered = new Promise<number>((resolve) =>
        slow.socket.on("data", (chunk: Buffer) => resolve(chunk.readInt32BE(4))),
      );
      slow.socket.write(frame.subarray(0, 2)); // not even the whole size
      await pause(timeout * 0.6);
      slow.socket.write(frame.subarray(2, 10));
      await pause(timeout * 0.6);
      expect(slowClosed).toBe(false);
      slow.socket.write(frame.subarray(10));
      expect(await within(10 * timeout, "the slow frame was not answered", answered)).toBe(7);

      // A connection idle between frames is kept.
      const idle = await open();
      const first = await idle.request(ApiKey.ApiVersions, 2, () => {});
      expect(first.int16()).toBe(ErrorCode.NONE);
      let idleClosed = false;
      void idle.closed.then(() => {
        idleClosed = true;
      });
      await pause(timeout * 3);
      expect(idleClosed).toBe(false);
      const again = await idle.request(ApiKey.ApiVersions, 2, () => {});
      expect(again.int16()).toBe(ErrorCode.NONE);
      expect(slowClosed).toBe(false);
    } finally {
      for (const c of clients) c.close();
      await broker.stop();
    }
  });
});

describe("Kafka test broker group timeouts", () => {
  let broker: KafkaTestBroker;
  const clients: RawClient[] = [];

  beforeAll(async () => {
    broker = await startKafkaBroker({ log: () => {} });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await broker?.stop();
  });

  async function join(group: string, sessionMs: number, rebalanceMs: number, memberId = "") {
    const c = await RawClient.open(broker.port);
    clients.push(c);
    const r = await c.request(ApiKey.JoinGroup, 5, (w) => {
      w.string(group)
        .int32(sessionMs)
        .int32(rebalanceMs)
        .string(memberId)
        .nullableString(null)
        .string("consumer");
      w.int32(1).string("range").nullableBytes(Buffer.alloc(0));
    });
    r.int32();
    const error = r.int16();
    const generation = r.int32();
    r.string();
    r.string();
    const id = r.string();
    const members = r.array((r) => [r.string(), r.nullableString(), r.bytes()]).length;
    return { c, error, generation, id, members };
  }

  async function heartbeat(c: RawClient, group: string, generation: number, memberId: string) {
    const r = await c.request(ApiKey.Heartbeat, 3, (w) => {
      w.string(group).int32(generation).string(memberId).nullableString(null);
    });
    r.int32();
    return r.int16();
  }

  it("removes a member whose session expires", async () => {
    const a = await join("expire-session", 150, 150);
    expect(a).toMatchObject({ error: 0, generation: 1 });
    expect(await heartbeat(a.c, "expire-session", 1, a.id)).toBe(ErrorCode.NONE);
    await new Promise((r) => setTimeout(r, 400));
    expect(await heartbeat(a.c, "expire-session", 1, a.id)).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
  });

  it("completes a rebalance without a member that does not rejoin within the rebalance timeout", async () => {
    const a = await join("expire-rebalance", 10_000, 300);
    expect(a.generation).toBe(1);
    const started = Date.now();
    const b = await join("expire-rebalance", 10_000, 300); // a never rejoins
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(b).toMatchObject({ error: 0, generation: 2, members: 1 });
    expect(await heartbeat(a.c, "expire-rebalance", 1, a.id)).toBe(ErrorCode.UNKNOWN_MEMBER_ID);
  });
});

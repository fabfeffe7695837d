import {
  contentModeOf,
  DELIVERY_COUNT_HEADER,
  declaredKeyMapper,
  fromKafkaRecord,
  kafkaRecordToMessage,
  partitionKeyMapper,
  readKafkaRecord,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import { CloudEvent, ExtensionRegistry, isPosthornError, SPEC_EXTENSIONS } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { expectEquivalent, vector } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import { asReceived } from "./wire.js";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (err) {
    expect(isPosthornError(err), `untyped: ${String(err)}`).toBe(true);
    return (err as { code: string }).code;
  }
  return undefined;
}

describe("toKafkaRecord", () => {
  it("writes attributes as ce_ headers and datacontenttype as content-type (3.2.1, 3.2.3)", () => {
    const record = toKafkaRecord(vector("all-context-attributes").event);
    expect(record.headers).toEqual({
      ce_specversion: "1.0",
      ce_id: "A234-1234-1234",
      ce_source: "https://github.com/cloudevents/spec/pull",
      ce_type: "com.github.pull_request.opened",
      ce_dataschema: "https://example.com/schemas/pull-request.json",
      ce_subject: "123",
      ce_time: "2018-04-05T17:31:00Z",
      "content-type": "application/json",
    });
    expect(JSON.parse(Buffer.from(record.value as Uint8Array).toString())).toEqual({
      action: "opened",
      number: 123,
    });
  });

  it("writes typed extensions as canonical strings", () => {
    const record = toKafkaRecord(
      new CloudEvent({ ...base, flag: true, n: -5, bin: new Uint8Array([1, 2, 255]) }),
    );
    expect(record.headers.ce_flag).toBe("true");
    expect(record.headers.ce_n).toBe("-5");
    expect(record.headers.ce_bin).toBe("AQL/");
  });

  it("maps an event without data to a record without a value: a tombstone (3.2.2)", () => {
    const record = toKafkaRecord(vector("minimal").event);
    expect(record.value).toBeNull();
    expect(record.headers["content-type"]).toBeUndefined();
  });

  it("keeps a value in structured mode even without data (3.3.2)", () => {
    const record = toKafkaRecord(vector("minimal").event, { mode: "structured", format: json });
    expect(record.value).not.toBeNull();
    expect(record.headers).toEqual({
      "content-type": "application/cloudevents+json; charset=UTF-8",
    });
  });

  it("uses the caller's key by default, not partitionkey (3.1)", () => {
    const event = vector("partitionkey").event;
    expect(toKafkaRecord(event).key).toBeNull();
    expect(toKafkaRecord(event, { key: "mine" }).key).toBe("mine");
  });

  it("puts partitionkey into the key with the opt-in mapper, and keeps the attribute (3.1)", () => {
    const event = vector("partitionkey").event;
    const record = toKafkaRecord(event, { keyMapper: partitionKeyMapper, key: "fallback" });
    expect(record.key).toBe("customer-42");
    expect(record.headers.ce_partitionkey).toBe("customer-42");
    expect(
      toKafkaRecord(vector("minimal").event, { keyMapper: partitionKeyMapper, key: "fallback" })
        .key,
    ).toBe("fallback");
  });

  it("maps declared extensions placed in the key", () => {
    const registry = new ExtensionRegistry(SPEC_EXTENSIONS).declare({
      name: "tenant",
      type: "String",
      placement: { kafka: "key" },
    });
    const mapper = declaredKeyMapper(registry);
    expect(
      toKafkaRecord(new CloudEvent({ ...base, tenant: "acme" }), { keyMapper: mapper }).key,
    ).toBe("acme");
    expect(
      toKafkaRecord(new CloudEvent({ ...base, partitionkey: "p" }), { keyMapper: mapper }).key,
    ).toBe("p");
  });

  it("accepts a user-supplied key mapper, which cannot change the event", () => {
    const event = vector("typical").event;
    const record = toKafkaRecord(event, { keyMapper: (e) => `${e.source}|${e.subject}` });
    expect(record.key).toBe("/orders/service|order/42");
    expect(record.headers.ce_subject).toBe("order/42");
  });

  it("refuses batch mode and structured mode without a format", () => {
    const event = vector("minimal").event;
    expect(codeOf(() => toKafkaRecord(event, { mode: "batch" as never }))).toBe("NotSupported");
    expect(codeOf(() => toKafkaRecord(event, { mode: "structured" }))).toBe("NotSupported");
  });

  it("validates plain objects before encoding", () => {
    expect(codeOf(() => toKafkaRecord({ ...base, id: "" }))).toBe("InvalidEvent");
  });
});

describe("fromKafkaRecord", () => {
  const headers = { ce_specversion: "1.0", ce_id: "1", ce_source: "/s", ce_type: "t" };

  it("reads header values given as Buffers, strings, and one-element arrays", () => {
    const event = fromKafkaRecord({
      key: null,
      value: Buffer.from("hi"),
      headers: {
        ce_specversion: Buffer.from("1.0"),
        ce_id: ["1"],
        ce_source: [Buffer.from("/s")],
        ce_type: "t",
        ce_note: Buffer.from("héllo 𝄞"),
        "content-type": Buffer.from("text/plain"),
      },
    });
    expect(event.id).toBe("1");
    expect(event.source).toBe("/s");
    expect(event.note).toBe("héllo 𝄞");
    expect(event.data).toBe("hi");
  });

  it("rejects a repeated ce_ header with a typed error", () => {
    expect(
      codeOf(() =>
        fromKafkaRecord({ key: null, value: null, headers: { ...headers, ce_id: ["1", "2"] } }),
      ),
    ).toBe("MalformedInput");
  });

  it("rejects attribute headers that differ only in the prefix's case", () => {
    expect(
      codeOf(() =>
        fromKafkaRecord({ key: null, value: null, headers: { ...headers, CE_id: "2" } }),
      ),
    ).toBe("MalformedInput");
  });

  it("rejects invalid UTF-8 in a header", () => {
    expect(
      codeOf(() =>
        fromKafkaRecord({
          key: null,
          value: null,
          headers: { ...headers, ce_note: Buffer.from([0x61, 0xc0, 0xa0]) },
        }),
      ),
    ).toBe("MalformedInput");
  });

  it("refuses __proto__ and constructor as attribute names without polluting anything", () => {
    for (const name of ["ce___proto__", "ce_constructor_", "ce_prototype!"]) {
      const code = codeOf(() =>
        fromKafkaRecord({ key: null, value: null, headers: { ...headers, [name]: "{}" } }),
      );
      expect(code).toBe("InvalidEvent");
    }
    const event = fromKafkaRecord({
      key: null,
      value: null,
      headers: { ...headers, ce_constructor: "x" },
    });
    expect(event.constructor).toBe("x");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("reads the properties of any header value without throwing: one with no text is null", () => {
    const record = {
      key: null,
      value: null,
      headers: { ...headers, odd: Object.create(null), n: 7 as never },
    };
    const { message } = readKafkaRecord(record as never);
    expect(message.properties.odd).toBeNull();
    expect(message.properties.n).toBe("7");
  });

  it("refuses a ce_data header: data is the value, never an attribute", () => {
    for (const value of [null, Buffer.alloc(0), Buffer.from("{}")]) {
      const record = {
        key: null,
        value,
        headers: { ...headers, "content-type": "application/json", ce_data: '{"admin":true}' },
      };
      expect(codeOf(() => fromKafkaRecord(record))).toBe("InvalidEvent");
      expect(readKafkaRecord(record).error?.code).toBe("InvalidEvent");
    }
  });

  it("restores declared extension types", () => {
    const event = fromKafkaRecord({
      key: null,
      value: null,
      headers: {
        ...headers,
        ce_severitynumber: Buffer.from("17"),
        ce_deprecated: Buffer.from("true"),
        ce_recordedtime: Buffer.from("2024-01-02T03:04:05.678Z"),
        ce_priority: Buffer.from("42"),
      },
    });
    expect(event.severitynumber).toBe(17);
    expect(event.deprecated).toBe(true);
    expect(event.recordedtime).toBe("2024-01-02T03:04:05.678Z");
    expect(event.priority).toBe("42");
    const registry = new ExtensionRegistry().declare({ name: "priority", type: "Integer" });
    expect(
      fromKafkaRecord(
        { key: null, value: null, headers: { ...headers, ce_priority: "42" } },
        { registry },
      ).priority,
    ).toBe(42);
    expect(
      codeOf(() =>
        fromKafkaRecord(
          { key: null, value: null, headers: { ...headers, ce_priority: "forty" } },
          { registry },
        ),
      ),
    ).toBe("InvalidEvent");
  });

  it("reads a tombstone with ce_ headers as an event without data (3.2.2)", () => {
    const event = fromKafkaRecord({ key: Buffer.from("k"), value: null, headers });
    expect(event.hasData()).toBe(false);
  });

  it("does not take the key as an attribute", () => {
    const event = fromKafkaRecord({ key: Buffer.from("k"), value: null, headers });
    expect(event.partitionkey).toBeUndefined();
  });

  it("refuses a structured record without a value", () => {
    expect(
      codeOf(() =>
        fromKafkaRecord(
          { key: null, value: null, headers: { "content-type": "application/cloudevents+json" } },
          { formats: [json] },
        ),
      ),
    ).toBe("MalformedInput");
  });

  it("detects structured mode by content-type prefix, case-insensitively", () => {
    const record = asReceived(
      toKafkaRecord(vector("typical").event, { mode: "structured", format: json }),
    );
    const upper = { ...record, headers: { "content-type": "Application/CloudEvents+JSON" } };
    expect(contentModeOf(upper)).toBe("structured");
    expectEquivalent(fromKafkaRecord(upper, { formats: [json] }), vector("typical").event);
  });

  it("says UnsupportedContentType for a format it was not given, and for a batch", () => {
    const avro = {
      key: null,
      value: Buffer.from([1]),
      headers: { "content-type": "application/cloudevents+avro" },
    };
    expect(codeOf(() => fromKafkaRecord(avro, { formats: [json] }))).toBe("UnsupportedContentType");
    // The message says which option to set, and what it holds.
    expect(() => fromKafkaRecord(avro, { formats: [json] })).toThrow(
      /application\/cloudevents\+avro \(options\.formats reads application\/cloudevents\+json\): add the format for it to options\.formats/,
    );
    expect(() => fromKafkaRecord(avro)).toThrow(/\(options\.formats is empty\)/);
    const batch = {
      key: null,
      value: Buffer.from("[]"),
      headers: { "content-type": "application/cloudevents-batch+json" },
    };
    expect(codeOf(() => fromKafkaRecord(batch, { formats: [json] }))).toBe(
      "UnsupportedContentType",
    );
  });

  it("enforces the value size and header count limits", () => {
    expect(
      codeOf(() =>
        fromKafkaRecord(
          {
            key: null,
            value: Buffer.alloc(11),
            headers: { ...headers, "content-type": "application/octet-stream" },
          },
          { maxValueBytes: 10 },
        ),
      ),
    ).toBe("PayloadTooLarge");
    const many: Record<string, string> = { ...headers };
    for (let i = 0; i < 300; i++) many[`x-${i}`] = "v";
    expect(codeOf(() => fromKafkaRecord({ key: null, value: null, headers: many }))).toBe(
      "PayloadTooLarge",
    );
  });

  it("says MalformedInput for a record that is no CloudEvent", () => {
    expect(codeOf(() => fromKafkaRecord({ key: null, value: Buffer.from("x"), headers: {} }))).toBe(
      "MalformedInput",
    );
  });

  it("uses ce_datacontenttype when content-type is missing", () => {
    const event = fromKafkaRecord({
      key: null,
      value: Buffer.from('{"a":1}'),
      headers: { ...headers, ce_datacontenttype: "application/json" },
    });
    expect(event.data).toEqual({ a: 1 });
  });

  it("never throws anything but typed errors on arbitrary headers", () => {
    const values: unknown[] = [
      null,
      undefined,
      "",
      "x",
      Buffer.from([0xff]),
      [],
      ["a", "b"],
      5,
      {},
    ];
    for (const v of values) {
      for (const name of ["ce_id", "content-type", "ce_specversion", "ce_time", "other"]) {
        const record = { key: null, value: null, headers: { ...headers, [name]: v } } as never;
        const result = readKafkaRecord(record);
        expect(
          result.event !== undefined || result.error !== undefined || result.mode === undefined,
        ).toBe(true);
        if (result.error) expect(isPosthornError(result.error)).toBe(true);
      }
    }
  });
});

describe("kafkaRecordToMessage / readKafkaRecord", () => {
  it("gives records that are no CloudEvents as messages with key, headers and metadata", () => {
    const result = readKafkaRecord(
      {
        key: Buffer.from("k1"),
        value: Buffer.from("plain"),
        headers: {
          "content-type": Buffer.from("text/plain"),
          trace: [Buffer.from("a"), Buffer.from("b")],
          raw: Buffer.from([0xff, 0xfe]),
          __proto__: Buffer.from("p"),
        } as never,
        timestamp: "1700000000000",
      },
      {},
      { topic: "t", partition: 2, offset: "17" },
    );
    expect(result.event).toBeUndefined();
    expect(result.error).toBeUndefined();
    expect(result.mode).toBeUndefined();
    const m = result.message;
    expect(Buffer.from(m.body).toString()).toBe("plain");
    expect(m.contentType).toBe("text/plain");
    expect(m.properties.trace).toEqual(["a", "b"]);
    expect(m.properties.raw).toEqual(Buffer.from([0xff, 0xfe]));
    expect(m.metadata).toMatchObject({ topic: "t", partition: 2, offset: "17", tombstone: false });
    expect(Buffer.from(m.metadata?.key as Buffer).toString()).toBe("k1");
  });

  it("copies the caller's metadata as own members, a `__proto__` key included, polluting nothing", () => {
    const metadata = JSON.parse('{"topic":"t","__proto__":{"polluted":true}}') as Record<
      string,
      unknown
    >;
    const m = kafkaRecordToMessage({ key: null, value: Buffer.from("x"), headers: {} }, metadata);
    expect(Object.getPrototypeOf(m.metadata)).toBe(Object.prototype);
    expect(Object.hasOwn(m.metadata ?? {}, "__proto__")).toBe(true);
    expect((m.metadata as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(m.metadata).toMatchObject({ topic: "t", key: null, tombstone: false });
  });

  it("marks tombstones", () => {
    const m = kafkaRecordToMessage({ key: "k", value: null, headers: {} });
    expect(m.body.length).toBe(0);
    expect(m.metadata?.tombstone).toBe(true);
  });

  it("reports a record that claims to be a CloudEvent but is invalid as an error", () => {
    const result = readKafkaRecord({ key: null, value: null, headers: { ce_id: "1" } });
    expect(result.mode).toBe("binary");
    expect(result.error?.code).toBe("InvalidEvent");
  });

  it("leaves Posthorn's own headers out of the event", () => {
    const record = asReceived(toKafkaRecord(vector("typical").event));
    const event = fromKafkaRecord({
      ...record,
      headers: { ...record.headers, [DELIVERY_COUNT_HEADER]: Buffer.from("3") },
    });
    expectEquivalent(event, vector("typical").event);
  });
});

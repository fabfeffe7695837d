import {
  detectNatsMode,
  fromNatsMessage,
  type NatsMessageLike,
  toMessageEnvelope,
  toNatsMessage,
} from "@posthorn/binding-nats";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";
import {
  arbitraryHeaders,
  contentModePaths,
  describeMappingProperties,
  expectTypedError,
} from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const formats = [json, avro, protobuf];

/** What a subscriber does with a message: an event, a Message envelope, or a typed error. */
function receive(message: NatsMessageLike): unknown {
  if (detectNatsMode(message, { formats }) === undefined) return toMessageEnvelope(message);
  return fromNatsMessage(message, { formats });
}

/** The headers a NATS client hands over after a publish: what the encoder wrote, read back. */
function asReceived(m: ReturnType<typeof toNatsMessage>): NatsMessageLike {
  return { subject: "s", data: m.data, headers: m.headers };
}

const required = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "%2Fs", "ce-type": "t" };

const hostileMessages: fc.Arbitrary<NatsMessageLike> = fc.record({
  subject: fc.constant("hostile"),
  data: fc.oneof(
    fc.uint8Array({ maxLength: 128 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => new TextEncoder().encode(JSON.stringify(v))),
  ),
  headers: fc.oneof(
    arbitraryHeaders("ce-"),
    arbitraryHeaders("CE-").map((h) => ({ ...required, ...h })),
    arbitraryHeaders("ce-").map((h) => ({ ...required, ...h })),
    fc.dictionary(
      fc.constantFrom("ce-id", "ce-subject", "Content-Type", "x"),
      fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
    ),
  ),
});

describeMappingProperties({
  name: "nats",
  paths: contentModePaths(
    (e, mode) => fromNatsMessage(asReceived(toNatsMessage(e, mode)), { formats }),
    formats,
  ),
  hostileMessages,
  decode: receive,
});

const utf8 = (s: string) => new TextEncoder().encode(s);

// Named attacks not already in mapping.test.ts (which covers ce-__proto__ names, case-differing
// and repeated headers, overlong percent-escapes, header injection, and the size limits).
describe("named attacks on the NATS mapping", () => {
  it("a __proto__ member of JSON data stays a plain member", () => {
    const data = '{"__proto__":{"polluted":true}}';
    const binary = fromNatsMessage(
      { data: utf8(data), headers: { ...required, "ce-datacontenttype": "application/json" } },
      { formats },
    );
    const structured = fromNatsMessage(
      {
        data: utf8(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${data}}`),
        headers: { "Content-Type": json.contentType },
      },
      { formats },
    );
    for (const e of [binary, structured]) {
      expect(Object.hasOwn(e.data as object, "__proto__")).toBe(true);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("deeply nested JSON data is MalformedInput, not a stack overflow", () => {
    const deep = utf8(`${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}`);
    expectTypedError(
      () =>
        fromNatsMessage(
          { data: deep, headers: { ...required, "ce-datacontenttype": "application/json" } },
          { formats },
        ),
      ["MalformedInput"],
    );
  });

  it("the JSON nesting limit is json.maxDepth (the deprecated maxJsonDepth is still read)", () => {
    const nested = (n: number) => ({
      data: utf8(`${"[".repeat(n)}${"]".repeat(n)}`),
      headers: { ...required, "ce-datacontenttype": "application/json" },
    });
    expect(fromNatsMessage(nested(128), { formats }).data).toBeDefined();
    expectTypedError(() => fromNatsMessage(nested(129), { formats }), ["MalformedInput"]);
    expect(fromNatsMessage(nested(8), { formats, json: { maxDepth: 8 } }).data).toBeDefined();
    expectTypedError(
      () => fromNatsMessage(nested(9), { formats, json: { maxDepth: 8 } }),
      ["MalformedInput"],
    );
    expectTypedError(
      () => fromNatsMessage(nested(9), { formats, maxJsonDepth: 8 }),
      ["MalformedInput"],
    );
    expect(
      fromNatsMessage(nested(9), { formats, maxJsonDepth: 8, json: { maxDepth: 9 } }).data,
    ).toBeDefined();
  });

  it("invalid UTF-8 in text data arrives as the bytes sent (text that is not UTF-8 stays bytes)", () => {
    const bad = new Uint8Array([0xe2, 0x82]);
    const event = fromNatsMessage(
      { data: bad, headers: { ...required, "ce-datacontenttype": "text/plain" } },
      { formats },
    );
    expect(event.data).toEqual(bad);
  });

  it("specversion other than 1.0 is refused in binary and structured mode", () => {
    for (const v of ["0.3", "1.1", "2.0"]) {
      expectTypedError(
        () =>
          fromNatsMessage(
            { data: new Uint8Array(0), headers: { ...required, "ce-specversion": v } },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
      expectTypedError(
        () =>
          fromNatsMessage(
            {
              data: utf8(JSON.stringify({ specversion: v, id: "1", source: "/s", type: "t" })),
              headers: { "Content-Type": json.contentType },
            },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
    }
  });
});

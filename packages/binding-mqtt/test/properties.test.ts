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
import {
  classifyMqttMessage,
  fromMqttMessage,
  type MqttMessage,
  toMqttMessage,
  toPlainMessage,
} from "../src/index.js";

const formats = [json, avro, protobuf];

/** What the subscriber does with a message: an event, a plain message, or a typed error. */
function receive(message: MqttMessage, protocolVersion: 4 | 5): unknown {
  if (classifyMqttMessage(message, { protocolVersion }) === undefined) {
    return toPlainMessage(message);
  }
  return fromMqttMessage(message, { formats, protocolVersion });
}

const hostileMessages: fc.Arbitrary<MqttMessage & { version: 4 | 5 }> = fc.record(
  {
    version: fc.constantFrom(4 as const, 5 as const),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 128 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => new TextEncoder().encode(JSON.stringify(v))),
      fc
        .dictionary(
          fc.constantFrom("specversion", "id", "source", "type", "data", "__proto__"),
          fc.jsonValue({ maxDepth: 2 }),
        )
        .map((o) => new TextEncoder().encode(JSON.stringify(o))),
    ),
    contentType: fc.oneof(
      fc.constantFrom(
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "APPLICATION/CLOUDEVENTS+JSON",
        "text/plain",
        "application/cloudevents+avro",
      ),
      fc.string({ maxLength: 30 }),
    ),
    // MQTT 5 user properties carry attribute names without a prefix.
    userProperties: fc.oneof(
      arbitraryHeaders(""),
      arbitraryHeaders("").map((h) => ({
        ...h,
        specversion: "1.0",
        id: "1",
        source: "/s",
        type: "t",
      })),
      fc.dictionary(
        fc.string({ maxLength: 10 }),
        fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
      ),
    ),
  },
  { requiredKeys: ["version", "payload"] },
);

describeMappingProperties({
  name: "mqtt",
  paths: [
    ...contentModePaths(
      (e, mode) => fromMqttMessage(toMqttMessage(e, { ...mode, protocolVersion: 5 }), { formats }),
      formats,
      "MQTT 5 ",
    ),
    {
      label: "MQTT 3.1.1 structured JSON",
      roundTrip: (e) =>
        fromMqttMessage(toMqttMessage(e, { format: json, protocolVersion: 4 }), {
          formats,
          protocolVersion: 4,
        }),
    },
  ],
  hostileMessages,
  decode: ({ version, ...message }) => receive(message, version),
});

const utf8 = (s: string) => new TextEncoder().encode(s);
const required = { specversion: "1.0", id: "1", source: "/s", type: "t" };

// Named attacks not already in mapping.test.ts (which covers __proto__/constructor user
// property names, the payload and user-property limits, and repeated names).
describe("named attacks on the MQTT mapping", () => {
  it("a __proto__ member of JSON data stays a plain member, in binary and structured mode", () => {
    const data = '{"__proto__":{"polluted":true},"a":1}';
    const binary = fromMqttMessage(
      { payload: utf8(data), contentType: "application/json", userProperties: required },
      { formats },
    );
    const structured = fromMqttMessage(
      {
        payload: utf8(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${data}}`),
        contentType: json.contentType,
      },
      { formats },
    );
    for (const e of [binary, structured]) {
      expect(Object.hasOwn(e.data as object, "__proto__")).toBe(true);
      expect(Object.getPrototypeOf(e.data)).toBe(Object.prototype);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // A structured event naming __proto__ as an attribute is refused.
    expectTypedError(
      () =>
        fromMqttMessage(
          {
            payload: utf8(
              '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"x":1}}',
            ),
            contentType: json.contentType,
          },
          { formats },
        ),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("deeply nested JSON is MalformedInput, not a stack overflow", () => {
    const deep = utf8(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expectTypedError(
      () =>
        fromMqttMessage(
          { payload: deep, contentType: "application/json", userProperties: required },
          { formats },
        ),
      ["MalformedInput"],
    );
    const nestedEvent = utf8(
      `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${"[".repeat(10_000)}${"]".repeat(10_000)}}`,
    );
    expectTypedError(
      () => fromMqttMessage({ payload: nestedEvent, contentType: json.contentType }, { formats }),
      ["MalformedInput"],
    );
  });

  it("the JSON nesting limit of binary-mode data is json.maxDepth (default 128)", () => {
    const nested = (n: number) => ({
      payload: utf8(`${"[".repeat(n)}${"]".repeat(n)}`),
      contentType: "application/json",
      userProperties: required,
    });
    expect(fromMqttMessage(nested(128), { formats }).data).toBeDefined();
    expectTypedError(() => fromMqttMessage(nested(129), { formats }), ["MalformedInput"]);
    expect(fromMqttMessage(nested(8), { formats, json: { maxDepth: 8 } }).data).toBeDefined();
    expectTypedError(
      () => fromMqttMessage(nested(9), { formats, json: { maxDepth: 8 } }),
      ["MalformedInput"],
    );
  });

  it("invalid UTF-8 in text data arrives as the bytes sent; lone surrogates in attributes are typed errors", () => {
    // Text that is not UTF-8 stays bytes.
    const bad = new Uint8Array([0x68, 0xc0, 0xaf]);
    expect(
      fromMqttMessage(
        { payload: bad, contentType: "text/plain", userProperties: required },
        {
          formats,
        },
      ).data,
    ).toEqual(bad);
    expectTypedError(
      () =>
        fromMqttMessage(
          { payload: new Uint8Array(0), userProperties: { ...required, subject: "a\uD800b" } },
          { formats },
        ),
      ["InvalidEvent", "MalformedInput"],
    );
    // Structured JSON whose bytes are not UTF-8.
    expectTypedError(
      () =>
        fromMqttMessage(
          {
            payload: new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]),
            contentType: json.contentType,
          },
          { formats },
        ),
      ["MalformedInput"],
    );
  });

  it("attributes repeated with a different case are refused, not merged", () => {
    expectTypedError(
      () =>
        fromMqttMessage(
          { payload: new Uint8Array(0), userProperties: { ...required, ID: "2" } },
          { formats },
        ),
      ["InvalidEvent", "MalformedInput"],
    );
    expectTypedError(
      () =>
        fromMqttMessage(
          {
            payload: utf8('{"specversion":"1.0","id":"1","ID":"2","source":"/s","type":"t"}'),
            contentType: json.contentType,
          },
          { formats },
        ),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("specversion other than 1.0 is refused in binary and structured mode", () => {
    for (const v of ["0.3", "1.1", "2.0", ""]) {
      expectTypedError(
        () =>
          fromMqttMessage(
            { payload: new Uint8Array(0), userProperties: { ...required, specversion: v } },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
      expectTypedError(
        () =>
          fromMqttMessage(
            {
              payload: utf8(JSON.stringify({ ...required, specversion: v })),
              contentType: json.contentType,
            },
            { formats },
          ),
        ["InvalidEvent", "MalformedInput"],
      );
    }
  });
});

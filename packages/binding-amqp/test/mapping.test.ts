import {
  type AmqpMessage,
  decodeAmqpMessage,
  deliveryCountOf,
  encodeAmqpMessage,
  fromAmqpMessage,
  readAmqpMessage,
  type ToAmqpMessageOptions,
  toAmqpMessage,
  translateAmqpError,
} from "@posthorn/binding-amqp";
import {
  CloudEvent,
  type CloudEventInit,
  ExtensionRegistry,
  isPosthornError,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type BindingPath,
  describeBindingConformance,
  expectEquivalent,
  validVectors,
  vector,
} from "@posthorn/testkit";
import rhea from "rhea";
import { describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";

const formats = FORMATS;

/** Encodes with rhea to real AMQP bytes and decodes them again, as a link would. */
function overTheWire(message: AmqpMessage): AmqpMessage {
  return rhea.message.decode(rhea.message.encode(message)) as unknown as AmqpMessage;
}

/** The AMQP type names rhea reads for each application property, from the encoded bytes. */
function rawPropertyTypes(message: AmqpMessage): Record<string, string> {
  const { Reader } = rhea.types as unknown as {
    Reader: new (buffer: Buffer) => { remaining(): number; read(): unknown };
  };
  const reader = new Reader(rhea.message.encode(message));
  const out: Record<string, string> = {};
  while (reader.remaining()) {
    const section = reader.read() as unknown as {
      descriptor?: { value: unknown };
      value: Array<{ type: { name: string }; value: unknown }>;
    };
    if (Number(section.descriptor?.value) !== 0x74) continue;
    for (let i = 0; i + 1 < section.value.length; i += 2) {
      out[String(section.value[i]?.value)] = section.value[i + 1]?.type.name ?? "";
    }
  }
  return out;
}

function encode(event: CloudEvent, options: Partial<ToAmqpMessageOptions> = {}): AmqpMessage {
  return toAmqpMessage(event, { codec: rhea, ...options });
}

const event = (init: Partial<CloudEventInit> & Record<string, unknown>) =>
  new CloudEvent({
    specversion: "1.0",
    id: "1",
    source: "/s",
    type: "t",
    ...init,
  } as CloudEventInit);

const paths: BindingPath[] = [
  { mode: "binary" },
  ...formats.map((format) => ({ mode: "structured" as const, format })),
];

describeBindingConformance({
  name: "amqp (mapping, rhea wire bytes)",
  paths,
  typed: true,
  caseSensitive: true,
  roundTrip(e, path) {
    const message = toAmqpMessage(e, {
      codec: rhea,
      mode: path.mode,
      ...(path.format ? { format: path.format } : {}),
    });
    return fromAmqpMessage(overTheWire(message), { formats });
  },
});

describe("toAmqpMessage", () => {
  it("writes attributes as cloudEvents: application properties in their AMQP types", () => {
    const types = rawPropertyTypes(
      encode(
        event({
          time: "2024-01-02T03:04:05.678Z",
          dataschema: "https://example.com/s",
          priority: 300,
          small: 7,
          flagged: true,
          sig: new Uint8Array([1, 2]),
          recordedtime: "2024-01-02T03:04:05Z",
        }),
      ),
    );
    expect(types).toEqual({
      "cloudEvents:specversion": "Str8",
      "cloudEvents:id": "Str8",
      "cloudEvents:source": "Str8",
      "cloudEvents:type": "Str8",
      "cloudEvents:time": "Timestamp",
      "cloudEvents:dataschema": "Str8",
      "cloudEvents:priority": "Long",
      "cloudEvents:small": "SmallLong",
      "cloudEvents:flagged": "True",
      "cloudEvents:sig": "Vbin8",
      "cloudEvents:recordedtime": "Timestamp",
    });
  });

  it("writes Integers as AMQP int when asked", () => {
    const types = rawPropertyTypes(
      encode(event({ priority: 300, small: -7 }), { integerType: "int" }),
    );
    expect(types["cloudEvents:priority"]).toBe("Int");
    expect(types["cloudEvents:small"]).toBe("SmallInt");
  });

  it("keeps a timestamp finer than milliseconds as its canonical string", () => {
    const message = encode(event({ time: "2024-05-01T10:00:00.123456789Z" }));
    expect(rawPropertyTypes(message)["cloudEvents:time"]).toBe("Str8");
    expect(message.application_properties?.["cloudEvents:time"]).toBe(
      "2024-05-01T10:00:00.123456789Z",
    );
  });

  it("keeps a timestamp whose UTC year has five digits as its string", () => {
    const e = event({ time: "9999-12-31T16:00:00-08:00" });
    expect(rawPropertyTypes(encode(e))["cloudEvents:time"]).toBe("Str8");
    expect(fromAmqpMessage(overTheWire(encode(e))).time).toBe("9999-12-31T16:00:00-08:00");
  });

  it("writes the cloudEvents_ prefix when asked", () => {
    const message = encode(event({}), { prefix: "cloudEvents_" });
    expect(Object.keys(message.application_properties ?? {}).sort()).toEqual([
      "cloudEvents_id",
      "cloudEvents_source",
      "cloudEvents_specversion",
      "cloudEvents_type",
    ]);
  });

  it("puts datacontenttype in content-type and the data in a data section, not an AMQP value", () => {
    const message = overTheWire(encode(event({ datacontenttype: "text/plain", data: "hello" })));
    expect(message.content_type).toBe("text/plain");
    expect(message.application_properties?.["cloudEvents:datacontenttype"]).toBeUndefined();
    const body = message.body as { typecode: number; content: Uint8Array };
    expect(body.typecode).toBe(0x75);
    expect(new TextDecoder().decode(body.content)).toBe("hello");
  });

  it("writes no data section for an event without data", () => {
    const message = overTheWire(encode(event({ datacontenttype: "application/json" })));
    expect(message.body).toBeNull();
    expect(fromAmqpMessage(message).hasData()).toBe(false);
  });

  it("structured mode: the format's media type and the formatted event in a data section", () => {
    const e = vector("typical").event;
    const message = overTheWire(encode(e, { mode: "structured", format: json }));
    expect(message.content_type).toBe(json.contentType);
    expect(message.application_properties).toBeUndefined();
    const body = message.body as { typecode: number; content: Uint8Array };
    expect(body.typecode).toBe(0x75);
    expectEquivalent(json.decode(body.content), e);
  });

  it("refuses batch mode and structured mode without a format", () => {
    for (const options of [{ mode: "batch" as const }, { mode: "structured" as const }]) {
      let thrown: unknown;
      try {
        encode(event({}), options);
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown, "NotSupported")).toBe(true);
    }
  });
});

describe("encodeAmqpMessage", () => {
  it("writes the same message as toAmqpMessage through rhea, for every vector and option", () => {
    const variants: Array<Partial<ToAmqpMessageOptions>> = [
      {},
      { integerType: "int" },
      { prefix: "cloudEvents_" },
      ...formats.map((format) => ({ mode: "structured" as const, format })),
    ];
    let compared = 0;
    for (const v of validVectors) {
      for (const options of variants) {
        const fast = rhea.message.decode(encodeAmqpMessage(v.event, options));
        const generic = overTheWire(encode(v.event, options));
        // Bodies compared as bytes: a deep equality over a 1 MiB payload would take seconds.
        const fastBody = fast.body as { typecode?: number; content?: Buffer } | null;
        const genericBody = generic.body as { typecode?: number; content?: Buffer } | null;
        expect(fastBody?.typecode, v.name).toBe(genericBody?.typecode);
        expect(
          Buffer.compare(
            fastBody?.content ?? Buffer.alloc(0),
            genericBody?.content ?? Buffer.alloc(0),
          ),
          v.name,
        ).toBe(0);
        expect({ ...fast, body: undefined }, v.name).toEqual({ ...generic, body: undefined });
        expect(rawPropertyTypes(fast as unknown as AmqpMessage)).toEqual(rawPropertyTypes(generic));
        compared++;
      }
    }
    expect(compared).toBe(validVectors.length * variants.length);
  });

  it("refuses values no AMQP type carries, like toAmqpMessage", () => {
    for (const bad of [{ ratio: 1.5 }, { big: 2 ** 31 }, { nested: { a: 1 } }]) {
      let thrown: unknown;
      try {
        encodeAmqpMessage(
          Object.assign(Object.create(CloudEvent.prototype), event({}), bad) as CloudEvent,
        );
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown, "InvalidEvent")).toBe(true);
    }
  });
});

describe("readAmqpMessage", () => {
  it("is the reader that never throws; fromAmqpMessage (formerly decodeAmqpMessage) throws", () => {
    const broken = overTheWire(encode(event({}))) as AmqpMessage & {
      application_properties: Record<string, unknown>;
    };
    broken.application_properties["cloudEvents:specversion"] = "0.3";
    const read = readAmqpMessage(broken);
    expect(read.event).toBeUndefined();
    expect(read.error?.code).toBe("InvalidEvent");
    expect(() => fromAmqpMessage(broken)).toThrow(read.error?.message ?? "");
    expect(decodeAmqpMessage).toBe(fromAmqpMessage);
  });

  const base = {
    "cloudEvents:specversion": "1.0",
    "cloudEvents:id": "1",
    "cloudEvents:source": "/s",
    "cloudEvents:type": "t",
  };

  it("reads typed values back: long within 32 bits, timestamp, binary, boolean", () => {
    const e = fromAmqpMessage(
      overTheWire({
        application_properties: {
          ...base,
          "cloudEvents:count": rhea.types.wrap_long(123456),
          "cloudEvents:uns": 42,
          "cloudEvents:time": new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
          "cloudEvents:sig": new Uint8Array([9, 8]),
          "cloudEvents:ok": false,
        },
      }),
    );
    expect(e.count).toBe(123456);
    expect(e.uns).toBe(42);
    expect(e.time).toBe("2024-01-02T03:04:05.678Z");
    expect(e.sig).toEqual(new Uint8Array([9, 8]));
    expect(e.ok).toBe(false);
  });

  it("refuses a timestamp RFC 3339 cannot write, and one where another type is declared", () => {
    const late = readAmqpMessage(
      overTheWire({
        application_properties: {
          ...base,
          "cloudEvents:expirytime": new Date(Date.UTC(10000, 0, 1)),
        },
      }),
    );
    expect(late.error?.code).toBe("InvalidEvent");
    const registry = new ExtensionRegistry([{ name: "migration", type: "URI" }]);
    const mistyped = readAmqpMessage(
      overTheWire({ application_properties: { ...base, "cloudEvents:migration": new Date(0) } }),
      { registry },
    );
    expect(mistyped.error?.code).toBe("InvalidEvent");
    // As a string, the same text is refused the same way.
    const asText = readAmqpMessage(
      overTheWire({
        application_properties: { ...base, "cloudEvents:migration": "1970-01-01T00:00:00.000Z" },
      }),
      { registry },
    );
    expect(asText.error?.code).toBe("InvalidEvent");
  });

  it("refuses a long outside the Integer range", () => {
    const { error } = readAmqpMessage(
      overTheWire({
        application_properties: { ...base, "cloudEvents:big": rhea.types.wrap_long(2 ** 40) },
      }),
    );
    expect(error?.code).toBe("InvalidEvent");
  });

  it("restores declared extension types from canonical strings", () => {
    const registry = new ExtensionRegistry([
      { name: "priority", type: "Integer" },
      { name: "urgent", type: "Boolean" },
      { name: "sig", type: "Binary" },
    ]);
    const e = fromAmqpMessage(
      {
        application_properties: {
          ...base,
          "cloudEvents:priority": "7",
          "cloudEvents:urgent": "true",
          "cloudEvents:sig": "AQI=",
          "cloudEvents:other": "7",
        },
      },
      { registry },
    );
    expect(e.priority).toBe(7);
    expect(e.urgent).toBe(true);
    expect(e.sig).toEqual(new Uint8Array([1, 2]));
    expect(e.other).toBe("7");
  });

  it("reads the cloudEvents_ prefix, and both prefixes in one message", () => {
    const e = fromAmqpMessage({
      application_properties: {
        cloudEvents_specversion: "1.0",
        cloudEvents_id: "1",
        "cloudEvents:source": "/s",
        cloudEvents_type: "t",
        cloudEvents_subject: "x",
      },
    });
    expect(e.subject).toBe("x");
    expect(e.source).toBe("/s");
  });

  it("refuses one attribute under both prefixes with different values", () => {
    const { error } = readAmqpMessage({
      application_properties: { ...base, "cloudEvents:subject": "a", cloudEvents_subject: "b" },
    });
    expect(error?.code).toBe("MalformedInput");
  });

  it("accepts data in an AMQP value that is a string or binary", () => {
    const text = fromAmqpMessage(
      overTheWire({ content_type: "text/plain", application_properties: base, body: "hi" }),
    );
    expect(text.data).toBe("hi");
    const bytes = fromAmqpMessage(
      overTheWire({
        content_type: "application/octet-stream",
        application_properties: base,
        body: new Uint8Array([1, 2, 3]),
      }),
    );
    expect(bytes.data).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("joins several data sections", () => {
    const e = fromAmqpMessage(
      overTheWire({
        content_type: "text/plain",
        application_properties: base,
        body: rhea.message.data_sections([new Uint8Array([104]), new Uint8Array([105])]),
      }),
    );
    expect(e.data).toBe("hi");
  });

  it("refuses bodies that cannot carry data: sequences, numbers", () => {
    for (const body of [rhea.message.sequence_section([1, 2]), 42]) {
      const { error } = readAmqpMessage(overTheWire({ application_properties: base, body }));
      expect(error?.code).toBe("MalformedInput");
    }
  });

  it("passes a message that is not a CloudEvent through with its properties", () => {
    const when = new Date(1_700_000_000_000);
    const decoded = readAmqpMessage(
      overTheWire({
        content_type: "text/plain",
        subject: "greeting",
        message_id: "m-1",
        application_properties: { n: 3, flag: true, name: "x", when, raw: new Uint8Array([1]) },
        body: rhea.message.data_section(new TextEncoder().encode("hello")),
      }),
    );
    expect(decoded.event).toBeUndefined();
    expect(decoded.error).toBeUndefined();
    expect(decoded.message.contentType).toBe("text/plain");
    expect(new TextDecoder().decode(decoded.message.body)).toBe("hello");
    expect(decoded.message.properties).toEqual({
      n: 3,
      flag: true,
      name: "x",
      when,
      raw: new Uint8Array([1]),
    });
    expect(decoded.message.metadata).toMatchObject({ subject: "greeting", messageId: "m-1" });
  });

  it("refuses hostile attribute names without polluting prototypes", () => {
    for (const name of ["__proto__", "constructor", "prototype", "data", "data_base64", "Id"]) {
      const { event: e, error } = readAmqpMessage(
        overTheWire({ application_properties: { ...base, [`cloudEvents:${name}`]: "x" } }),
      );
      if (name === "constructor" || name === "prototype") {
        // Lower-case letters: valid extension names, kept as plain own attributes.
        expect(e?.[name]).toBe("x");
      } else {
        expect(e, name).toBeUndefined();
        expect(error?.code, name).toBe("InvalidEvent");
      }
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("keeps a __proto__ property of a plain message as an own property", () => {
    const decoded = readAmqpMessage({ application_properties: { ["__proto__"]: "x" } });
    expect(Object.hasOwn(decoded.message.properties, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(decoded.message.properties)).toBe(Object.prototype);
  });

  it("enforces the body and property limits", () => {
    const big = readAmqpMessage(
      {
        content_type: "application/octet-stream",
        application_properties: base,
        body: rhea.message.data_section(new Uint8Array(2048)),
      },
      { maxMessageBytes: 1024 },
    );
    expect(big.error?.code).toBe("PayloadTooLarge");
    // The message names the option to raise.
    expect(big.error?.message).toMatch(/more than the limit of 1024 \(option maxPayloadBytes\)$/);
    const many: Record<string, unknown> = { ...base };
    for (let i = 0; i < 20; i++) many[`p${i}`] = i;
    const tooMany = readAmqpMessage({ application_properties: many }, { maxProperties: 10 }).error;
    expect(tooMany?.code).toBe("PayloadTooLarge");
    expect(tooMany?.message).toMatch(/more than the limit of 10 \(option maxProperties\)$/);
  });

  it("structured mode: an unregistered format or a batch type is UnsupportedContentType", () => {
    for (const contentType of ["application/cloudevents+avro", json.batchContentType as string]) {
      const { error } = readAmqpMessage(
        {
          content_type: contentType,
          body: rhea.message.data_section(new Uint8Array([1])),
        },
        { formats: [json] },
      );
      expect(error?.code).toBe("UnsupportedContentType");
    }
  });

  it("reports invalid JSON data as MalformedInput", () => {
    const { error } = readAmqpMessage({
      content_type: "application/json",
      application_properties: base,
      body: rhea.message.data_section(new TextEncoder().encode("{nope")),
    });
    expect(error?.code).toBe("MalformedInput");
  });
});

describe("deliveryCountOf", () => {
  it("is the header's delivery-count plus one, and at least 2 when not the first acquirer", () => {
    expect(deliveryCountOf({})).toBe(1);
    expect(deliveryCountOf({ delivery_count: 2 })).toBe(3);
    expect(deliveryCountOf({ first_acquirer: false })).toBe(2);
    expect(deliveryCountOf({ first_acquirer: true })).toBe(1);
  });
});

describe("translateAmqpError", () => {
  it("maps outcomes and conditions through one table", () => {
    const rejected = translateAmqpError(
      { condition: "amqp:precondition-failed", description: "no" },
      "publish",
      "publish",
      "rejected",
    );
    expect([rejected.code, rejected.protocolCode, rejected.retryable]).toEqual([
      "PublishRejected",
      "amqp:precondition-failed",
      false,
    ]);
    const released = translateAmqpError(undefined, "publish", "publish", "released");
    expect([released.code, released.protocolCode, released.retryable]).toEqual([
      "PublishRejected",
      "amqp:released",
      true,
    ]);
    const tooBig = translateAmqpError(
      { condition: "amqp:link:message-size-exceeded" },
      "link",
      "x",
    );
    expect(tooBig.code).toBe("PayloadTooLarge");
    const refused = translateAmqpError({ code: "ECONNREFUSED" }, "connection", "x");
    expect([refused.code, refused.retryable]).toEqual(["ConnectionFailed", true]);
    const unknown = translateAmqpError({ condition: "vendor:odd" }, "link", "x");
    expect([unknown.code, unknown.retryable]).toEqual(["ConnectionFailed", false]);
  });
});

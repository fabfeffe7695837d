import { type AmqpMessage, readAmqpMessage } from "@posthorn/binding-amqp";
import { json } from "@posthorn/format-json";
import rhea from "rhea";
import { describe, expect, it } from "vitest";

// Named attacks on the AMQP mapping not already in mapping.test.ts (which covers __proto__,
// constructor and prototype as names, the body and property limits, and an attribute under both
// prefixes with different values). Every message travels through rhea's own codec, as off a link.

const base = {
  "cloudEvents:specversion": "1.0",
  "cloudEvents:id": "1",
  "cloudEvents:source": "/s",
  "cloudEvents:type": "t",
};
const wire = (m: Record<string, unknown>): AmqpMessage =>
  rhea.message.decode(rhea.message.encode(m as never)) as unknown as AmqpMessage;
const data = (bytes: Uint8Array | string) =>
  rhea.message.data_section(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);

describe("attack: deeply nested JSON", () => {
  const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
  it("binary-mode JSON data nested 100,000 deep is MalformedInput; the limit is configurable", () => {
    const message = (body: string) =>
      wire({ content_type: "application/json", application_properties: base, body: data(body) });
    expect(readAmqpMessage(message(deep(100_000))).error?.code).toBe("MalformedInput");
    expect(readAmqpMessage(message(deep(100))).event?.data).toBeDefined();
    expect(readAmqpMessage(message(deep(9)), { json: { maxDepth: 8 } }).error?.code).toBe(
      "MalformedInput",
    );
    expect(readAmqpMessage(message(deep(8)), { json: { maxDepth: 8 } }).event?.data).toBeDefined();
    // The deprecated top-level name is still read; json.maxDepth wins over it.
    expect(readAmqpMessage(message(deep(9)), { maxDepth: 8 }).error?.code).toBe("MalformedInput");
    expect(
      readAmqpMessage(message(deep(9)), { maxDepth: 8, json: { maxDepth: 9 } }).event?.data,
    ).toBeDefined();
  });
  it("a structured event nested 100,000 deep is MalformedInput", () => {
    const body = `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${deep(100_000)}}`;
    const decoded = readAmqpMessage(
      wire({ content_type: "application/cloudevents+json", body: data(body) }),
      { formats: [json] },
    );
    expect(decoded.error?.code).toBe("MalformedInput");
  });
});

describe("attack: invalid UTF-8", () => {
  it("in text data arrives as the bytes sent (text that is not UTF-8 stays bytes)", () => {
    const bad = new Uint8Array([0x61, 0xc0, 0xa0, 0x62]);
    const decoded = readAmqpMessage(
      wire({ content_type: "text/plain", application_properties: base, body: data(bad) }),
    );
    expect(decoded.error).toBeUndefined();
    expect(decoded.event?.data).toEqual(bad);
  });
  it("in a structured JSON event is MalformedInput", () => {
    const head = new TextEncoder().encode(
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":"',
    );
    const decoded = readAmqpMessage(
      wire({
        content_type: "application/cloudevents+json",
        body: data(new Uint8Array([...head, 0xed, 0xa0, 0x80, 0x22, 0x7d])),
      }),
      { formats: [json] },
    );
    expect(decoded.error?.code).toBe("MalformedInput");
  });
  it("in an attribute string: rhea decodes it with U+FFFD replacements; an event, never a crash", () => {
    // Encode a subject of "aXXb", then turn XX into an overlong encoding of a space.
    const bytes = Buffer.from(
      rhea.message.encode({
        application_properties: { ...base, "cloudEvents:subject": "aXXb" },
      } as never),
    );
    const at = bytes.indexOf("aXXb");
    bytes[at + 1] = 0xc0;
    bytes[at + 2] = 0xa0;
    const decoded = readAmqpMessage(rhea.message.decode(bytes) as unknown as AmqpMessage);
    expect(decoded.error).toBeUndefined();
    expect(decoded.event?.subject).toBe("a\ufffd\ufffdb");
  });
});

describe("attack: duplicate attributes differing in case", () => {
  it("cloudEvents:ID next to cloudEvents:id is refused (attribute names are lower case)", () => {
    const decoded = readAmqpMessage(
      wire({ application_properties: { ...base, "cloudEvents:ID": "2" } }),
    );
    expect(decoded.error?.code).toBe("InvalidEvent");
  });
  it("the same attribute under prefixes of another case with another value is refused", () => {
    const decoded = readAmqpMessage(
      wire({ application_properties: { ...base, "CLOUDEVENTS:id": "2" } }),
    );
    expect(decoded.event).toBeUndefined();
    expect(["InvalidEvent", "MalformedInput"]).toContain(decoded.error?.code);
  });
  it("a structured event with id and ID is refused", () => {
    const decoded = readAmqpMessage(
      wire({
        content_type: "application/cloudevents+json",
        body: data('{"specversion":"1.0","id":"1","ID":"2","source":"/s","type":"t"}'),
      }),
      { formats: [json] },
    );
    expect(decoded.event).toBeUndefined();
    expect(["InvalidEvent", "MalformedInput"]).toContain(decoded.error?.code);
  });
});

describe("attack: specversion other than 1.0", () => {
  for (const version of ["0.3", "1.1", "2.0", "", 1]) {
    it(`refuses specversion ${JSON.stringify(version)} in binary and structured mode`, () => {
      const binary = readAmqpMessage(
        wire({ application_properties: { ...base, "cloudEvents:specversion": version } }),
      );
      expect(binary.event).toBeUndefined();
      expect(binary.error?.code).toBe("InvalidEvent");
      const structured = readAmqpMessage(
        wire({
          content_type: "application/cloudevents+json",
          body: data(JSON.stringify({ specversion: version, id: "1", source: "/s", type: "t" })),
        }),
        { formats: [json] },
      );
      expect(structured.event).toBeUndefined();
      expect(["InvalidEvent", "MalformedInput"]).toContain(structured.error?.code);
    });
  }
});

describe("attack: prototype pollution through JSON", () => {
  it("__proto__ members in a structured event and in JSON data pollute nothing", () => {
    readAmqpMessage(
      wire({
        content_type: "application/cloudevents+json",
        body: data(
          '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}',
        ),
      }),
      { formats: [json] },
    );
    const withData = readAmqpMessage(
      wire({
        content_type: "application/json",
        application_properties: base,
        body: data('{"__proto__":{"polluted":1}}'),
      }),
    );
    expect(Object.hasOwn(withData.event?.data as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });
});

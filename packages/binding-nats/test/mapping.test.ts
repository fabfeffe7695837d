import {
  decodeNatsHeaderValue,
  detectNatsMode,
  fromNatsMessage,
  NatsHeaders,
  toMessageEnvelope,
  toNatsMessage,
} from "@posthorn/binding-nats";
import {
  CloudEvent,
  createUncheckedEvent,
  type EventFormat,
  encodeHeaderValue,
  extensions,
  isPosthornError,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { expectTypedError, refusedOption, vector } from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;
const formats = [json];

function headerRecord(headers: NatsHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of headers) out[k] = v.join(",");
  return out;
}

describe("header values (NATS binding 3.1.3.2)", () => {
  it("percent-encodes the spec's example exactly", () => {
    expect(encodeHeaderValue("Euro \u20AC \u{1F600}")).toBe("Euro%20%E2%82%AC%20%F0%9F%98%80");
  });

  it("encodes space, double quote, percent and control characters, and nothing printable else", () => {
    expect(encodeHeaderValue('a "b" 100%\t')).toBe("a%20%22b%22%20100%25%09");
    expect(encodeHeaderValue("plain-ASCII_value.~!#$&'()*+,/:;=?@[]")).toBe(
      "plain-ASCII_value.~!#$&'()*+,/:;=?@[]",
    );
  });

  it("decodes lower-case hex, needlessly encoded characters and quoted strings", () => {
    expect(decodeNatsHeaderValue("%e2%82%ac", "ce-x")).toBe("\u20AC");
    expect(decodeNatsHeaderValue("%41%42C", "ce-x")).toBe("ABC");
    expect(decodeNatsHeaderValue('"a \\"quoted\\" value"', "ce-x")).toBe('a "quoted" value');
  });

  it("keeps a % that starts no escape, as unencoding producers send it", () => {
    expect(decodeNatsHeaderValue("100% sure %Z", "ce-x")).toBe("100% sure %Z");
  });

  it("rejects escapes that are not valid UTF-8, such as overlong %C0%A0", () => {
    expectTypedError(() => decodeNatsHeaderValue("%C0%A0", "ce-subject"), ["MalformedInput"]);
    expectTypedError(() => decodeNatsHeaderValue("%FF", "ce-subject"), ["MalformedInput"]);
  });

  it("reads raw non-ASCII as the Unicode text nats.js decoded, never as Latin-1 bytes", () => {
    // Read as Latin-1 bytes, "\u00C3\u00A9" would be the UTF-8 of "\u00E9"; over NATS it is two characters.
    expect(decodeNatsHeaderValue("\u00C3\u00A9", "ce-x")).toBe("\u00C3\u00A9");
    expect(decodeNatsHeaderValue("\u00C3\u00A9%20\u20AC", "ce-x")).toBe("\u00C3\u00A9 \u20AC");
    expect(decodeNatsHeaderValue('"caf\u00E9 \\"x\\""', "ce-x")).toBe('caf\u00E9 "x"');
    // An escape that a raw character would complete is still invalid UTF-8 on its own.
    expectTypedError(() => decodeNatsHeaderValue("%C3\u00A9", "ce-x"), ["MalformedInput"]);
    expectTypedError(() => decodeNatsHeaderValue("a\uD800b", "ce-x"), ["MalformedInput"]);
  });

  it("keeps an encoded byte order mark: one round of decoding, nothing dropped", () => {
    expect(decodeNatsHeaderValue("%EF%BB%BFa%EF%BB%BFb", "ce-x")).toBe("\uFEFFa\uFEFFb");
  });

  it("round-trips arbitrary strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        const encoded = encodeHeaderValue(s);
        expect(/^[\x21-\x7e]*$/.test(encoded)).toBe(true);
        expect(decodeNatsHeaderValue(encoded, "ce-x")).toBe(s);
      }),
      { numRuns: 500 },
    );
  });
});

describe("NatsHeaders", () => {
  it("writes the NATS/1.0 header block", () => {
    const h = new NatsHeaders([
      ["ce-id", "1"],
      ["ce-type", "t"],
    ]);
    expect(utf8Decode(h.encode())).toBe("NATS/1.0\r\nce-id: 1\r\nce-type: t\r\n\r\n");
    expect(h.byteLength()).toBe(h.encode().length);
  });

  it("refuses CR and LF in values (header injection) and bad names", () => {
    const h = new NatsHeaders();
    expectTypedError(() => h.set("x", "a\r\nInjected: yes"), ["MalformedInput"]);
    expectTypedError(() => h.set("bad:name", "v"), ["MalformedInput"]);
    expectTypedError(() => h.set("bad name", "v"), ["MalformedInput"]);
    expectTypedError(() => h.set("x", " padded"), ["MalformedInput"]);
  });

  it("looks names up case-insensitively", () => {
    const h = new NatsHeaders([["Content-Type", "text/plain"]]);
    expect(h.lookup("content-type")).toBe("text/plain");
    expect(h.get("content-type")).toBe("");
  });
});

describe("toNatsMessage", () => {
  it("binary mode: every attribute as a ce- header, datacontenttype as ce-datacontenttype, data as payload", () => {
    const event = vector("typical").event;
    const { data, headers } = toNatsMessage(event);
    const h = headerRecord(headers);
    expect(h["ce-specversion"]).toBe("1.0");
    expect(h["ce-id"]).toBe(event.id);
    expect(h["ce-datacontenttype"]).toBe("application/json");
    expect(h["ce-time"]).toBe("2024-05-01T10:00:00.000Z");
    expect(h["Content-Type"]).toBeUndefined();
    expect(JSON.parse(utf8Decode(data))).toEqual(event.data);
  });

  it("binary mode: writes application/json for JSON data without a datacontenttype", () => {
    const { headers } = toNatsMessage(vector("json-no-content-type").event);
    expect(headers.get("ce-datacontenttype")).toBe("application/json");
  });

  it("binary mode: percent-encodes values so that padding survives nats.js trimming", () => {
    const { headers } = toNatsMessage(vector("ext-padded-string").event);
    expect(headers.get("ce-padded")).toBe("%20%20padded%20value%20%20");
  });

  it("binary mode: CR/LF in an unvalidated value is encoded, never written raw, and refused on receipt", () => {
    const event = createUncheckedEvent({ ...base, note: "a\r\nce-id: injected" });
    const message = toNatsMessage(event);
    expect(utf8Decode(message.headers.encode())).not.toContain("\r\nce-id: injected");
    expectTypedError(() => fromNatsMessage(message), ["InvalidEvent"]);
  });

  it("binary mode: refuses attribute names and values that no header can carry", () => {
    expectTypedError(
      () => toNatsMessage(createUncheckedEvent({ ...base, "bad:name": "x" })),
      ["InvalidEvent"],
    );
    expectTypedError(
      () => toNatsMessage(createUncheckedEvent({ ...base, n: { a: 1 } })),
      ["InvalidEvent"],
    );
    expectTypedError(
      () => toNatsMessage(createUncheckedEvent({ ...base, n: 1.5 })),
      ["InvalidEvent"],
    );
  });

  it("structured mode: the formatted event as payload, Content-Type naming the format", () => {
    const event = vector("typical").event;
    const { data, headers } = toNatsMessage(event, { mode: "structured", format: json });
    expect(headers.get("Content-Type")).toBe("application/cloudevents+json");
    expect([...headers].length).toBe(1);
    expect(JSON.parse(utf8Decode(data)).id).toBe(event.id);
  });

  it("has no batch mode and needs a format for structured mode", () => {
    expectTypedError(
      () => toNatsMessage(vector("minimal").event, { mode: "batch" as never }),
      ["NotSupported"],
    );
    expectTypedError(
      () => toNatsMessage(vector("minimal").event, { mode: "structured" }),
      ["NotSupported"],
    );
  });
});

describe("fromNatsMessage", () => {
  const msg = (
    headers: Record<string, string | string[]>,
    data: Uint8Array = new Uint8Array(0),
  ) => ({
    subject: "s",
    data,
    headers,
  });
  const ceHeaders = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" };

  it("reads ce- headers case-insensitively", () => {
    const e = fromNatsMessage(
      msg({ "CE-SPECVERSION": "1.0", "Ce-Id": "x", "ce-SOURCE": "/s", "cE-type": "t" }),
    );
    expect(e.id).toBe("x");
    expect(e.source).toBe("/s");
  });

  it("refuses the same attribute in two headers differing in case with different values", () => {
    expectTypedError(
      () => fromNatsMessage(msg({ ...ceHeaders, "ce-x": "a", "CE-X": "b" })),
      ["MalformedInput"],
    );
    expect(fromNatsMessage(msg({ ...ceHeaders, "ce-x": "a", "CE-X": "a" })).x).toBe("a");
  });

  it("refuses a repeated header with different values", () => {
    expectTypedError(
      () => fromNatsMessage(msg({ ...ceHeaders, "ce-x": ["a", "b"] })),
      ["MalformedInput"],
    );
  });

  it("restores the types of declared extensions from the registry", () => {
    const registry = extensions.clone();
    registry.declare({ name: "priority", type: "Integer" });
    registry.declare({ name: "flagged", type: "Boolean" });
    registry.declare({ name: "signature", type: "Binary" });
    const sent = new CloudEvent({
      ...base,
      priority: 7,
      flagged: true,
      signature: new Uint8Array([1, 2, 255]),
      sampledrate: 10,
      recordedtime: "2024-01-02T03:04:05.678+01:00",
    });
    const back = fromNatsMessage(toNatsMessage(sent), { registry });
    expect(back.priority).toBe(7);
    expect(back.flagged).toBe(true);
    expect(back.signature).toEqual(new Uint8Array([1, 2, 255]));
    expect(back.sampledrate).toBe(10);
    expect(back.recordedtime).toBe("2024-01-02T03:04:05.678+01:00");
    // Undeclared, the same headers read as Strings.
    const plain = fromNatsMessage(toNatsMessage(sent), { registry: extensions.clone() });
    expect(plain.priority).toBe("7");
  });

  it("refuses a value that does not parse as its declared type", () => {
    expectTypedError(
      () => fromNatsMessage(msg({ ...ceHeaders, sampledrate: "x", "ce-sampledrate": "ten" })),
      ["InvalidEvent"],
    );
    expectTypedError(
      () => fromNatsMessage(msg({ ...ceHeaders, "ce-recordedtime": "yesterday" })),
      ["InvalidEvent"],
    );
  });

  it("refuses a header named just ce- (no attribute name), as the HTTP and Kafka bindings do", () => {
    // It was read as some other header and the event accepted without it.
    expectTypedError(() => fromNatsMessage(msg({ ...ceHeaders, "ce-": "x" })), ["InvalidEvent"]);
    expectTypedError(() => fromNatsMessage(msg({ ...ceHeaders, "CE-": "x" })), ["InvalidEvent"]);
  });

  it("refuses __proto__ and constructor as attribute names without polluting anything", () => {
    expectTypedError(
      () => fromNatsMessage(msg({ ...ceHeaders, "ce-__proto__": "x" })),
      ["InvalidEvent"],
    );
    const e = fromNatsMessage(msg({ ...ceHeaders, "ce-constructor": "x" }));
    expect(e.constructor).toBe("x");
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("refuses header values that are not text (from a client other than nats.js) with MalformedInput", () => {
    for (const value of [null, 7, {}, [1], undefined]) {
      const message = {
        subject: "s",
        data: new Uint8Array(0),
        headers: { ...ceHeaders, "ce-x": value },
      };
      for (const read of [
        () => fromNatsMessage(message as never),
        () => detectNatsMode(message as never),
        () => toMessageEnvelope(message as never),
      ]) {
        expectTypedError(read, ["MalformedInput"]);
      }
    }
  });

  it("refuses a ce-data header: data is the payload, never an attribute", () => {
    for (const payload of [new Uint8Array(0), utf8Encode("{}")]) {
      for (const name of ["ce-data", "CE-Data"]) {
        expectTypedError(
          () => fromNatsMessage(msg({ ...ceHeaders, [name]: "injected" }, payload)),
          ["InvalidEvent"],
        );
      }
    }
  });

  it("reads data by ce-datacontenttype, falling back to a Content-Type header", () => {
    const e = fromNatsMessage(
      msg({ ...ceHeaders, "Content-Type": "text/plain" }, utf8Encode("hi")),
    );
    expect(e.datacontenttype).toBe("text/plain");
    expect(e.data).toBe("hi");
  });

  it("an empty payload with no content type is no data", () => {
    expect(fromNatsMessage(msg(ceHeaders)).hasData()).toBe(false);
  });

  it("refuses oversized payloads and too many headers", () => {
    expectTypedError(
      () => fromNatsMessage(msg(ceHeaders, new Uint8Array(11)), { maxPayloadBytes: 10 }),
      ["PayloadTooLarge"],
    );
    const many: Record<string, string> = { ...ceHeaders };
    for (let i = 0; i < 20; i++) many[`ce-x${i}`] = "v";
    expectTypedError(() => fromNatsMessage(msg(many), { maxHeaders: 10 }), ["PayloadTooLarge"]);
    // A structured event's headers count too: they are the receiver's to hold all the same.
    const structured: Record<string, string> = {
      "Content-Type": "application/cloudevents+json",
    };
    for (let i = 0; i < 20; i++) structured[`x-h${i}`] = "v";
    const body = utf8Encode('{"specversion":"1.0","id":"1","source":"/s","type":"t"}');
    expect(fromNatsMessage(msg(structured, body), { formats: [json] }).id).toBe("1");
    expectTypedError(
      () => fromNatsMessage(msg(structured, body), { formats: [json], maxHeaders: 10 }),
      ["PayloadTooLarge"],
    );
  });

  it("structured mode is told by a Content-Type of application/cloudevents, case-insensitively", () => {
    const event = vector("typical").event;
    const data = json.encode(event);
    expect(
      detectNatsMode({ data, headers: { "content-type": "Application/CloudEvents+JSON" } }),
    ).toBe("structured");
    expect(
      fromNatsMessage(
        { data, headers: { "content-type": "Application/CloudEvents+JSON" } },
        { formats },
      ).id,
    ).toBe(event.id);
  });

  it("reads header-less structured JSON, as NATS binding 1.0.2 producers send it", () => {
    const event = vector("typical").event;
    const data = json.encode(event);
    expect(detectNatsMode({ data })).toBe("structured");
    expect(fromNatsMessage({ data }, { formats }).id).toBe(event.id);
    expect(detectNatsMode({ data }, { detectHeaderlessJson: false })).toBeUndefined();
    // Headers other than Content-Type and ce- do not count: a JetStream message id, a trace header.
    const headers = { "Nats-Msg-Id": "x", traceparent: "00-1-2-01" };
    expect(fromNatsMessage({ data, headers }, { formats }).id).toBe(event.id);
    expect(
      detectNatsMode({ data, headers: { "Content-Type": "application/json" } }),
    ).toBeUndefined();
    // A nested member name is a claim too; what then does not decode is an error, not a message.
    const nested = utf8Encode('{"data":{"specversion":1}}');
    expect(detectNatsMode({ data: nested })).toBe("structured");
    expectTypedError(
      () => fromNatsMessage({ data: nested }, { formats }),
      ["InvalidEvent", "MalformedInput"],
    );
  });

  it("says UnsupportedContentType for unregistered formats and for batches", () => {
    const data = json.encode(vector("typical").event);
    expectTypedError(
      () => fromNatsMessage({ data, headers: { "Content-Type": "application/cloudevents+json" } }),
      ["UnsupportedContentType"],
    );
    expectTypedError(
      () =>
        fromNatsMessage(
          {
            data: json.encodeBatch?.([]) ?? data,
            headers: { "Content-Type": "application/cloudevents-batch+json" },
          },
          { formats },
        ),
      ["UnsupportedContentType"],
    );
  });

  it("says which formats it has and where to add one when none reads the message", () => {
    const data = json.encode(vector("typical").event);
    const structured = { data, headers: { "Content-Type": "application/cloudevents+json" } };
    expect(() => fromNatsMessage(structured)).toThrow(
      /options\.formats is empty\): add the format for it to options\.formats, e\.g\. formats: \[json\] from @posthorn\/format-json/,
    );
    const avroOnly = { contentType: "application/cloudevents+avro" } as EventFormat;
    expect(() => fromNatsMessage(structured, { formats: [avroOnly] })).toThrow(
      /options\.formats reads application\/cloudevents\+avro\)/,
    );
    // A header-less JSON event (NATS binding 1.0.2) without the JSON format.
    expect(() => fromNatsMessage({ data })).toThrow(
      /needs the JSON format \(options\.formats is empty\): add formats: \[json\].*detectHeaderlessJson: false/,
    );
  });

  it("plain NATS messages are no CloudEvent, and become Message envelopes with their headers", () => {
    const plain = {
      subject: "orders",
      data: utf8Encode('{"a":1}'),
      headers: { "Content-Type": "application/json", X: ["1", "2"] },
    };
    expect(detectNatsMode(plain)).toBeUndefined();
    expectTypedError(() => fromNatsMessage(plain), ["MalformedInput"]);
    const m = toMessageEnvelope(plain);
    expect(m.contentType).toBe("application/json");
    expect(m.properties).toEqual({ "Content-Type": "application/json", X: ["1", "2"] });
    expect(m.metadata?.subject).toBe("orders");
  });

  it("ends in an event or a typed error for arbitrary headers and payloads", () => {
    const name = fc.oneof(
      fc.constantFrom(
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-datacontenttype",
        "Content-Type",
        "ce-x",
      ),
      fc.string({ maxLength: 12 }),
    );
    const value = fc.oneof(
      fc.constantFrom("1.0", "/s", "application/json", "application/cloudevents+json"),
      fc.string(),
    );
    fc.assert(
      fc.property(
        fc.dictionary(name, value, { maxKeys: 8 }),
        fc.uint8Array({ maxLength: 64 }),
        (headers, data) => {
          try {
            const e = fromNatsMessage({ data, headers }, { formats });
            expect(e.specversion).toBe("1.0");
          } catch (err) {
            expect(isPosthornError(err), String(err)).toBe(true);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("fromNatsMessage limits given per call", () => {
  it("refuses NaN, negatives and fractions with NotSupported naming the limit, before reading", () => {
    const message = {
      subject: "s",
      data: new Uint8Array(4),
      headers: { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" },
    };
    // NaN compared false and turned the limit off (the message decoded); -1 refused every one.
    const cases: [object, string, string][] = [
      [{ maxPayloadBytes: Number.NaN }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      [{ maxHeaders: 2.5 }, "maxHeaders", "2.5"],
      [{ json: { maxDepth: Number.NaN } }, "json.maxDepth", "NaN"],
      [{ maxJsonDepth: -1 }, "maxJsonDepth", "-1"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => fromNatsMessage(message, options)).toThrow(refusedOption(option, shown));
    }
    expect(fromNatsMessage(message, { maxPayloadBytes: Infinity }).id).toBe("1");
  });
});

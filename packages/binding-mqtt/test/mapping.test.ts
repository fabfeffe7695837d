import {
  CloudEvent,
  differences,
  extensions,
  isPosthornError,
  PosthornError,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type BindingPath,
  describeBindingConformance,
  refusedOption,
  vector,
} from "@posthorn/testkit";
import { describe, expect, it } from "vitest";
import {
  classifyMqttMessage,
  fromMqttError,
  fromMqttMessage,
  type MqttMessage,
  toMqttMessage,
  toPlainMessage,
} from "../src/index.js";
import { FORMATS } from "./formats.js";

const formats = FORMATS;

function roundTrip(version: 4 | 5) {
  return (event: CloudEvent, path: BindingPath): CloudEvent => {
    const mode = path.mode === "batch" ? "structured" : path.mode;
    const message = toMqttMessage(event, {
      mode,
      protocolVersion: version,
      ...(path.format ? { format: path.format } : {}),
    });
    return fromMqttMessage(message, { formats, protocolVersion: version });
  };
}

describeBindingConformance({
  name: "mqtt 5 binary (mapping)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: true,
  roundTrip: roundTrip(5),
});

describeBindingConformance({
  name: "mqtt 5 structured (mapping)",
  paths: formats.map((format) => ({ mode: "structured", format })),
  typed: true,
  caseSensitive: true,
  roundTrip: roundTrip(5),
});

describeBindingConformance({
  name: "mqtt 3.1.1 structured (mapping)",
  paths: [{ mode: "structured", format: json }],
  typed: true,
  caseSensitive: true,
  roundTrip: roundTrip(4),
});

function expectCode(action: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    action();
  } catch (err) {
    thrown = err;
  }
  expect(isPosthornError(thrown), `expected a PosthornError, got ${String(thrown)}`).toBe(true);
  expect((thrown as PosthornError).code).toBe(code);
}

const base = { payload: new Uint8Array(0) };
const required = { specversion: "1.0", id: "1", source: "/s", type: "t" };

describe("toMqttMessage", () => {
  it("writes attributes as user properties without a prefix and datacontenttype as Content Type", () => {
    const m = toMqttMessage(vector("typical").event, { mode: "binary" });
    expect(m.contentType).toBe("application/json");
    expect(m.userProperties?.id).toBe("b7e1f2c4-5a6b-4c3d-9e8f-0123456789ab");
    expect(m.userProperties?.traceparent).toBeDefined();
    expect(m.userProperties?.datacontenttype).toBeUndefined();
    expect(JSON.parse(new TextDecoder().decode(m.payload)).orderId).toBe(42);
  });

  it("writes the format's media type as Content Type in structured mode", () => {
    const m = toMqttMessage(vector("minimal").event, { mode: "structured", format: json });
    expect(m.contentType).toBe("application/cloudevents+json");
    expect(m.userProperties).toBeUndefined();
  });

  it("writes canonical strings for typed extensions", () => {
    const m = toMqttMessage(vector("ext-many").event, { mode: "binary" });
    expect(m.userProperties?.e2).toBe("2");
    expect(m.userProperties?.e3).toBe("true");
  });

  it("refuses binary mode and non-JSON formats at MQTT 3.1.1", () => {
    const event = vector("minimal").event;
    expectCode(() => toMqttMessage(event, { mode: "binary", protocolVersion: 4 }), "NotSupported");
    const fake = { ...json, name: "fake", contentType: "application/cloudevents+fake" };
    expectCode(
      () => toMqttMessage(event, { mode: "structured", format: fake, protocolVersion: 4 }),
      "NotSupported",
    );
    expect(toMqttMessage(event, { protocolVersion: 4, format: json }).contentType).toBeUndefined();
  });

  it("refuses structured mode without a format", () => {
    expectCode(
      () => toMqttMessage(vector("minimal").event, { mode: "structured" }),
      "NotSupported",
    );
  });
});

describe("fromMqttMessage", () => {
  it("restores declared extension types from user properties", () => {
    const registry = extensions.clone().declare({ name: "priority", type: "Integer" });
    const event = fromMqttMessage(
      {
        ...base,
        userProperties: {
          ...required,
          priority: "7",
          recordedtime: "2024-01-02T03:04:05.678Z",
          severitynumber: "9",
        },
      },
      { formats: [json], registry },
    );
    expect(event.priority).toBe(7);
    expect(event.severitynumber).toBe(9);
    expect(event.recordedtime).toBe("2024-01-02T03:04:05.678Z");
    const plain = fromMqttMessage(
      { ...base, userProperties: { ...required, priority: "7" } },
      { formats: [json] },
    );
    expect(plain.priority).toBe("7");
  });

  it("rejects a declared extension whose string is not of its type", () => {
    expectCode(
      () =>
        fromMqttMessage(
          { ...base, userProperties: { ...required, severitynumber: "high" } },
          { formats: [json] },
        ),
      "InvalidEvent",
    );
  });

  it("accepts a user property delivered as a one-element array and rejects repeated names", () => {
    const ok = fromMqttMessage(
      { ...base, userProperties: { ...required, id: ["x"] } },
      { formats: [json] },
    );
    expect(ok.id).toBe("x");
    expectCode(
      () =>
        fromMqttMessage(
          { ...base, userProperties: { ...required, subject: ["a", "b"] } },
          { formats: [json] },
        ),
      "MalformedInput",
    );
  });

  it("never pollutes prototypes through user property names", () => {
    const props = Object.create(null) as Record<string, string>;
    Object.assign(props, required);
    Object.defineProperty(props, "__proto__", { value: "x", enumerable: true });
    // `__proto__` cannot be an attribute name: a foreign user property, left to the properties.
    const decoded = fromMqttMessage({ ...base, userProperties: props }, { formats: [json] });
    expect(Object.getPrototypeOf(decoded)).toBe(CloudEvent.prototype);
    expect(Object.hasOwn(decoded, "__proto__")).toBe(false);
    expect(Object.keys(decoded).sort()).toEqual(Object.keys(required).sort());
    const properties = toPlainMessage({ ...base, userProperties: props }).properties;
    expect(Object.getPrototypeOf(properties)).toBeNull();
    expect(Object.hasOwn(properties, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(properties, "__proto__")?.value).toBe("x");
    for (const name of ["constructor", "prototype"]) {
      const event = fromMqttMessage(
        { ...base, userProperties: { ...required, [name]: "y" } },
        { formats: [json] },
      );
      expect(event[name]).toBe("y");
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("refuses data and data_base64 as user property names", () => {
    for (const name of ["data", "data_base64"]) {
      expectCode(
        () =>
          fromMqttMessage(
            { ...base, userProperties: { ...required, [name]: "AAAA" } },
            { formats: [json] },
          ),
        "MalformedInput",
      );
    }
  });

  it("refuses a datacontenttype user property that contradicts Content Type", () => {
    expectCode(
      () =>
        fromMqttMessage(
          {
            payload: new TextEncoder().encode("hi"),
            contentType: "text/plain",
            userProperties: { ...required, datacontenttype: "application/json" },
          },
          { formats: [json] },
        ),
      "MalformedInput",
    );
  });

  it("accepts a datacontenttype user property naming the Content Type's media type in another spelling", () => {
    for (const [property, contentType] of [
      ["application/json;charset=utf-8", "application/json; charset=utf-8"],
      ["Text/Plain; Charset=utf-8", "text/plain;charset=utf-8"],
      ["text/plain; a=1; b=2", "text/plain; b=2; a=1"],
    ] as const) {
      const event = fromMqttMessage(
        {
          payload: new TextEncoder().encode('"hi"'),
          contentType,
          userProperties: { ...required, datacontenttype: property },
        },
        { formats: [json] },
      );
      // The Content Type wins, as when the two are written alike.
      expect(event.datacontenttype).toBe(contentType);
    }
    // A parameter of another value is another media type.
    expectCode(
      () =>
        fromMqttMessage(
          {
            payload: new TextEncoder().encode("hi"),
            contentType: "text/plain; charset=utf-8",
            userProperties: { ...required, datacontenttype: "text/plain; charset=latin1" },
          },
          { formats: [json] },
        ),
      "MalformedInput",
    );
  });

  it("assumes the JSON format for a message without Content Type (MQTT 3.1.1)", () => {
    const payload = json.encode(vector("typical").event);
    for (const protocolVersion of [4, 5] as const) {
      const event = fromMqttMessage({ payload }, { formats: [json], protocolVersion });
      expect(event.id).toBe(vector("typical").event.id);
    }
  });

  it("tells plain messages from CloudEvents", () => {
    const text = (s: string): MqttMessage => ({ payload: new TextEncoder().encode(s) });
    expect(classifyMqttMessage(text("21.5"))).toBeUndefined();
    expect(classifyMqttMessage(text('{"temperature":21.5}'))).toBeUndefined();
    expect(classifyMqttMessage(text(' \n{"specversion":"1.0"}'))).toBe("structured");
    expect(classifyMqttMessage({ ...base, userProperties: { specversion: "1.0" } })).toBe("binary");
    expect(
      classifyMqttMessage(
        { ...base, userProperties: { specversion: "1.0" } },
        { protocolVersion: 4 },
      ),
    ).toBeUndefined();
    expect(classifyMqttMessage({ ...base, contentType: "application/cloudevents+avro" })).toBe(
      "structured",
    );
    expectCode(() => fromMqttMessage(text("21.5"), { formats: [json] }), "MalformedInput");
  });

  it("refuses structured content types it has no format for, and batches", () => {
    const payload = new Uint8Array([1, 2, 3]);
    expectCode(
      () =>
        fromMqttMessage(
          { payload, contentType: "application/cloudevents+unknown" },
          { formats: [json] },
        ),
      "UnsupportedContentType",
    );
    // The message says what options.formats holds and what to add, as the other bindings' do.
    expect(() =>
      fromMqttMessage(
        { payload, contentType: "application/cloudevents+avro" },
        { formats: [json] },
      ),
    ).toThrow(/reads application\/cloudevents\+json\): add the format for it to options\.formats/);
    expectCode(
      () =>
        fromMqttMessage(
          { payload: new TextEncoder().encode("[]"), contentType: json.batchContentType as string },
          { formats: [json] },
        ),
      "UnsupportedContentType",
    );
  });

  it("enforces the payload and user property limits", () => {
    expectCode(
      () =>
        fromMqttMessage(
          { payload: new Uint8Array(11), userProperties: required },
          { formats: [json], maxPayloadBytes: 10 },
        ),
      "PayloadTooLarge",
    );
    const many: Record<string, string> = { ...required };
    for (let i = 0; i < 300; i++) many[`x${i}`] = "v";
    expectCode(
      () => fromMqttMessage({ ...base, userProperties: many }, { formats: [json] }),
      "PayloadTooLarge",
    );
  });

  it("turns malformed structured payloads into typed errors", () => {
    const good = json.encode(vector("typical").event);
    for (let cut = 1; cut < good.length; cut += 97) {
      expect(() =>
        fromMqttMessage(
          { payload: good.subarray(0, cut), contentType: json.contentType },
          { formats: [json] },
        ),
      ).toThrow(PosthornError);
    }
  });

  it("accepts an instance of the cloudevents package's CloudEvent shape", () => {
    const plain = vector("typical").event.toJSON();
    const m = toMqttMessage(plain as never, { mode: "binary" });
    expect(fromMqttMessage(m, { formats: [json] }).id).toBe(plain.id);
    expect(CloudEvent.from(plain as never).id).toBe(plain.id);
  });
});

describe("fromMqttError", () => {
  // mqtt.js 5 rejects a refused subscription with its SUBACK and no reason code of its own.
  const subackError = (granted: number[]) =>
    Object.assign(new Error("Subscribe error: Not authorized"), {
      packet: { cmd: "suback", messageId: 1, granted },
    });

  it("reads a SUBACK failure code (0x80 and above) as PublishRejected with the code", () => {
    expect(fromMqttError(subackError([0x87]), "subscribe to t")).toMatchObject({
      code: "PublishRejected",
      protocolCode: 0x87,
      retryable: false,
      message: "subscribe to t: the broker refused (reason 135): Subscribe error: Not authorized",
    });
    expect(fromMqttError(subackError([1, 0x80]), "subscribe to t")).toMatchObject({
      code: "PublishRejected",
      protocolCode: 0x80,
    });
    // Quota exceeded may pass.
    expect(fromMqttError(subackError([0x97]), "subscribe to t").retryable).toBe(true);
  });

  it("leaves a SUBACK that granted every subscription to the message table", () => {
    const err = Object.assign(new Error("Connection closed"), { packet: { granted: [1] } });
    expect(fromMqttError(err, "subscribe to t")).toMatchObject({ code: "ConnectionFailed" });
  });
});

describe("fromMqttMessage limits given per call", () => {
  it("refuses NaN, negatives and fractions with NotSupported naming the limit, before reading", () => {
    const event = new CloudEvent({ specversion: "1.0", id: "1", source: "/s", type: "t" });
    const message = toMqttMessage(event, { mode: "binary", protocolVersion: 5 });
    // NaN compared false and turned the limit off (the message decoded); -1 refused every one.
    const cases: [object, string, string][] = [
      [{ maxPayloadBytes: Number.NaN }, "maxPayloadBytes", "NaN"],
      [{ maxPayloadBytes: -1 }, "maxPayloadBytes", "-1"],
      [{ maxUserProperties: 2.5 }, "maxUserProperties", "2.5"],
      [{ json: { maxDepth: Number.NaN } }, "json.maxDepth", "NaN"],
    ];
    for (const [options, option, shown] of cases) {
      expect(() => fromMqttMessage(message, { formats, protocolVersion: 5, ...options })).toThrow(
        refusedOption(option, shown),
      );
    }
    const read = fromMqttMessage(message, {
      formats,
      protocolVersion: 5,
      maxPayloadBytes: Infinity,
    });
    expect(read.id).toBe("1");
  });
});

describe("foreign user properties (names that cannot be attributes)", () => {
  const foreign = {
    "X-Request-Id": "req-42",
    "Content-Encoding": "gzip",
    content_encoding: "gzip",
    traceId: "abc",
    Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    CorrelationId: "c-1",
    İD: "dotted capital I, not ASCII",
    "": "empty name",
  };
  const event = new CloudEvent({
    ...required,
    subject: "s",
    tenant: "acme",
    data: { n: 1 },
  });

  it("are not read as attributes and do not fail the event; the properties keep them", () => {
    const message = toMqttMessage(event, { mode: "binary" });
    const withForeign: MqttMessage = {
      ...message,
      userProperties: { ...message.userProperties, ...foreign },
    };
    const back = fromMqttMessage(withForeign, { formats: [json] });
    expect(differences(back, event)).toEqual([]);
    for (const name of Object.keys(foreign)) expect(Object.hasOwn(back, name)).toBe(false);
    const properties = toPlainMessage(withForeign).properties;
    for (const [name, value] of Object.entries(foreign)) expect(properties[name]).toBe(value);
    expect(properties.tenant).toBe("acme");
  });

  it("may repeat (MQTT allows it): the properties keep every value", () => {
    const message: MqttMessage = {
      ...base,
      userProperties: { ...required, "X-Hop": ["a", "b", "c"] },
    };
    const back = fromMqttMessage(message, { formats: [json] });
    expect(back.id).toBe("1");
    expect(toPlainMessage(message).properties["X-Hop"]).toEqual(["a", "b", "c"]);
  });

  it("do not make a message binary mode: without specversion it stays a plain message", () => {
    const message: MqttMessage = {
      payload: new TextEncoder().encode("hi"),
      userProperties: { "X-Request-Id": "1", SpecVersion: "1.0" },
    };
    expect(classifyMqttMessage(message)).toBeUndefined();
  });

  it("a name that is a context attribute in another case is refused as InvalidEvent, naming it", () => {
    for (const name of ["Type", "ID", "Source", "SpecVersion", "DataContentType", "TIME"]) {
      const error = thrownBy(() =>
        fromMqttMessage(
          { ...base, userProperties: { ...required, [name]: "x" } },
          { formats: [json] },
        ),
      );
      expect(isPosthornError(error, "InvalidEvent"), name).toBe(true);
      expect((error as PosthornError).attribute).toBe(name);
      expect((error as PosthornError).message).toContain(name);
    }
  });

  it("a name that is another user property of the message in another case is refused", () => {
    const error = thrownBy(() =>
      fromMqttMessage(
        { ...base, userProperties: { ...required, tenant: "a", Tenant: "b" } },
        { formats: [json] },
      ),
    );
    expect(isPosthornError(error, "InvalidEvent")).toBe(true);
    expect((error as PosthornError).attribute).toBe("Tenant");
    // Alone, the same name is foreign: nothing says it was meant as an attribute.
    const back = fromMqttMessage(
      { ...base, userProperties: { ...required, Tenant: "b" } },
      { formats: [json] },
    );
    expect(Object.hasOwn(back, "tenant") || Object.hasOwn(back, "Tenant")).toBe(false);
  });

  it("data_base64 stays MalformedInput; data in another case is foreign", () => {
    expectCode(
      () =>
        fromMqttMessage(
          { ...base, userProperties: { ...required, data_base64: "AAAA" } },
          { formats: [json] },
        ),
      "MalformedInput",
    );
    const back = fromMqttMessage(
      { ...base, userProperties: { ...required, Data: "AAAA" } },
      { formats: [json] },
    );
    expect(back.data).toBeUndefined();
  });

  it("count against maxUserProperties", () => {
    expectCode(
      () =>
        fromMqttMessage(
          { ...base, userProperties: { ...required, "X-Request-Id": "1" } },
          { formats: [json], maxUserProperties: 4 },
        ),
      "PayloadTooLarge",
    );
  });

  it("count against maxUserProperties in structured mode too, and for a plain message", () => {
    const message = toMqttMessage(event, { mode: "structured", format: json });
    const userProperties = { a: "1", b: "2", "X-C": "3" };
    expectCode(
      () =>
        fromMqttMessage({ ...message, userProperties }, { formats: [json], maxUserProperties: 2 }),
      "PayloadTooLarge",
    );
    expect(
      fromMqttMessage({ ...message, userProperties }, { formats: [json], maxUserProperties: 3 }).id,
    ).toBe(event.id);
    expectCode(
      () =>
        fromMqttMessage(
          { payload: new Uint8Array(1), contentType: "text/plain", userProperties },
          { formats: [json], maxUserProperties: 2 },
        ),
      "PayloadTooLarge",
    );
  });

  it("never break a structured-mode message (user properties are not read there)", () => {
    const message = toMqttMessage(event, { mode: "structured", format: json });
    const props = Object.create(null) as Record<string, string | string[]>;
    Object.assign(props, foreign, { Type: "mis-cased", "X-Hop": ["a", "b"], specversion: "0.3" });
    Object.defineProperty(props, "__proto__", { value: "x", enumerable: true });
    const withForeign: MqttMessage = { ...message, userProperties: props };
    expect(classifyMqttMessage(withForeign)).toBe("structured");
    expect(differences(fromMqttMessage(withForeign, { formats: [json] }), event)).toEqual([]);
    expect(toPlainMessage(withForeign).properties["X-Request-Id"]).toBe("req-42");
  });
});

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (err) {
    return err;
  }
  return undefined;
}

// The MQTT binding's own examples and the rules no other test above reads directly.
describe("MQTT binding spec rules", () => {
  const utf8 = (s: string) => new TextEncoder().encode(s);
  const attributes = {
    specversion: "1.0",
    type: "com.example.someevent",
    time: "2018-04-05T03:56:24Z",
    id: "1234-1234-1234",
    source: "/mycontext/subcontext",
  };

  it("3.1.4: the binary example, a datacontenttype user property agreeing with Content Type", () => {
    const event = fromMqttMessage(
      {
        payload: utf8('{"n":1}'),
        contentType: "application/json; charset=utf-8",
        userProperties: { ...attributes, datacontenttype: "application/json; charset=utf-8" },
      },
      { formats: [json] },
    );
    expect(event.datacontenttype).toBe("application/json; charset=utf-8");
    expect(event.time).toBe("2018-04-05T03:56:24Z");
    expect(event.data).toEqual({ n: 1 });
  });

  it("3.1.3: a datacontenttype user property without Content Type still declares the data", () => {
    const event = fromMqttMessage(
      {
        payload: utf8("hello"),
        userProperties: { ...attributes, datacontenttype: "text/plain" },
      },
      { formats: [json] },
    );
    expect(event.datacontenttype).toBe("text/plain");
    expect(event.data).toBe("hello");
  });

  it("3.2.1: a structured Content Type with parameters is still the JSON format", () => {
    const message: MqttMessage = {
      payload: utf8(JSON.stringify({ ...attributes, data: { n: 1 } })),
      contentType: "application/cloudevents+json; charset=utf-8",
    };
    expect(classifyMqttMessage(message)).toBe("structured");
    expect(fromMqttMessage(message, { formats: [json] }).data).toEqual({ n: 1 });
  });

  it("3.2.3: structured mode may carry the binary user properties too; the payload decides", () => {
    const message: MqttMessage = {
      payload: utf8(JSON.stringify({ ...attributes, data: { n: 1 } })),
      contentType: "application/cloudevents+json",
      userProperties: { ...attributes, id: "not-the-payload's" },
    };
    expect(fromMqttMessage(message, { formats: [json] }).id).toBe("1234-1234-1234");
  });

  it("3.2: the MQTT 3.1.1 example (no Content Type) is structured JSON", () => {
    const payload = utf8(JSON.stringify({ ...attributes, datacontenttype: "application/json" }));
    const event = fromMqttMessage({ payload }, { formats: [json], protocolVersion: 4 });
    expect(event.type).toBe("com.example.someevent");
  });
});

import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import { fromKafkaRecord, toKafkaRecord } from "@posthorn/binding-kafka";
import { fromMqttMessage, toMqttMessage } from "@posthorn/binding-mqtt";
import { fromNatsMessage, toNatsMessage } from "@posthorn/binding-nats";
import { CloudEvent, ExtensionRegistry, extensions, isPosthornError } from "@posthorn/core";
import { avroCompactFormat, avroFormat } from "@posthorn/format-avro";
import { jsonFormat } from "@posthorn/format-json";
import { protobufFormat } from "@posthorn/format-protobuf";
import { describe, expect, it } from "vitest";

// Issue 12: declare extensions once, and every binding's binary-mode decoder restores their types
// from headers, user properties and application properties that carry only strings.
const registry = extensions.clone();
registry.declare({ name: "priority", type: "Integer" });
registry.declare({ name: "urgent", type: "Boolean" });
registry.declare({ name: "deadline", type: "Timestamp" });
registry.declare({ name: "callback", type: "URI" });
registry.declare({ name: "checksum", type: "Binary" });

const event = new CloudEvent({
  specversion: "1.0",
  id: "typed-1",
  source: "/typed",
  type: "com.example.typed",
  priority: -7,
  urgent: true,
  deadline: "2024-05-01T10:00:00.5+02:00",
  callback: "https://example.com/cb?x=1",
  checksum: new Uint8Array([0, 1, 254, 255]),
  untyped: "42",
  severitynumber: 17,
  sampledrate: 3,
  datacontenttype: "application/json",
  data: { ok: true },
});

// Each binding's binary mode: encode, then decode what a receiver would get on the wire.
const paths: Record<string, (e: CloudEvent, r: ExtensionRegistry) => CloudEvent> = {
  http: (e, r) => {
    const m = toHttpMessage(e, { mode: "binary" });
    return fromHttpMessage({ headers: m.headers, body: m.body }, { registry: r }) as CloudEvent;
  },
  kafka: (e, r) => {
    const rec = toKafkaRecord(e, { mode: "binary" });
    // kafkajs hands header values over as Buffers
    const headers = Object.fromEntries(
      Object.entries(rec.headers).map(([k, v]) => [k, Buffer.from(v as string)]),
    );
    return fromKafkaRecord({ key: null, value: rec.value, headers }, { registry: r });
  },
  mqtt5: (e, r) => {
    const m = toMqttMessage(e, { mode: "binary", protocolVersion: 5 });
    return fromMqttMessage(m, { formats: [jsonFormat()], protocolVersion: 5, registry: r });
  },
  nats: (e, r) => {
    const m = toNatsMessage(e, { mode: "binary" });
    return fromNatsMessage({ data: m.data, headers: m.headers }, { registry: r });
  },
};

describe("typed extensions through header-based bindings", () => {
  for (const [name, roundTrip] of Object.entries(paths)) {
    it(`${name}: declared extensions come back with their types`, () => {
      const back = roundTrip(event, registry);
      expect(back.priority).toBe(-7);
      expect(back.urgent).toBe(true);
      expect(back.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
      expect(back.deadline).toBe("2024-05-01T10:00:00.5+02:00");
      expect(back.callback).toBe("https://example.com/cb?x=1");
      // spec extensions declared out of the box
      expect(back.severitynumber).toBe(17);
      expect(back.sampledrate).toBe(3);
      // undeclared extensions stay Strings, as the spec says
      expect(back.untyped).toBe("42");
    });

    it(`${name}: without the declarations the same values arrive as Strings`, () => {
      const back = roundTrip(event, new ExtensionRegistry());
      expect(back.priority).toBe("-7");
      expect(back.urgent).toBe("true");
      expect(back.checksum).toBe("AAH+/w==");
    });

    it(`${name}: a value that is not of the declared type is an InvalidEvent naming it`, () => {
      const wrong = event.cloneWith({ priority: "high" });
      let err: unknown;
      try {
        roundTrip(wrong, registry);
      } catch (e) {
        err = e;
      }
      expect(isPosthornError(err, "InvalidEvent")).toBe(true);
      expect((err as { attribute?: string }).attribute).toBe("priority");
    });
  }
});

// The formats carry some types themselves (JSON: Boolean and Integer; Avro: Boolean, Integer and
// Binary; Protobuf: all), and the declarations fill in the rest, so that a structured event comes
// back as the same binding's binary mode gives it: the same declarations, the same types.
const formats = {
  json: (r: ExtensionRegistry) => jsonFormat({ registry: r }),
  avro: (r: ExtensionRegistry) => avroFormat({ registry: r }),
  "avro-compact": (r: ExtensionRegistry) => avroCompactFormat({ registry: r }),
  protobuf: (r: ExtensionRegistry) => protobufFormat({ registry: r }),
};

function invalidAttribute(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    expect(isPosthornError(err, "InvalidEvent")).toBe(true);
    return (err as { attribute?: string }).attribute;
  }
  return undefined;
}

describe("typed extensions through the event formats", () => {
  for (const [name, make] of Object.entries(formats)) {
    const format = make(registry);
    // Encoded by a producer that declares nothing: declared types travel as their strings.
    const plain = make(new ExtensionRegistry());
    const stringly = event.cloneWith({
      priority: "-7",
      urgent: "true",
      checksum: "AAH+/w==",
      severitynumber: "17",
    });

    it(`${name}: declared extensions come back with their types`, () => {
      const back = format.decode(format.encode(event));
      expect(back.priority).toBe(-7);
      expect(back.urgent).toBe(true);
      expect(back.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
      expect(back.callback).toBe("https://example.com/cb?x=1");
      expect(back.severitynumber).toBe(17);
      expect(back.untyped).toBe("42");
    });

    it(`${name}: declared types are restored from strings, as from headers`, () => {
      const back = format.decode(plain.encode(stringly));
      expect(back.priority).toBe(-7);
      expect(back.urgent).toBe(true);
      expect(back.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
      expect(back.severitynumber).toBe(17);
      // and without the declarations they stay the strings they were
      const untyped = plain.decode(plain.encode(stringly));
      expect(untyped.priority).toBe("-7");
      expect(untyped.checksum).toBe("AAH+/w==");
    });

    it(`${name}: a value that is not of the declared type is an InvalidEvent naming it`, () => {
      const bytes = (change: Record<string, unknown>) => plain.encode(event.cloneWith(change));
      expect(invalidAttribute(() => format.decode(bytes({ priority: "high" })))).toBe("priority");
      expect(invalidAttribute(() => format.decode(bytes({ urgent: 1 })))).toBe("urgent");
      expect(invalidAttribute(() => format.decode(bytes({ priority: true })))).toBe("priority");
      expect(invalidAttribute(() => format.decode(bytes({ deadline: "soon" })))).toBe("deadline");
      expect(invalidAttribute(() => format.decode(bytes({ callback: "no scheme" })))).toBe(
        "callback",
      );
    });

    it(`${name}: a typed value of a declared String becomes its canonical string`, () => {
      const strings = new ExtensionRegistry([{ name: "label", type: "String" }]);
      const back = make(strings).decode(plain.encode(event.cloneWith({ label: 12 })));
      expect(back.label).toBe("12");
    });
  }

  it("data cannot be declared as an extension", () => {
    expect(() => new ExtensionRegistry([{ name: "data", type: "Integer" }])).toThrow(TypeError);
  });
});

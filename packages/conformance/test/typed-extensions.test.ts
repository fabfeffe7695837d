import { fromAmqpMessage, toAmqpMessage } from "@posthorn/binding-amqp";
import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import { fromKafkaRecord, toKafkaRecord } from "@posthorn/binding-kafka";
import { fromMqttMessage, toMqttMessage } from "@posthorn/binding-mqtt";
import { fromNatsMessage, toNatsMessage } from "@posthorn/binding-nats";
import { CloudEvent, ExtensionRegistry, extensions, isPosthornError } from "@posthorn/core";
import { avro, avroCompactFormat, avroFormat } from "@posthorn/format-avro";
import { json, jsonFormat } from "@posthorn/format-json";
import { protobuf, protobufFormat } from "@posthorn/format-protobuf";
import rhea from "rhea";
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

// A binding's `registry` option is the same in both content modes: a structured message decoded
// with the default format instances (which were made with core's `extensions`) gets the types the
// option declares, as a binary message does. The event carries a declared Integer as a string and
// a declared Binary, which the JSON format writes as base64 text: the default `json` reads both
// back as Strings unless the binding hands its registry on.
const sent = event.cloneWith({ priority: "-7" });
const structuredPaths: Record<
  string,
  { structured: (e: CloudEvent, r: ExtensionRegistry) => CloudEvent; binary?: string }
> = {
  http: {
    structured: (e, r) => {
      const m = toHttpMessage(e, { mode: "structured", format: json });
      return fromHttpMessage(m, { formats: [json], registry: r }) as CloudEvent;
    },
    binary: "http",
  },
  "http batch": {
    structured: (e, r) => {
      const m = toHttpMessage([e], { mode: "batch", format: json });
      const back = fromHttpMessage(m, { formats: [json], registry: r }) as CloudEvent[];
      expect(back).toHaveLength(1);
      return back[0] as CloudEvent;
    },
    binary: "http",
  },
  kafka: {
    structured: (e, r) => {
      const rec = toKafkaRecord(e, { mode: "structured", format: json });
      const headers = Object.fromEntries(
        Object.entries(rec.headers).map(([k, v]) => [k, Buffer.from(v as string)]),
      );
      return fromKafkaRecord(
        { key: null, value: rec.value, headers },
        { formats: [json], registry: r },
      );
    },
    binary: "kafka",
  },
  mqtt5: {
    structured: (e, r) => {
      const m = toMqttMessage(e, { mode: "structured", format: json, protocolVersion: 5 });
      return fromMqttMessage(m, { formats: [json], protocolVersion: 5, registry: r });
    },
    binary: "mqtt5",
  },
  // MQTT 3.1.1 carries no content type: the payload is read with the JSON format by default.
  "mqtt 3.1.1": {
    structured: (e, r) => {
      const m = toMqttMessage(e, { mode: "structured", format: json, protocolVersion: 4 });
      return fromMqttMessage(m, { formats: [json], protocolVersion: 4, registry: r });
    },
    binary: "mqtt5",
  },
  nats: {
    structured: (e, r) => {
      const m = toNatsMessage(e, { mode: "structured", format: json });
      return fromNatsMessage(
        { data: m.data, headers: m.headers },
        { formats: [json], registry: r },
      );
    },
    binary: "nats",
  },
  // NATS binding 1.0.2 producers send structured JSON without headers.
  "nats without headers": {
    structured: (e, r) => {
      const m = toNatsMessage(e, { mode: "structured", format: json });
      return fromNatsMessage({ data: m.data }, { formats: [json], registry: r });
    },
    binary: "nats",
  },
  amqp: {
    structured: (e, r) => {
      const m = toAmqpMessage(e, { codec: rhea, mode: "structured", format: json });
      const received = rhea.message.decode(rhea.message.encode(m as never)) as never;
      return fromAmqpMessage(received, { formats: [json], registry: r });
    },
  },
  "amqp protobuf": {
    structured: (e, r) => {
      const m = toAmqpMessage(e, { codec: rhea, mode: "structured", format: protobuf });
      const received = rhea.message.decode(rhea.message.encode(m as never)) as never;
      return fromAmqpMessage(received, { formats: [protobuf], registry: r });
    },
  },
  "kafka avro": {
    structured: (e, r) => {
      const rec = toKafkaRecord(e, { mode: "structured", format: avro });
      return fromKafkaRecord(
        { key: null, value: rec.value, headers: rec.headers },
        { formats: [avro], registry: r },
      );
    },
  },
};

describe("typed extensions in structured mode: the binding's registry reaches the format", () => {
  for (const [name, path] of Object.entries(structuredPaths)) {
    it(`${name}: declared extensions come back with their types, as in binary mode`, () => {
      const back = path.structured(sent, registry);
      expect(back.priority).toBe(-7);
      expect(back.checksum).toEqual(new Uint8Array([0, 1, 254, 255]));
      expect(back.urgent).toBe(true);
      expect(back.untyped).toBe("42");
      if (path.binary !== undefined) {
        expect(back).toEqual((paths[path.binary] as (typeof paths)[string])(sent, registry));
      }
    });

    it(`${name}: a value that is not of the declared type is an InvalidEvent naming it`, () => {
      expect(
        invalidAttribute(() => path.structured(sent.cloneWith({ priority: "high" }), registry)),
      ).toBe("priority");
    });
  }

  it("a format without withRegistry decodes with its own registry, as before", () => {
    const { withRegistry: _, ...legacy } = jsonFormat();
    const m = toHttpMessage(sent, { mode: "structured", format: legacy });
    const back = fromHttpMessage(m, { formats: [legacy], registry }) as CloudEvent;
    expect(back.priority).toBe("-7");
    expect(back.checksum).toBe("AAH+/w==");
  });

  it("without a registry option the format's own registry applies", () => {
    const own = jsonFormat({ registry });
    const m = toKafkaRecord(sent, { mode: "structured", format: own });
    expect(
      fromKafkaRecord({ key: null, value: m.value, headers: m.headers }, { formats: [own] })
        .priority,
    ).toBe(-7);
    expect(
      fromKafkaRecord({ key: null, value: m.value, headers: m.headers }, { formats: [json] })
        .priority,
    ).toBe("-7");
  });
});

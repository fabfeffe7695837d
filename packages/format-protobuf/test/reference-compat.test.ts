import { fileURLToPath } from "node:url";
import { CloudEvent, extensions, isBytes, isJsonContentType } from "@posthorn/core";
import { protobuf, protobufDataCodec } from "@posthorn/format-protobuf";
import { expectEquivalent, validVectors } from "@posthorn/testkit";
import protobufjs from "protobufjs";
import { describe, expect, it } from "vitest";

// The reference schema is the CloudEvents specification's cloudevents.proto (../shared/spec
// beside the checkout), loaded by protobufjs with its field names kept as written. protobufjs ships
// google/protobuf/any.proto and timestamp.proto, which the schema imports.
const root = new protobufjs.Root().loadSync(
  fileURLToPath(new URL("../../../../shared/spec/cloudevents.proto", import.meta.url)),
  { keepCase: true },
);
const Reference = root.lookupType("io.cloudevents.v1.CloudEvent");
const ReferenceBatch = root.lookupType("io.cloudevents.v1.CloudEventBatch");
const OWN = new Set(["id", "source", "specversion", "type", "data"]);

// ---- The documented mapping, written a second time, as a protobufjs object.

function timestamp(text: string): Record<string, number> {
  const seconds = Math.floor(Date.parse(text) / 1000);
  const nanos = Number((/\.(\d+)/.exec(text)?.[1] ?? "").padEnd(9, "0").slice(0, 9));
  return { ...(seconds ? { seconds } : {}), ...(nanos ? { nanos } : {}) };
}

function attributeValue(name: string, v: unknown): Record<string, unknown> {
  if (typeof v === "boolean") return { ce_boolean: v };
  if (typeof v === "number") return { ce_integer: v };
  if (isBytes(v)) return { ce_bytes: v };
  const type = extensions.typeOf(name);
  if (type === "Timestamp") return { ce_timestamp: timestamp(v as string) };
  if (type === "URI") return { ce_uri: v };
  if (type === "URI-reference") return { ce_uri_ref: v };
  return { ce_string: v };
}

function toReference(event: CloudEvent): Record<string, unknown> {
  const attributes: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (!OWN.has(k)) attributes[k] = attributeValue(k, v);
  }
  const out: Record<string, unknown> = {
    id: event.id,
    source: event.source,
    spec_version: event.specversion,
    type: event.type,
    attributes,
  };
  if (!event.hasData()) return out;
  const data = event.data;
  const ct = event.datacontenttype;
  if (ct === undefined && !isBytes(data)) {
    attributes.datacontenttype = { ce_string: "application/json" };
  }
  if (isBytes(data)) out.binary_data = data;
  else if (typeof data === "string" && ct !== undefined && !isJsonContentType(ct)) {
    out.text_data = data;
  } else out.text_data = JSON.stringify(data);
  return out;
}

function fromReference(message: protobufjs.Message): CloudEvent {
  const o = Reference.toObject(message, { longs: Number }) as Record<string, never>;
  const init: Record<string, unknown> = {
    specversion: o.spec_version,
    id: o.id,
    source: o.source,
    type: o.type,
  };
  for (const [k, v] of Object.entries(o.attributes ?? {}) as [string, Record<string, never>][]) {
    if (v.ce_timestamp !== undefined) {
      const t = v.ce_timestamp as { seconds?: number; nanos?: number };
      const iso = new Date((t.seconds ?? 0) * 1000).toISOString().slice(0, 19);
      init[k] = `${iso}.${String(t.nanos ?? 0).padStart(9, "0")}Z`;
    } else {
      init[k] = Object.values(v)[0];
    }
  }
  const ct = init.datacontenttype as string | undefined;
  if (o.binary_data !== undefined) init.data = new Uint8Array(o.binary_data);
  else if (o.text_data !== undefined) {
    init.data = ct && isJsonContentType(ct) ? JSON.parse(o.text_data) : o.text_data;
  }
  return new CloudEvent(init as never);
}

describe("Protobuf format against the specification's cloudevents.proto (protobufjs)", () => {
  it("uses the reference field numbers", () => {
    expect(Reference.fieldsArray.map((f) => `${f.name}=${f.id}`)).toEqual([
      "id=1",
      "source=2",
      "spec_version=3",
      "type=4",
      "attributes=5",
      "binary_data=6",
      "text_data=7",
      "proto_data=8",
    ]);
  });

  for (const vec of validVectors) {
    it(`${vec.name}: same bytes as protobufjs, and each decodes the other's`, () => {
      const ours = protobuf.encode(vec.event);
      const theirs = Reference.encode(Reference.fromObject(toReference(vec.event))).finish();
      expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
      expectEquivalent(fromReference(Reference.decode(ours)), vec.event, "protobufjs");
      expectEquivalent(protobuf.decode(theirs), vec.event, "posthorn");
    });
  }

  it("batch: same bytes as protobufjs CloudEventBatch, both ways", () => {
    const events = validVectors.map((v) => v.event);
    const ours = protobuf.encodeBatch?.(events) as Uint8Array;
    const theirs = ReferenceBatch.encode(
      ReferenceBatch.fromObject({ events: events.map(toReference) }),
    ).finish();
    expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
    const back = protobuf.decodeBatch?.(theirs) as CloudEvent[];
    expect(back).toHaveLength(events.length);
    for (const [i, e] of back.entries()) expectEquivalent(e, events[i] as CloudEvent);
    const decoded = ReferenceBatch.decode(ours) as unknown as { events: protobufjs.Message[] };
    expect(decoded.events).toHaveLength(events.length);
  });

  it("reads map entries in any order and with the attribute value fields protobufjs writes", () => {
    const theirs = Reference.encode(
      Reference.fromObject({
        id: "1",
        source: "/s",
        spec_version: "1.0",
        type: "t",
        attributes: {
          time: { ce_timestamp: { seconds: 1714557600, nanos: 5 } },
          count: { ce_integer: -7 },
          dataschema: { ce_uri: "https://example.com/s" },
          dataref: { ce_uri_ref: "../x" },
        },
        text_data: "hi",
      }),
    ).finish();
    const event = protobuf.decode(theirs);
    expect(event.time).toBe("2024-05-01T10:00:00.000000005Z");
    expect(event.count).toBe(-7);
    expect(event.dataref).toBe("../x");
    expect(event.data).toBe("hi");
  });
});

describe("protobuf message data as proto_data (google.protobuf.Any)", () => {
  const thing = new protobufjs.Type("Thing")
    .add(new protobufjs.Field("name", 1, "string"))
    .add(new protobufjs.Field("count", 2, "int32"));
  new protobufjs.Root().define("test").add(thing);
  const codec = protobufDataCodec<{ name: string; count: number }>(thing);

  it("names the type URL from the message type", () => {
    expect(codec.contentType).toBe("application/protobuf");
    expect(codec.dataschema).toBe("https://type.googleapis.com/test.Thing");
  });

  it("writes proto_data with the dataschema as type URL, which protobufjs unpacks", () => {
    const event = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      datacontenttype: codec.contentType,
      dataschema: codec.dataschema as string,
      data: codec.encode({ name: "widget", count: 3 }),
    });
    const bytes = protobuf.encode(event);
    const message = Reference.toObject(Reference.decode(bytes)) as {
      proto_data: { type_url: string; value: Uint8Array };
      binary_data?: unknown;
    };
    expect(message.binary_data).toBeUndefined();
    expect(message.proto_data.type_url).toBe(codec.dataschema);
    expect(thing.toObject(thing.decode(message.proto_data.value))).toEqual({
      name: "widget",
      count: 3,
    });
    const back = protobuf.decode(bytes);
    expectEquivalent(back, event);
    expect(codec.decode(back.data as Uint8Array)).toEqual({ name: "widget", count: 3 });
  });

  it("reads proto_data another producer wrote", () => {
    const value = thing.encode({ name: "x", count: 1 }).finish();
    const theirs = Reference.encode(
      Reference.fromObject({
        id: "1",
        source: "/s",
        spec_version: "1.0",
        type: "t",
        attributes: { datacontenttype: { ce_string: "application/protobuf" } },
        proto_data: { type_url: "type.googleapis.com/test.Thing", value },
      }),
    ).finish();
    const event = protobuf.decode(theirs);
    expect(codec.decode(event.data as Uint8Array)).toEqual({ name: "x", count: 1 });
  });

  it("refuses a value the type rejects, and gives MalformedInput for bad bytes", () => {
    expect(() => codec.encode({ name: 5 } as never)).toThrow(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
    expect(() => codec.decode(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });
});

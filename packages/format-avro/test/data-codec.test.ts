import { CloudEvent, isPosthornError } from "@posthorn/core";
import { AVRO_DATA_CONTENT_TYPE, avroDataCodec } from "@posthorn/format-avro";
import avsc from "avsc";
import { describe, expect, it } from "vitest";

const orderSchema = {
  type: "record",
  name: "Order",
  namespace: "com.example",
  fields: [
    { name: "id", type: "long" },
    { name: "customer", type: "string" },
    {
      name: "lines",
      type: {
        type: "array",
        items: {
          type: "record",
          name: "Line",
          fields: [
            { name: "sku", type: "string" },
            { name: "qty", type: "int" },
          ],
        },
      },
    },
    { name: "note", type: ["null", "string"], default: null },
  ],
};
interface Order {
  id: number;
  customer: string;
  lines: { sku: string; qty: number }[];
  note: string | null;
}
const order: Order = { id: 42, customer: "c-7", lines: [{ sku: "a-1", qty: 2 }], note: null };

describe("avroDataCodec", () => {
  const codec = avroDataCodec<Order>(orderSchema, { dataschema: "https://example.com/order.avsc" });

  it("names application/avro and the dataschema", () => {
    expect(codec.contentType).toBe(AVRO_DATA_CONTENT_TYPE);
    expect(codec.dataschema).toBe("https://example.com/order.avsc");
  });

  it("round-trips a typed value through a binary-mode event payload", () => {
    const event = CloudEvent.create({
      type: "order.created",
      source: "/orders",
      datacontenttype: codec.contentType,
      ...(codec.dataschema ? { dataschema: codec.dataschema } : {}),
      data: codec.encode(order),
    });
    expect(codec.decode(event.data as Uint8Array)).toEqual(order);
  });

  it("writes the bytes avsc writes for the same schema, and reads them", () => {
    const type = avsc.Type.forSchema(orderSchema as never);
    expect(Buffer.from(codec.encode(order)).equals(type.toBuffer(order))).toBe(true);
    expect(codec.decode(new Uint8Array(type.toBuffer(order)))).toEqual(order);
  });

  it("accepts schema JSON text and a compiled avsc type", () => {
    const fromText = avroDataCodec<Order>(JSON.stringify(orderSchema));
    const fromType = avroDataCodec<Order>(avsc.Type.forSchema(orderSchema as never));
    expect(fromText.decode(fromType.encode(order))).toEqual(order);
  });

  it("refuses a value that does not match the schema with InvalidEvent", () => {
    expect(() => codec.encode({ ...order, id: "x" } as never)).toThrow(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
  });

  it("gives a typed error for every truncation", () => {
    const bytes = codec.encode(order);
    for (let cut = 0; cut < bytes.length; cut++) {
      let thrown: unknown;
      try {
        codec.decode(bytes.subarray(0, cut));
      } catch (err) {
        thrown = err;
      }
      expect(isPosthornError(thrown, "MalformedInput"), `cut at ${cut}`).toBe(true);
    }
  });

  it("refuses an invalid schema or a relative dataschema", () => {
    expect(() => avroDataCodec({ type: "nope" })).toThrow(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
    expect(() => avroDataCodec("string", { dataschema: "/relative" })).toThrow(
      expect.objectContaining({ code: "InvalidEvent" }),
    );
  });

  it("refuses invalid UTF-8 in a string or a map key with MalformedInput, not replacement characters", () => {
    const text = avroDataCodec<string>("string");
    expect(() => text.decode(new Uint8Array([4, 0xff, 0xfe]))).toThrow(
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining("UTF-8"),
      }),
    );
    const map = avroDataCodec<Record<string, number>>({ type: "map", values: "int" });
    expect(() => map.decode(new Uint8Array([2, 2, 0xc0, 2, 0]))).toThrow(
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining("UTF-8"),
      }),
    );
    // Valid text beyond ASCII still reads.
    expect(text.decode(text.encode("héllo \u{1F600}"))).toBe("héllo \u{1F600}");
    expect(map.decode(map.encode({ clé: 1 }))).toEqual({ clé: 1 });
  });

  it("refuses a schema whose record has a field named __proto__ (avsc made it the prototype)", () => {
    const nested = {
      type: "record",
      name: "Outer",
      fields: [
        {
          name: "items",
          type: {
            type: "array",
            items: {
              type: "record",
              name: "Inner",
              fields: [{ name: "__proto__", type: { type: "map", values: "boolean" } }],
            },
          },
        },
      ],
    };
    expect(() => avroDataCodec(nested)).toThrow(
      expect.objectContaining({ code: "InvalidEvent", message: expect.stringContaining("Inner") }),
    );
    // A recursive schema without one is fine.
    const list = avroDataCodec({
      type: "record",
      name: "Node",
      fields: [
        { name: "value", type: "int" },
        { name: "next", type: ["null", "Node"] },
      ],
    });
    const value = { value: 1, next: { value: 2, next: null } };
    expect(list.decode(list.encode(value))).toEqual(value);
  });
});

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
});

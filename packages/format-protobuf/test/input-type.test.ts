import { base64Encode, CloudEvent } from "@posthorn/core";
import { protobuf, protobufDataCodec } from "@posthorn/format-protobuf";
import { describe, expect, it } from "vitest";

const event = CloudEvent.create({ type: "t", source: "/s", data: { a: 1 } });

describe("Protobuf format given something other than bytes or an array", () => {
  it("says decode takes bytes when handed a string (base64, say) or nothing", () => {
    const takesBytes = (what: string) =>
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining(`${what} takes bytes (a Uint8Array), not`),
      });
    const base64 = base64Encode(protobuf.encode(event));
    expect(() => protobuf.decode(base64 as never)).toThrowError(takesBytes("protobuf.decode"));
    expect(() => protobuf.decode(undefined as never)).toThrowError(takesBytes("protobuf.decode"));
    expect(() => protobuf.decodeBatch(base64 as never)).toThrowError(
      takesBytes("protobuf.decodeBatch"),
    );
  });

  it("reads an ArrayBuffer as the bytes it holds (it read none: 'specversion is required')", () => {
    const bytes = protobuf.encode(event);
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    expect(protobuf.decode(copy as never).id).toBe(event.id);
  });

  it("says encodeBatch takes an array when handed one event or nothing", () => {
    for (const bad of [event, undefined, new Set([event])]) {
      expect(() => protobuf.encodeBatch(bad as never)).toThrowError(
        expect.objectContaining({
          code: "InvalidEvent",
          message: expect.stringContaining("protobuf.encodeBatch takes an array of events"),
        }),
      );
    }
  });

  it("protobufDataCodec decode says it takes bytes before its message type sees a string", () => {
    const seen: unknown[] = [];
    const codec = protobufDataCodec({
      encode: () => ({ finish: () => new Uint8Array(0) }),
      decode: (bytes: Uint8Array) => seen.push(bytes),
    });
    expect(() => codec.decode("CgE=" as never)).toThrowError(
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining("protobufDataCodec decode takes bytes"),
      }),
    );
    expect(seen).toEqual([]);
  });
});

import { base64Encode, CloudEvent } from "@posthorn/core";
import { avro, avroCompactFormat, avroDataCodec } from "@posthorn/format-avro";
import { describe, expect, it } from "vitest";

const event = CloudEvent.create({ type: "t", source: "/s", data: { a: 1 } });
const compact = avroCompactFormat();
const codec = avroDataCodec<string>("string");
const decoders: [string, (input: never) => unknown, Uint8Array][] = [
  ["avro.decode", (b) => avro.decode(b), avro.encode(event)],
  ["avro-compact decode", (b) => compact.decode(b), compact.encode(event)],
  ["avroDataCodec decode", (b) => codec.decode(b), codec.encode("hello")],
];

describe("Avro decoders given something other than bytes", () => {
  it.each(decoders)(
    "%s says it takes bytes when handed a string or nothing",
    (what, decode, bytes) => {
      for (const bad of [base64Encode(bytes), undefined, [...bytes]]) {
        expect(() => decode(bad as never)).toThrowError(
          expect.objectContaining({
            code: "MalformedInput",
            message: expect.stringContaining(`${what} takes bytes (a Uint8Array), not`),
          }),
        );
      }
    },
  );

  it.each(decoders)("%s reads an ArrayBuffer as the bytes it holds", (_, decode, bytes) => {
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    expect(decode(copy as never)).toEqual(decode(bytes as never));
  });
});

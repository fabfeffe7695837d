import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { describe, expect, it } from "vitest";

const event = CloudEvent.create({ type: "t", source: "/s", data: { a: 1 } });
const text = new TextDecoder().decode(json.encode(event));

describe("JSON format given something other than bytes or an array", () => {
  it("says decode takes bytes when handed the text itself, or nothing", () => {
    const takesBytes = (what: string) =>
      expect.objectContaining({
        code: "MalformedInput",
        message: expect.stringContaining(`${what} takes bytes (a Uint8Array), not`),
      });
    expect(() => json.decode(text as never)).toThrowError(takesBytes("json.decode"));
    expect(() => json.decode(undefined as never)).toThrowError(takesBytes("json.decode"));
    expect(() => json.decodeBatch(`[${text}]` as never)).toThrowError(
      takesBytes("json.decodeBatch"),
    );
  });

  it("reads an ArrayBuffer as the bytes it holds", () => {
    const bytes = json.encode(event);
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    expect(json.decode(copy as never).id).toBe(event.id);
  });

  it("says encodeBatch takes an array when handed one event or nothing", () => {
    for (const bad of [event, undefined, new Set([event])]) {
      expect(() => json.encodeBatch(bad as never)).toThrowError(
        expect.objectContaining({
          code: "InvalidEvent",
          message: expect.stringContaining("json.encodeBatch takes an array of events"),
        }),
      );
    }
  });
});

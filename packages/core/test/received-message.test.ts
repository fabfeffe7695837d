import { type MessageProperties, ReceivedMessage } from "@posthorn/core";
import { describe, expect, it } from "vitest";

describe("ReceivedMessage (a received message whose properties are built on first read)", () => {
  const body = new Uint8Array([1, 2, 3]);

  function counting(pairs: Array<[string, string]>) {
    const calls: Array<Array<[string, string]>> = [];
    const build = (source: Array<[string, string]>): MessageProperties => {
      calls.push(source);
      const out = Object.create(null) as Record<string, string>;
      for (const [k, v] of source) out[k] = v;
      return out;
    };
    return {
      calls,
      message: new ReceivedMessage(body, "text/plain", { topic: "t" }, pairs, build),
    };
  }

  it("builds the properties once, on the first read, from the source it was given", () => {
    const pairs: Array<[string, string]> = [["a", "1"]];
    const { calls, message } = counting(pairs);
    expect(calls).toHaveLength(0);
    const first = message.properties;
    expect(first).toEqual({ a: "1" });
    expect(message.properties).toBe(first);
    expect(calls).toEqual([pairs]);
  });

  it("reads like a plain object: spread, keys, JSON and toEqual see every member", () => {
    const { message } = counting([["ce-id", "42"]]);
    expect(Object.keys(message).sort()).toEqual(["body", "contentType", "metadata", "properties"]);
    const copy = { ...message };
    expect(copy.properties).toEqual({ "ce-id": "42" });
    expect(Object.getOwnPropertyDescriptor(copy, "properties")?.value).toEqual({ "ce-id": "42" });
    expect(JSON.parse(JSON.stringify(message))).toEqual({
      body: { 0: 1, 1: 2, 2: 3 },
      contentType: "text/plain",
      properties: { "ce-id": "42" },
      metadata: { topic: "t" },
    });
    expect(message).toEqual({
      body,
      contentType: "text/plain",
      properties: { "ce-id": "42" },
      metadata: { topic: "t" },
    });
  });

  it("leaves contentType and metadata out when they are undefined", () => {
    const message = new ReceivedMessage(body, undefined, undefined, null, () => ({}));
    expect("contentType" in message).toBe(false);
    expect("metadata" in message).toBe(false);
    expect(Object.keys(message).sort()).toEqual(["body", "properties"]);
  });

  it("gives every instance the same members in the same order and the same getter", () => {
    // So a receive loop's reads of these members stay monomorphic.
    const a = new ReceivedMessage(body, "a", { x: 1 }, 1, () => ({}));
    const b = new ReceivedMessage(body, "b", { y: 2 }, "s", () => ({}));
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect(Object.getOwnPropertyDescriptor(a, "properties")?.get).toBe(
      Object.getOwnPropertyDescriptor(b, "properties")?.get,
    );
  });
});

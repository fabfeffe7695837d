import {
  batchOf,
  CloudEvent,
  type EventFormat,
  ExtensionRegistry,
  formatWithRegistry,
  utf8Decode,
  utf8Encode,
} from "@posthorn/core";
import { describe, expect, it } from "vitest";

// A minimal format that says which registry it reads, and counts how often it was adapted.
function textFormat(registry: ExtensionRegistry | undefined, made: { count: number }): EventFormat {
  return {
    name: "text",
    contentType: "application/cloudevents+text",
    text: true,
    encode: (event) => utf8Encode(JSON.stringify(event)),
    decode: (bytes) => {
      const init = JSON.parse(utf8Decode(bytes)) as Record<string, unknown>;
      if (registry?.typeOf("priority") === "Integer") init.priority = Number(init.priority);
      return new CloudEvent(init as never);
    },
    withRegistry(other) {
      made.count++;
      return textFormat(other, made);
    },
  };
}

const event = new CloudEvent({
  specversion: "1.0",
  id: "1",
  source: "/s",
  type: "t",
  priority: "3",
});

describe("formatWithRegistry", () => {
  it("adapts a format once per registry and hands out the same adapted format after", () => {
    const made = { count: 0 };
    const format = textFormat(undefined, made);
    const a = new ExtensionRegistry([{ name: "priority", type: "Integer" }]);
    const b = new ExtensionRegistry();
    const first = formatWithRegistry(format, a);
    expect(first).not.toBe(format);
    expect(first.decode(format.encode(event)).priority).toBe(3);
    for (let i = 0; i < 100; i++) expect(formatWithRegistry(format, a)).toBe(first);
    const other = formatWithRegistry(format, b);
    expect(other).not.toBe(first);
    expect(other.decode(format.encode(event)).priority).toBe("3");
    expect(made.count).toBe(2);
  });

  it("is the format itself without a registry, or for a format without withRegistry", () => {
    const made = { count: 0 };
    const format = textFormat(undefined, made);
    expect(formatWithRegistry(format, undefined)).toBe(format);
    const { withRegistry: _, ...legacy } = format;
    expect(formatWithRegistry(legacy, new ExtensionRegistry())).toBe(legacy);
    expect(made.count).toBe(0);
  });
});

describe("batchOf", () => {
  it("passes an array through and refuses anything else with InvalidEvent saying what to pass", () => {
    const events: unknown[] = [];
    expect(batchOf(events, "x")).toBe(events);
    expect(() => batchOf({ id: "1" } as never, "json.encodeBatch")).toThrowError(
      /json.encodeBatch takes an array of events, not an object that is not an array: pass \[event\]/,
    );
    expect(() => batchOf(undefined as never, "x")).toThrowError(
      expect.objectContaining({
        code: "InvalidEvent",
        message: expect.stringContaining("not undefined"),
      }),
    );
  });
});

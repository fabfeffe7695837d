import { CloudEvent, decodeData, isPosthornError, utf8Encode } from "@posthorn/core";
import { json, jsonFormat } from "@posthorn/format-json";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;
const nested = (levels: number): unknown => {
  let value: unknown = 1;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
};
const eventWith = (levels: number) => new CloudEvent({ ...base, data: nested(levels) });

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (err) {
    return isPosthornError(err) ? err.code : String(err);
  }
  return undefined;
}

describe("jsonFormat's maxDepth limits the nesting of JSON data, not of the envelope", () => {
  it("reads data nested exactly maxDepth (128) levels, alone and in a batch, as binary mode does", () => {
    const event = eventWith(128);
    const payload = utf8Encode(JSON.stringify(event.data));
    expect(decodeData(payload, "application/json", { maxDepth: 128 })).toEqual(event.data);
    expect(json.decode(json.encode(event)).data).toEqual(event.data);
    const batch = json.decodeBatch(json.encodeBatch([event, eventWith(127)]));
    expect(batch.map((e) => e.data)).toEqual([event.data, nested(127)]);
  });

  it("refuses data one level deeper, alone and in a batch, naming the data's limit", () => {
    const event = eventWith(129);
    expect(codeOf(() => json.decode(json.encode(event)))).toBe("MalformedInput");
    expect(codeOf(() => json.decodeBatch(json.encodeBatch([event])))).toBe("MalformedInput");
    // It said "deeper than 129 levels" (130 for a batch): the envelope's levels counted in.
    expect(() => json.decode(json.encode(event))).toThrow(
      "JSON event: JSON data nested deeper than 128 levels (maxDepth)",
    );
    expect(() => json.decodeBatch(json.encodeBatch([event]))).toThrow(
      "JSON batch: JSON data nested deeper than 128 levels (maxDepth)",
    );
  });

  it.each([0, 1, 4])("with maxDepth %i reads data that deep and refuses one level more", (n) => {
    const format = jsonFormat({ maxDepth: n });
    expect(format.decode(json.encode(eventWith(n))).data).toEqual(nested(n));
    expect(format.decodeBatch(json.encodeBatch([eventWith(n)]))[0]?.data).toEqual(nested(n));
    expect(codeOf(() => format.decode(json.encode(eventWith(n + 1))))).toBe("MalformedInput");
    expect(codeOf(() => format.decodeBatch(json.encodeBatch([eventWith(n + 1)])))).toBe(
      "MalformedInput",
    );
  });
});

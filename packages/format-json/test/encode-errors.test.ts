import { CloudEvent, encodeData } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { dataWithoutJson } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "e-1", source: "/s", type: "t" } as const;
const unserializable = dataWithoutJson();

describe("JSON format, data with null in it", () => {
  it("still writes null data, null members and the text null, and what a toJSON hides", () => {
    const hidden = { reading: Number.NaN, toJSON: () => ({ reading: null }) };
    for (const data of [null, { a: null, b: "null" }, [null], hidden]) {
      const event = CloudEvent.create({ ...base, data });
      expect(json.decode(json.encode(event)).data).toEqual(JSON.parse(JSON.stringify(data)));
      expect(json.decodeBatch(json.encodeBatch([event]))[0]?.data).toEqual(
        JSON.parse(JSON.stringify(data)),
      );
    }
  });
});

describe("JSON format, data that has no JSON text", () => {
  it.each(unserializable)(
    "refuses %s with InvalidEvent on data, as binary mode does",
    (_, data) => {
      const event = CloudEvent.create({ ...base, data });
      const invalid = expect.objectContaining({
        name: "PosthornError",
        code: "InvalidEvent",
        attribute: "data",
      });
      expect(() => json.encode(event)).toThrowError(invalid);
      expect(() => json.encodeBatch([event])).toThrowError(invalid);
      expect(() => encodeData(event.data, event.datacontenttype)).toThrowError(invalid);
    },
  );
});

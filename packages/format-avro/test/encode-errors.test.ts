import { CloudEvent } from "@posthorn/core";
import { avro, avroCompactFormat } from "@posthorn/format-avro";
import { dataWithoutJson } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "e-1", source: "/s", type: "t" } as const;
const unserializable = dataWithoutJson();
const formats = [
  ["avro", avro],
  ["compact Avro", avroCompactFormat()],
] as const;

describe.each(formats)("%s format, data that has no JSON value", (_, format) => {
  it.each(unserializable)("refuses %s with InvalidEvent on data", (_, data) => {
    const event = CloudEvent.create({ ...base, data });
    expect(() => format.encode(event)).toThrowError(
      expect.objectContaining({ name: "PosthornError", code: "InvalidEvent", attribute: "data" }),
    );
  });
});

describe("Avro format, JSON data as JSON.stringify sees it", () => {
  it("writes Number, String and Boolean objects as their values, and leaves out a member whose toJSON gives undefined", () => {
    const cases: unknown[] = [
      new Number(5),
      { s: new String("x"), b: new Boolean(false), n: [new Number(-1.5)] },
      { gone: { toJSON: () => undefined }, kept: 2 },
      [{ value: new String("boxed") }],
    ];
    for (const data of cases) {
      const event = CloudEvent.create({ ...base, data });
      expect(avro.decode(avro.encode(event)).data).toEqual(JSON.parse(JSON.stringify(data)));
    }
  });
});

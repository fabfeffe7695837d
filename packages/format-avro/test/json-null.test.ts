import { readFileSync } from "node:fs";
import { CloudEvent, differences } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import avsc from "avsc";
import { describe, expect, it } from "vitest";

const reference = avsc.Type.forSchema(
  JSON.parse(
    readFileSync(new URL("../../../../shared/spec/cloudevents.avsc", import.meta.url), "utf8"),
  ),
);
const base = { specversion: "1.0", id: "1", source: "/s", type: "t" } as const;

describe("Avro format, JSON null data of an event that names no datacontenttype", () => {
  it.each([
    ["null", null],
    ["a toJSON that gives null", { toJSON: () => null }],
  ])("round-trips %s as JSON null, not as the four bytes of its text", (_, data) => {
    const back = avro.decode(avro.encode(new CloudEvent({ ...base, data })));
    expect(back.hasData()).toBe(true);
    expect(back.data).toBeNull();
    expect(back.datacontenttype).toBe("application/json");
    expect(differences(new CloudEvent({ ...base, data: null }), back)).toEqual([]);
  });

  it("says application/json in the attribute map, so another reader of the schema can tell", () => {
    const record = reference.fromBuffer(
      Buffer.from(avro.encode(new CloudEvent({ ...base, data: null }))),
    ) as { attribute: Record<string, unknown>; data: unknown };
    expect(record.attribute).toEqual({ ...base, datacontenttype: "application/json" });
    expect(Buffer.from(record.data as Buffer).toString()).toBe("null");
  });

  it("leaves other events' attributes as they are", () => {
    for (const init of [
      {},
      { data: { a: 1 } },
      { datacontenttype: "application/json", data: null },
    ]) {
      const event = new CloudEvent({ ...base, ...init });
      const record = reference.fromBuffer(Buffer.from(avro.encode(event))) as {
        attribute: Record<string, unknown>;
      };
      expect(record.attribute).toEqual(event.getAttributes());
    }
  });
});

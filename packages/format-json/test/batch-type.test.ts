import { type BatchEventFormat, CloudEvent, type EventFormat, equivalent } from "@posthorn/core";
import { JSON_BATCH_CONTENT_TYPE, json, jsonFormat } from "@posthorn/format-json";
import { describe, expect, expectTypeOf, it } from "vitest";

// json and jsonFormat() are typed BatchEventFormat, so batch calls need no `!` or `?.`; the
// expectTypeOf lines are checked by `npx tsc -p tsconfig.json --noEmit`, which covers tests.
describe("the JSON format's type", () => {
  it("says the batch members are there, and is still an EventFormat", () => {
    expectTypeOf(json).toEqualTypeOf<BatchEventFormat>();
    expectTypeOf(jsonFormat({ maxDepth: 8 })).toEqualTypeOf<BatchEventFormat>();
    expectTypeOf(json).toExtend<EventFormat>();
    expectTypeOf(json.encodeBatch).toBeFunction();
    expectTypeOf(json.batchContentType).toEqualTypeOf<string>();
    const formats: readonly EventFormat[] = [json, jsonFormat()];
    expect(formats.map((f) => f.name)).toEqual(["json", "json"]);
  });

  it("round-trips a batch through the members it says are there", () => {
    const events = [1, 2].map((n) =>
      CloudEvent.create({ type: "t", source: "/s", id: `e${n}`, data: { n } }),
    );
    const back = json.decodeBatch(json.encodeBatch(events));
    expect(back).toHaveLength(2);
    expect(back.every((e, i) => equivalent(e, events[i] as CloudEvent))).toBe(true);
    expect(json.batchContentType).toBe(JSON_BATCH_CONTENT_TYPE);
  });
});

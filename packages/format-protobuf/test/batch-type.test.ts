import { type BatchEventFormat, CloudEvent, type EventFormat, equivalent } from "@posthorn/core";
import { PROTOBUF_BATCH_CONTENT_TYPE, protobuf, protobufFormat } from "@posthorn/format-protobuf";
import { describe, expect, expectTypeOf, it } from "vitest";

// protobuf and protobufFormat() are typed BatchEventFormat, so batch calls need no `!` or `?.`;
// the expectTypeOf lines are checked by `npx tsc -p tsconfig.json --noEmit`, which covers tests.
describe("the Protobuf format's type", () => {
  it("says the batch members are there, and is still an EventFormat", () => {
    expectTypeOf(protobuf).toEqualTypeOf<BatchEventFormat>();
    expectTypeOf(protobufFormat({ maxDepth: 8 })).toEqualTypeOf<BatchEventFormat>();
    expectTypeOf(protobuf).toExtend<EventFormat>();
    expectTypeOf(protobuf.decodeBatch).toBeFunction();
    expectTypeOf(protobuf.batchContentType).toEqualTypeOf<string>();
    const formats: readonly EventFormat[] = [protobuf, protobufFormat()];
    expect(formats.map((f) => f.name)).toEqual(["protobuf", "protobuf"]);
  });

  it("round-trips a batch through the members it says are there", () => {
    const events = [1, 2].map((n) =>
      CloudEvent.create({ type: "t", source: "/s", id: `e${n}`, data: { n } }),
    );
    const back = protobuf.decodeBatch(protobuf.encodeBatch(events));
    expect(back).toHaveLength(2);
    expect(back.every((e, i) => equivalent(e, events[i] as CloudEvent))).toBe(true);
    expect(protobuf.batchContentType).toBe(PROTOBUF_BATCH_CONTENT_TYPE);
  });
});

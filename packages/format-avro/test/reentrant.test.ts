import { CloudEvent, type EventFormat } from "@posthorn/core";
import { avro, avroCompactFormat } from "@posthorn/format-avro";
import { describe, expect, it } from "vitest";

const formats: [string, EventFormat][] = [
  ["avro", avro],
  ["compact Avro", avroCompactFormat()],
];

describe.each(formats)("%s encode, called again from data's toJSON", (_, format) => {
  it("writes both events whole (the inner encode overwrote the outer one's bytes)", () => {
    const inner = CloudEvent.create({ type: "inner", source: "/i", data: "x" });
    let innerBytes: Uint8Array | undefined;
    const data = {
      nested: {
        toJSON: () => {
          innerBytes = format.encode(inner);
          return { size: innerBytes.length };
        },
      },
    };
    const outer = CloudEvent.create({ type: "outer", source: "/o", data, ext: "after" });
    const back = format.decode(format.encode(outer));
    expect(back.type).toBe("outer");
    expect(back.ext).toBe("after");
    expect(back.data).toEqual({ nested: { size: innerBytes?.length } });
    expect(format.decode(innerBytes as Uint8Array).type).toBe("inner");
    // The shared writer is whole again afterwards.
    expect(format.decode(format.encode(inner)).type).toBe("inner");
  });
});

import { CloudEvent } from "@posthorn/core";
import { protobuf } from "@posthorn/format-protobuf";
import { describe, expect, it } from "vitest";

describe("protobuf encode, called again from data's toJSON", () => {
  const inner = CloudEvent.create({ type: "inner", source: "/i", data: "x" });
  let innerBytes: Uint8Array | undefined;
  const data = {
    nested: {
      toJSON: () => {
        innerBytes = protobuf.encode(inner);
        return { size: innerBytes.length };
      },
    },
  };
  const outer = CloudEvent.create({ type: "outer", source: "/o", data, ext: "after" });

  it("writes both events whole (the inner encode overwrote the outer one's bytes)", () => {
    const back = protobuf.decode(protobuf.encode(outer));
    expect([back.type, back.ext, back.data]).toEqual([
      "outer",
      "after",
      { nested: { size: innerBytes?.length } },
    ]);
    expect(protobuf.decode(innerBytes as Uint8Array).type).toBe("inner");
  });

  it("writes a batch whole too", () => {
    const back = protobuf.decodeBatch(protobuf.encodeBatch([inner, outer, inner]));
    expect(back.map((e) => e.type)).toEqual(["inner", "outer", "inner"]);
    expect(protobuf.decode(protobuf.encode(inner)).type).toBe("inner");
  });
});

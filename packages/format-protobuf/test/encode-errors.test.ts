import { CloudEvent } from "@posthorn/core";
import { protobuf } from "@posthorn/format-protobuf";
import { dataWithoutJson } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const base = { specversion: "1.0", id: "e-1", source: "/s", type: "t" } as const;
const unserializable = dataWithoutJson();
const formats = [["protobuf", protobuf]] as const;

describe.each(formats)("%s format, data that has no JSON value", (_, format) => {
  it.each(unserializable)("refuses %s with InvalidEvent on data", (_, data) => {
    const event = CloudEvent.create({ ...base, data });
    expect(() => format.encode(event)).toThrowError(
      expect.objectContaining({ name: "PosthornError", code: "InvalidEvent", attribute: "data" }),
    );
  });
});

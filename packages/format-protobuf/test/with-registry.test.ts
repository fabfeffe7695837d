import { CloudEvent, extensions, formatWithRegistry } from "@posthorn/core";
import { protobuf, protobufFormat } from "@posthorn/format-protobuf";
import { describeFormatWithRegistry } from "@posthorn/testkit";
import { expect, it } from "vitest";

describeFormatWithRegistry(protobufFormat);

it("protobuf: an adapted format writes a declared Timestamp as ce_timestamp, as one made with the registry", () => {
  const registry = extensions.clone();
  registry.declare({ name: "deadline", type: "Timestamp" });
  const event = new CloudEvent({
    specversion: "1.0",
    id: "1",
    source: "/s",
    type: "t",
    deadline: "2024-05-01T10:00:00.5+02:00",
  });
  const written = Buffer.from(formatWithRegistry(protobuf, registry).encode(event));
  expect(written).toEqual(Buffer.from(protobufFormat({ registry }).encode(event)));
  // The default instance writes the undeclared extension as ce_string.
  expect(written.equals(Buffer.from(protobuf.encode(event)))).toBe(false);
});

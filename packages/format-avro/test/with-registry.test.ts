import { CloudEvent, extensions, formatWithRegistry } from "@posthorn/core";
import { avro, avroCompactFormat, avroFormat } from "@posthorn/format-avro";
import { describeFormatWithRegistry } from "@posthorn/testkit";
import { expect, it } from "vitest";

describeFormatWithRegistry(avroFormat);
describeFormatWithRegistry(avroCompactFormat);

const registry = extensions.clone();
registry.declare({ name: "deadline", type: "Timestamp" });
const event = new CloudEvent({
  specversion: "1.0",
  id: "1",
  source: "/s",
  type: "t",
  deadline: "2024-05-01T10:00:00.5+02:00",
});

it("avro: an adapted format writes the same bytes (the attribute union has no timestamp)", () => {
  expect(Buffer.from(formatWithRegistry(avro, registry).encode(event))).toEqual(
    Buffer.from(avro.encode(event)),
  );
});

it("avro-compact: an adapted format writes a declared Timestamp as one made with the registry", () => {
  const plain = avroCompactFormat();
  const written = Buffer.from(formatWithRegistry(plain, registry).encode(event));
  expect(written).toEqual(Buffer.from(avroCompactFormat({ registry }).encode(event)));
  expect(written.equals(Buffer.from(plain.encode(event)))).toBe(false);
});

import { CloudEvent, extensions, formatWithRegistry } from "@posthorn/core";
import { json, jsonFormat } from "@posthorn/format-json";
import { describeFormatWithRegistry } from "@posthorn/testkit";
import { expect, it } from "vitest";

describeFormatWithRegistry(jsonFormat);

it("json: an adapted format writes the same bytes (JSON has no timestamp type to choose)", () => {
  const registry = extensions.clone();
  registry.declare({ name: "deadline", type: "Timestamp" });
  const event = new CloudEvent({
    specversion: "1.0",
    id: "1",
    source: "/s",
    type: "t",
    deadline: "2024-05-01T10:00:00.5+02:00",
  });
  const adapted = formatWithRegistry(json, registry);
  expect(Buffer.from(adapted.encode(event))).toEqual(Buffer.from(json.encode(event)));
  // Reading is where the registry tells: a deadline that is no timestamp is refused.
  const wrong = json.encode(event.cloneWith({ deadline: "tomorrow" }));
  expect(json.decode(wrong).deadline).toBe("tomorrow");
  expect(() => adapted.decode(wrong)).toThrow(expect.objectContaining({ code: "InvalidEvent" }));
});

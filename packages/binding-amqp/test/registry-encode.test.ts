// A publisher's registry reaches the event format in structured mode, as it reaches the
// application properties in binary mode: protobuf writes a declared Timestamp extension as
// ce_timestamp, an undeclared one as ce_string.
import { encodeAmqpMessage, toAmqpMessage } from "@posthorn/binding-amqp";
import { CloudEvent, extensions } from "@posthorn/core";
import { protobuf, protobufFormat } from "@posthorn/format-protobuf";
import rhea from "rhea";
import { describe, expect, it } from "vitest";

const registry = extensions.clone();
registry.declare({ name: "deadline", type: "Timestamp" });
const event = new CloudEvent({
  specversion: "1.0",
  id: "r-1",
  source: "/r",
  type: "t",
  deadline: "2024-05-01T10:00:00.5+02:00",
});

describe("structured encoding with a registry", () => {
  const declared = Buffer.from(protobufFormat({ registry }).encode(event));
  const undeclared = Buffer.from(protobuf.encode(event));

  it("toAmqpMessage encodes with the format adapted to the registry", () => {
    expect(declared.equals(undeclared)).toBe(false);
    const m = toAmqpMessage(event, { codec: rhea, mode: "structured", format: protobuf, registry });
    const body = (m.body as { content: Buffer }).content;
    expect(Buffer.from(body).equals(declared)).toBe(true);
    const plain = toAmqpMessage(event, { codec: rhea, mode: "structured", format: protobuf });
    expect(Buffer.from((plain.body as { content: Buffer }).content).equals(undeclared)).toBe(true);
  });

  it("encodeAmqpMessage (the publisher's encoder) does the same", () => {
    const bytes = Buffer.from(
      encodeAmqpMessage(event, { mode: "structured", format: protobuf, registry }),
    );
    const body = (rhea.message.decode(bytes).body as { content: Buffer }).content;
    expect(Buffer.from(body).equals(declared)).toBe(true);
  });
});

import {
  type AmqpMessage,
  encodeAmqpMessage,
  fromAmqpMessage,
  readAmqpMessage,
  toAmqpMessage,
} from "@posthorn/binding-amqp";
import { json } from "@posthorn/format-json";
import { describeMappingProperties } from "@posthorn/testkit";
import fc from "fast-check";
import rhea from "rhea";
import { expect, it } from "vitest";

const wire = (message: AmqpMessage): AmqpMessage =>
  rhea.message.decode(rhea.message.encode(message)) as unknown as AmqpMessage;

const attribute = fc.constantFrom(
  "specversion",
  "id",
  "source",
  "type",
  "time",
  "subject",
  "dataschema",
  "datacontenttype",
  "data",
  "__proto__",
  "constructor",
  "prototype",
  "Id",
  "ext",
  "a_b",
  "",
);
const propertyName = fc.oneof(
  fc
    .tuple(
      fc.constantFrom("cloudEvents:", "cloudEvents_", "CLOUDEVENTS:", "cloudevents_"),
      attribute,
    )
    .map(([prefix, name]) => prefix + name),
  fc.constantFrom("__proto__", "constructor", "x-opt", "content-type"),
  fc.string({ maxLength: 16 }),
);
const propertyValue = fc.oneof(
  fc.constantFrom("1.0", "0.3", "", "/s", "t", "2024-01-01T00:00:00Z", "not a time"),
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.date(),
  fc.uint8Array({ maxLength: 16 }),
  fc.constant(null),
  fc.constant({ nested: 1 }),
  fc.constant([1, 2]),
);
const contentType = fc.oneof(
  fc.constantFrom(
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/cloudevents+avro",
    "text/plain",
    "application/octet-stream",
    "not a media type",
  ),
  fc.string({ maxLength: 20 }),
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.string({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }).map((b) => rhea.message.data_section(b)),
  fc.jsonValue({ maxDepth: 2 }).map((v) => ({ typecode: 0x75, content: v })),
  fc.constant(rhea.message.sequence_section([1, 2])),
  fc.integer(),
  fc.constant({ a: 1 }),
  fc.string({ maxLength: 60 }).map((s) => rhea.message.data_section(new TextEncoder().encode(s))),
);

const coverage = describeMappingProperties<AmqpMessage>({
  name: "amqp",
  paths: [
    {
      label: "binary (toAmqpMessage, rhea bytes)",
      roundTrip: (e) => fromAmqpMessage(wire(toAmqpMessage(e, { codec: rhea }))),
    },
    {
      label: "binary, AMQP int, cloudEvents_ (encodeAmqpMessage)",
      roundTrip: (e) =>
        fromAmqpMessage(
          rhea.message.decode(
            encodeAmqpMessage(e, { integerType: "int", prefix: "cloudEvents_" }),
          ) as unknown as AmqpMessage,
        ),
    },
    {
      label: "structured/json (encodeAmqpMessage)",
      roundTrip: (e) =>
        fromAmqpMessage(
          rhea.message.decode(
            encodeAmqpMessage(e, { mode: "structured", format: json }),
          ) as unknown as AmqpMessage,
          { formats: [json] },
        ),
    },
  ],
  hostileMessages: fc.record(
    {
      content_type: contentType,
      application_properties: fc.dictionary(propertyName, propertyValue, { maxKeys: 10 }),
      body,
      delivery_count: fc.integer({ min: 0, max: 10 }),
      first_acquirer: fc.boolean(),
    },
    { requiredKeys: [] },
  ) as fc.Arbitrary<AmqpMessage>,
  decode(message) {
    const result = readAmqpMessage(message, { formats: [json] });
    if (result.error) throw result.error;
    return result.event ?? result.message;
  },
});

it("round-trips through both encoders, both prefixes and structured JSON, and decodes hostile messages", () => {
  expect(coverage.cases).toEqual([
    "binary (toAmqpMessage, rhea bytes): arbitrary valid events round-trip equivalently",
    "binary, AMQP int, cloudEvents_ (encodeAmqpMessage): arbitrary valid events round-trip equivalently",
    "structured/json (encodeAmqpMessage): arbitrary valid events round-trip equivalently",
    "arbitrary messages decode to an event, a message or a typed error",
  ]);
});

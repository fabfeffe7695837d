// Posthorn's own statement of the two CloudEvents Avro schemas. Field names, field order and
// types follow avro-format.md section 2.4 and working-drafts/avro-compact-format.md section 2.2,
// so that the binary encoding is the one those documents require; the record names are the ones
// of the reference schema files, so the Parsing Canonical Form (and its fingerprint) is the same.

/** The JSON-value record of the Avro event format: a map of member values. */
const jsonValueRecord = {
  type: "record",
  name: "AvroCloudEventData",
  doc: "A JSON value: the members of an object, or one member named value holding any JSON value",
  fields: [
    {
      name: "value",
      type: {
        type: "map",
        values: [
          "null",
          "boolean",
          { type: "map", values: "AvroCloudEventData" },
          { type: "array", items: "AvroCloudEventData" },
          "double",
          "string",
        ],
      },
    },
  ],
} as const;

/**
 * The Avro schema of the CloudEvents Avro event format (`application/cloudevents+avro`,
 * avro-format.md section 2.4): every attribute in the `attribute` map, and `data` as a union of
 * bytes, null, boolean, an object (map), an array, a number (double) and a string. Hand it to any
 * Avro library to read or write what {@link avroFormat} writes and reads.
 */
export const CLOUDEVENTS_AVRO_SCHEMA = Object.freeze({
  namespace: "io.cloudevents",
  type: "record",
  name: "AvroCloudEvent",
  version: "1.0",
  doc: "CloudEvents Avro event format",
  fields: [
    {
      name: "attribute",
      type: { type: "map", values: ["null", "boolean", "int", "string", "bytes"] },
    },
    {
      name: "data",
      type: [
        "bytes",
        "null",
        "boolean",
        { type: "map", values: ["null", "boolean", jsonValueRecord, "double", "string"] },
        { type: "array", items: "AvroCloudEventData" },
        "double",
        "string",
      ],
    },
  ],
});

const timestampMicros = { type: "long", logicalType: "timestamp-micros" } as const;

/**
 * The Avro schema of the compact CloudEvents Avro format (`application/cloudevents+avro-compact`,
 * a working draft of the CloudEvents specification): the context attributes as their own typed
 * fields, `time` and Timestamp extensions as microseconds since the epoch, `data` as bytes.
 */
export const CLOUDEVENTS_AVRO_COMPACT_SCHEMA = Object.freeze({
  namespace: "io.cloudevents.v1.avro.compact",
  type: "record",
  name: "CloudEvent",
  version: "1.0",
  doc: "CloudEvents compact Avro format",
  fields: [
    { name: "id", type: "string" },
    { name: "source", type: "string" },
    { name: "type", type: "string" },
    { name: "datacontenttype", type: ["null", "string"], default: null },
    { name: "dataschema", type: ["null", "string"], default: null },
    { name: "subject", type: ["null", "string"], default: null },
    { name: "time", type: ["null", timestampMicros], default: null },
    {
      name: "extensions",
      type: { type: "map", values: ["boolean", "int", timestampMicros, "string", "bytes"] },
      default: {},
    },
    { name: "data", type: ["bytes", "null"], default: "null" },
  ],
});

export {
  AVRO_COMPACT_CONTENT_TYPE,
  type AvroCompactFormatOptions,
  avroCompactFormat,
} from "./avro-compact-format.js";
export {
  AVRO_DATA_CONTENT_TYPE,
  type AvroDataCodecOptions,
  type AvroSchemaDefinition,
  avroDataCodec,
} from "./avro-data-codec.js";
export { AVRO_CONTENT_TYPE, type AvroFormatOptions, avro, avroFormat } from "./avro-format.js";
export { CLOUDEVENTS_AVRO_COMPACT_SCHEMA, CLOUDEVENTS_AVRO_SCHEMA } from "./schemas.js";

export {
  type ProtobufDataCodecOptions,
  type ProtobufMessageType,
  protobufDataCodec,
} from "./protobuf-data-codec.js";
export {
  PROTOBUF_BATCH_CONTENT_TYPE,
  PROTOBUF_CONTENT_TYPE,
  PROTOBUF_DATA_CONTENT_TYPE,
  type ProtobufFormatOptions,
  protobuf,
  protobufFormat,
} from "./protobuf-format.js";

export {
  JSON_BATCH_CONTENT_TYPE,
  JSON_CONTENT_TYPE,
  type JsonFormatOptions,
  json,
  jsonFormat,
} from "./json-format.js";

import type { EventFormat } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";

/** Every event format available to these tests, one per subprotocol. */
export const FORMATS: readonly EventFormat[] = [json, avro, protobuf];

import type { EventFormat } from "@posthorn/core";
import { avro } from "@posthorn/format-avro";
import { json } from "@posthorn/format-json";
import { protobuf } from "@posthorn/format-protobuf";

/** Every event format, for the structured-mode paths: a format that failed to load fails the run. */
export const FORMATS: readonly EventFormat[] = [json, avro, protobuf];

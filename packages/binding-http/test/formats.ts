import type { EventFormat } from "@posthorn/core";
import { json } from "@posthorn/format-json";

/**
 * Every event format available to these tests. Only JSON: the Avro and Protobuf format packages
 * did not exist in this checkout when these tests were written; add them here when they land.
 */
export const FORMATS: readonly EventFormat[] = [json];

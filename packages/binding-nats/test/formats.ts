import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { EventFormat } from "@posthorn/core";
import { json } from "@posthorn/format-json";

// The Avro and Protobuf formats are separate packages written alongside this one: the tests use
// them when they exist in the checkout, found by the EventFormat they export.
const OPTIONAL = ["format-avro", "format-protobuf"] as const;

function isFormat(value: unknown): value is EventFormat {
  const f = value as Partial<EventFormat> | undefined;
  return (
    typeof f === "object" &&
    f !== null &&
    typeof f.contentType === "string" &&
    f.contentType.startsWith("application/cloudevents+") &&
    typeof f.encode === "function" &&
    typeof f.decode === "function"
  );
}

/** Every event format available in this checkout: JSON always, Avro and Protobuf when present. */
export async function availableFormats(): Promise<EventFormat[]> {
  const formats: EventFormat[] = [json];
  for (const dir of OPTIONAL) {
    const entry = fileURLToPath(new URL(`../../${dir}/src/index.ts`, import.meta.url));
    if (!existsSync(entry)) continue;
    const specifier = `@posthorn/${dir}`;
    const mod = (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
    const found = Object.values(mod).find(isFormat);
    if (found) formats.push(found);
  }
  return formats;
}

import { existsSync } from "node:fs";
import type { EventFormat } from "@posthorn/core";
import { json } from "@posthorn/format-json";

function isFormat(value: unknown): value is EventFormat {
  if (typeof value !== "object" || value === null) return false;
  const f = value as Partial<EventFormat>;
  return (
    typeof f.name === "string" &&
    typeof f.contentType === "string" &&
    f.contentType.startsWith("application/cloudevents+") &&
    typeof f.encode === "function" &&
    typeof f.decode === "function"
  );
}

/**
 * Every event format of the repo that exists in this checkout: JSON always, Avro and Protobuf
 * when their packages are there (they are written alongside this binding).
 */
export async function allFormats(): Promise<EventFormat[]> {
  const formats: EventFormat[] = [json];
  for (const pkg of ["format-avro", "format-protobuf"]) {
    const entry = new URL(`../../${pkg}/src/index.ts`, import.meta.url);
    if (!existsSync(entry)) continue;
    const mod = (await import(entry.href)) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      if (isFormat(value) && !formats.some((f) => f.contentType === value.contentType)) {
        formats.push(value);
      }
    }
  }
  return formats;
}

import type { EventFormat } from "@posthorn/core";
import { json } from "@posthorn/format-json";

// The Avro and Protobuf format packages are written alongside this one; every format package
// present in the workspace joins the structured-mode conformance paths.
const OPTIONAL_FORMAT_PACKAGES = ["@posthorn/format-avro", "@posthorn/format-protobuf"];

function isEventFormat(value: unknown): value is EventFormat {
  const f = value as Partial<EventFormat> | null;
  return (
    typeof f === "object" &&
    f !== null &&
    typeof f.encode === "function" &&
    typeof f.decode === "function" &&
    typeof f.contentType === "string" &&
    f.contentType.startsWith("application/cloudevents+")
  );
}

/** JSON, plus every other format package that exists in the workspace. */
export async function availableFormats(): Promise<EventFormat[]> {
  const formats: EventFormat[] = [json];
  for (const name of OPTIONAL_FORMAT_PACKAGES) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(/* @vite-ignore */ name)) as Record<string, unknown>;
    } catch {
      continue;
    }
    const format = Object.values(mod).find(isEventFormat);
    if (format && !formats.some((f) => f.contentType === format.contentType)) formats.push(format);
  }
  return formats;
}

import { type EventFormat, PosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import type { FormatName } from "./endpoint-url.js";

type FormatLoader = () => Promise<EventFormat>;

// Formats other than JSON are loaded on first use, so `posthorn send` to a JSON endpoint never
// loads avsc or protobufjs.
const LOADERS: Record<FormatName, FormatLoader | string> = {
  json: async () => json,
  avro: async () => (await import("@posthorn/format-avro")).avro,
  protobuf: async () => (await import("@posthorn/format-protobuf")).protobuf,
};

/** Formats that define a batch encoding (the Avro format defines none). */
export const BATCH_FORMAT_NAMES: readonly FormatName[] = ["json", "protobuf"];

const loaded = new Map<FormatName, EventFormat>();

/**
 * The event format a `?format=` name stands for.
 *
 * @param name - `json`, `avro` or `protobuf`
 * @throws {@link PosthornError} `NotSupported` when the format package is not available
 */
export async function loadFormat(name: FormatName): Promise<EventFormat> {
  const cached = loaded.get(name);
  if (cached) return cached;
  const loader = LOADERS[name];
  if (typeof loader === "string") {
    throw new PosthornError("NotSupported", `format "${name}" is not available: ${loader}`);
  }
  let format: EventFormat;
  try {
    format = await loader();
  } catch (err) {
    throw new PosthornError("NotSupported", `format "${name}" could not be loaded`, { cause: err });
  }
  loaded.set(name, format);
  return format;
}

/** Which format names this build can load. */
export function availableFormatNames(): FormatName[] {
  return (Object.keys(LOADERS) as FormatName[]).filter((n) => typeof LOADERS[n] !== "string");
}

/** Every format this build can load, for receivers that detect the format from the content type. */
export async function loadAllFormats(): Promise<EventFormat[]> {
  return Promise.all(availableFormatNames().map((n) => loadFormat(n)));
}

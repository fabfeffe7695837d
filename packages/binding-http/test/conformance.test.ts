import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import type { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type BindingPath, describeBindingConformance } from "@posthorn/testkit";
import { FORMATS } from "./formats.js";

// The mapping layer on its own: every vector through toHttpMessage and back through
// fromHttpMessage, in every mode and every available format, with no I/O.
const paths: BindingPath[] = [
  { mode: "binary" },
  ...FORMATS.map((format) => ({ mode: "structured" as const, format })),
  ...FORMATS.filter((f) => f.batchContentType !== undefined).map((format) => ({
    mode: "batch" as const,
    format,
  })),
];
const options = { formats: FORMATS, maxBodyBytes: 8 * 1024 * 1024 };

describeBindingConformance({
  name: "http (mapping)",
  paths,
  roundTrip(event: CloudEvent, path: BindingPath) {
    const message = toHttpMessage(event, { mode: path.mode, format: path.format ?? json });
    return fromHttpMessage(message, options) as CloudEvent;
  },
  roundTripBatch(events: readonly CloudEvent[], path: BindingPath) {
    const message = toHttpMessage(events, { mode: "batch", format: path.format ?? json });
    return fromHttpMessage(message, options) as CloudEvent[];
  },
});

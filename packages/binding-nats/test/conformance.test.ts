import { fromNatsMessage, toNatsMessage } from "@posthorn/binding-nats";
import type { CloudEvent } from "@posthorn/core";
import { describeBindingConformance } from "@posthorn/testkit";
import { FORMATS } from "./formats.js";

const formats = FORMATS;

// Binary mode: attributes as ce- headers, which carry strings only and fold case.
describeBindingConformance({
  name: "nats (mapping, binary)",
  paths: [{ mode: "binary" }],
  typed: false,
  caseSensitive: false,
  roundTrip(event: CloudEvent) {
    const message = toNatsMessage(event, { mode: "binary" });
    return fromNatsMessage(message, { formats });
  },
});

// Structured mode: the formatted event as the payload, in every format available.
describeBindingConformance({
  name: "nats (mapping, structured)",
  paths: formats.map((format) => ({ mode: "structured" as const, format })),
  typed: true,
  caseSensitive: true,
  roundTrip(event, path) {
    const message = toNatsMessage(event, {
      mode: "structured",
      ...(path.format ? { format: path.format } : {}),
    });
    return fromNatsMessage(message, { formats });
  },
});

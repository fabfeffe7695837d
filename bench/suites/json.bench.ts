import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import { HTTP, CloudEvent as SdkCloudEvent } from "cloudevents";
import { type BenchSuite, compare, type Row } from "../lib.ts";

// JSON format against the `cloudevents` package doing the same work on the same typical event:
// encode = its CloudEvent constructor plus JSON.stringify; decode = HTTP.toEvent on a structured
// message (the only JSON-format decoder it has).
export const suite: BenchSuite = {
  name: "JSON event format vs the cloudevents package",
  async run(ctx) {
    const event = vector("typical").event;
    const plain = event.toJSON();
    const bytes = json.encode(event);
    const text = new TextDecoder().decode(bytes);
    const headers = { "content-type": "application/cloudevents+json; charset=utf-8" };
    const rows: Row[] = [];
    rows.push(
      await compare({
        group: "codec: JSON format",
        name: "encode typical event",
        ours: { fn: () => json.encode(event) },
        baseline: {
          label: "cloudevents new CloudEvent + JSON.stringify",
          fn: () => JSON.stringify(new SdkCloudEvent(plain)),
        },
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: JSON format",
        name: "decode typical event",
        ours: { fn: () => json.decode(bytes) },
        baseline: {
          label: "cloudevents HTTP.toEvent (structured)",
          fn: () => HTTP.toEvent({ headers, body: text }),
        },
        goal: 5,
        ctx,
      }),
    );
    rows.push(
      await compare({
        group: "codec: JSON format",
        name: "decode typical event, baseline without HTTP",
        ours: { fn: () => json.decode(bytes) },
        baseline: {
          label: "JSON.parse + cloudevents new CloudEvent (validating)",
          fn: () => new SdkCloudEvent(JSON.parse(text)),
        },
        ctx,
      }),
    );
    return rows;
  },
};

import {
  createFetchHandler,
  createNodeHandler,
  httpPublisher,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import type { CloudEvent, Delivery } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type BindingPath, describeBindingConformance, pathsOf } from "@posthorn/testkit";
import { expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import { startServer, type TestServer } from "./servers.js";

const paths: BindingPath[] = [
  { mode: "binary" },
  ...FORMATS.map((format) => ({ mode: "structured" as const, format })),
  ...FORMATS.filter((f) => f.batchContentType !== undefined).map((format) => ({
    mode: "batch" as const,
    format,
  })),
];
const MAX = 8 * 1024 * 1024;

// Every vector over a real node:http server on a free port, sent by httpPublisher over fetch
// (keep-alive), received by createNodeHandler in handler mode.
let server: TestServer | undefined;
let received: CloudEvent[] = [];
const viaServer = describeBindingConformance({
  name: "http (node:http server, fetch publisher)",
  paths,
  timeoutMs: 10_000,
  async setup() {
    const receiver = httpReceiver({
      formats: FORMATS,
      maxBodyBytes: MAX,
      onDelivery: (d: Delivery) => {
        if (d.event) received.push(d.event);
      },
    });
    server = await startServer(createNodeHandler(receiver));
  },
  async teardown() {
    await server?.close();
  },
  async roundTrip(event: CloudEvent, path: BindingPath) {
    received = [];
    const publisher = httpPublisher({
      url: server?.url ?? "",
      mode: path.mode,
      format: path.format ?? json,
      retry: false,
    });
    await publisher.publish(event);
    await publisher.close();
    return received[0] as CloudEvent;
  },
  async roundTripBatch(events: readonly CloudEvent[], path: BindingPath) {
    received = [];
    const publisher = httpPublisher({
      url: server?.url ?? "",
      mode: "batch",
      format: path.format ?? json,
    });
    await publisher.publish(events);
    return received;
  },
});

// The fetch-standard handler in subscriber mode: real Request objects in, Response out, and the
// request held open until the delivery read from the async iterator is settled.
const subscriber = httpReceiver({ formats: FORMATS, maxBodyBytes: MAX });
const handle = createFetchHandler(subscriber);
const iterator = subscriber[Symbol.asyncIterator]();
// A pull left waiting when a request was answered without a delivery serves the next request.
let waiting: Promise<IteratorResult<Delivery>> | undefined;
const nextDelivery = (): Promise<IteratorResult<Delivery>> => {
  const next = waiting ?? iterator.next();
  waiting = next;
  return next;
};

async function viaFetchHandler(
  input: CloudEvent | readonly CloudEvent[],
  path: BindingPath,
): Promise<CloudEvent[]> {
  const { headers, body } = toHttpMessage(input, { mode: path.mode, format: path.format ?? json });
  const responding = handle(
    new Request("http://localhost/events", { method: "POST", headers, body: body as BodyInit }),
  );
  const count = Array.isArray(input) ? input.length : 1;
  const events: CloudEvent[] = [];
  // A request that fails to decode is answered at once, without a delivery.
  const first = await Promise.race([nextDelivery(), responding]);
  if (first instanceof Response) {
    const { fromHttpMessage } = await import("@posthorn/binding-http");
    fromHttpMessage({ headers, body }, { formats: FORMATS, maxBodyBytes: MAX });
    throw new Error(`answered ${first.status} without a delivery`);
  }
  waiting = undefined;
  const deliveries: Delivery[] = [first.value as Delivery];
  while (deliveries.length < count) deliveries.push((await iterator.next()).value as Delivery);
  for (const d of deliveries) {
    events.push(d.event as CloudEvent);
    await d.accept();
  }
  const response = await responding;
  if (response.status !== 204) throw new Error(`answered ${response.status}`);
  return events;
}

const viaFetch = describeBindingConformance({
  name: "http (fetch handler, subscriber mode)",
  paths,
  teardown: () => subscriber.close(),
  roundTrip: async (event, path) => (await viaFetchHandler(event, path))[0] as CloudEvent,
  roundTripBatch: (events, path) => viaFetchHandler(events, path),
});

it("covers binary and structured mode in every format, batch mode in JSON and Protobuf (Avro has none) on both receivers, skipping no vector", () => {
  for (const coverage of [viaServer, viaFetch]) {
    expect(pathsOf(coverage)).toEqual([
      "binary",
      "structured/json",
      "structured/avro",
      "structured/protobuf",
      "batch/json",
      "batch/protobuf",
    ]);
    expect(coverage.skipped).toEqual([]);
  }
});

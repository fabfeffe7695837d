import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fromHttpMessage, httpPublisher, toHttpMessage } from "@posthorn/binding-http";
import { toCloudEventV1, utf8Decode } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { vector } from "@posthorn/testkit";
import { HTTP, CloudEvent as SdkCloudEvent } from "cloudevents";
import { type BenchSuite, compare, compareThroughput, type Row } from "../lib.ts";

// HTTP binding against the `cloudevents` package on the same typical event in the same run:
// encode = HTTP.binary / HTTP.structured; decode = HTTP.toEvent on the same message (its body as
// the string it takes, ours as the bytes a server hands over). Then events per second over
// keep-alive HTTP through httpPublisher against plain fetch sending the same pre-encoded bytes,
// both to the same plain node:http server answering 204, with the same number in flight.
export const suite: BenchSuite = {
  name: "HTTP binding vs the cloudevents package, and httpPublisher vs plain fetch",
  async run(ctx) {
    const event = vector("typical").event;
    const sdkEvent = new SdkCloudEvent(toCloudEventV1(event) as never);
    const binary = toHttpMessage(event);
    const structured = toHttpMessage(event, { mode: "structured", format: json });
    const binaryText = utf8Decode(binary.body);
    const structuredText = utf8Decode(structured.body);
    const formats = [json];
    const rows: Row[] = [];
    const group = "codec: HTTP binding";
    rows.push(
      await compare({
        group,
        name: "encode binary",
        ours: { fn: () => toHttpMessage(event) },
        baseline: { label: "cloudevents HTTP.binary", fn: () => HTTP.binary(sdkEvent) },
        ctx,
      }),
      await compare({
        group,
        name: "encode structured (JSON)",
        ours: { fn: () => toHttpMessage(event, { mode: "structured", format: json }) },
        baseline: { label: "cloudevents HTTP.structured", fn: () => HTTP.structured(sdkEvent) },
        ctx,
      }),
      await compare({
        group,
        name: "decode binary",
        ours: { fn: () => fromHttpMessage(binary, { formats }) },
        baseline: {
          label: "cloudevents HTTP.toEvent",
          fn: () => HTTP.toEvent({ headers: binary.headers, body: binaryText }),
        },
        goal: 5,
        ctx,
      }),
      await compare({
        group,
        name: "decode structured (JSON)",
        ours: { fn: () => fromHttpMessage(structured, { formats }) },
        baseline: {
          label: "cloudevents HTTP.toEvent",
          fn: () => HTTP.toEvent({ headers: structured.headers, body: structuredText }),
        },
        goal: 5,
        ctx,
      }),
    );

    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(204);
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const inFlight = 16;
    const pump = async (count: number, send: () => Promise<unknown>): Promise<void> => {
      let left = count;
      const worker = async (): Promise<void> => {
        while (left-- > 0) await send();
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
    };
    try {
      for (const mode of ["binary", "structured"] as const) {
        const publisher = httpPublisher({ url, mode, format: json });
        const message = mode === "binary" ? binary : structured;
        // The raw side: plain fetch of the pre-encoded request. httpPublisher gives every attempt
        // a timeout (an AbortSignal), which costs undici work of its own, so a second row has
        // the same plain fetch with a per-request timeout.
        const rawFetch = (withTimeout: boolean) => async () => {
          const r = await fetch(url, {
            method: "POST",
            headers: message.headers,
            body: message.body as BodyInit,
            ...(withTimeout ? { signal: AbortSignal.timeout(30_000) } : {}),
          });
          await r.text();
        };
        for (const withTimeout of [false, true]) {
          rows.push(
            await compareThroughput({
              group: "throughput: HTTP keep-alive",
              name: `publish ${mode}, ${inFlight} in flight${withTimeout ? ", baseline with a timeout signal too" : ""}`,
              count: ctx.quick ? 2000 : 10_000,
              rounds: ctx.quick ? 3 : 5,
              warmup: 500,
              ours: { label: "httpPublisher", run: (n) => pump(n, () => publisher.publish(event)) },
              baseline: {
                label: withTimeout
                  ? "plain fetch + AbortSignal.timeout, pre-encoded"
                  : "plain fetch, pre-encoded",
                run: (n) => pump(n, rawFetch(withTimeout)),
              },
              ...(withTimeout ? {} : { goal: 0.9 }),
            }),
          );
        }
      }
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    return rows;
  },
};

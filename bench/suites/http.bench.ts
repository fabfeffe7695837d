import { Agent, createServer, request } from "node:http";
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
// keep-alive HTTP through httpPublisher (node:http, its default in Node) against the same
// pre-encoded bytes sent with plain fetch (what an application without Posthorn would write) and
// with plain node:http on a keep-alive agent (the client the publisher uses), all to the same
// plain node:http server answering 204, with the same number in flight. A last row has the
// publisher given `fetch` against plain fetch with a timeout signal (the same work).
export const suite: BenchSuite = {
  name: "HTTP binding vs the cloudevents package, and httpPublisher vs plain fetch and node:http",
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
        const plainFetch = (signal?: () => AbortSignal) => async () => {
          const r = await fetch(url, {
            method: "POST",
            headers: message.headers,
            body: message.body as BodyInit,
            ...(signal ? { signal: signal() } : {}),
          });
          await r.text();
        };
        const agent = new Agent({ keepAlive: true });
        const plainNodeHttp = () =>
          new Promise<void>((resolve, reject) => {
            const req = request(url, { method: "POST", headers: message.headers, agent }, (res) => {
              res.resume();
              res.on("end", resolve);
              res.on("error", reject);
            });
            req.on("error", reject);
            req.end(message.body);
          });
        const variants: Array<{
          label: string;
          name: string;
          run: () => Promise<unknown>;
          ours?: () => Promise<unknown>;
          goal?: number;
        }> = [
          { label: "plain fetch, pre-encoded", name: "", run: plainFetch(), goal: 0.9 },
          {
            label: "plain node:http (keep-alive agent), pre-encoded",
            name: ", vs node:http",
            run: plainNodeHttp,
            goal: 0.9,
          },
        ];
        if (mode === "binary") {
          // The publisher sending through fetch (its `fetch` option) gives every attempt an
          // AbortSignal for its timeout: compared with plain fetch given one too.
          const viaFetch = httpPublisher({ url, mode, format: json, fetch: (i, o) => fetch(i, o) });
          variants.push({
            label: "plain fetch + AbortSignal.timeout, pre-encoded",
            name: ", publisher given fetch, baseline with a timeout signal too",
            run: plainFetch(() => AbortSignal.timeout(30_000)),
            ours: () => viaFetch.publish(event),
          });
        }
        for (const row of variants) {
          const ours = row.ours ?? (() => publisher.publish(event));
          rows.push(
            await compareThroughput({
              group: "throughput: HTTP keep-alive",
              name: `publish ${mode}, ${inFlight} in flight${row.name}`,
              count: ctx.quick ? 2000 : 10_000,
              rounds: ctx.quick ? 3 : 5,
              warmup: 500,
              ours: { label: "httpPublisher", run: (n) => pump(n, ours) },
              baseline: { label: row.label, run: (n) => pump(n, row.run) },
              ...(row.goal === undefined ? {} : { goal: row.goal }),
            }),
          );
        }
        agent.destroy();
      }
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    return rows;
  },
};

import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect, type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { jetStreamPublisher, natsPublisher, toNatsMessage } from "@posthorn/binding-nats";
import type { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type LaunchedBroker, startNatsServer, vector } from "@posthorn/testkit";
import { type BenchSuite, compareThroughput, type Row } from "../lib.ts";

// Events per second published through Posthorn (which encodes every event: attributes to ce-
// headers, data to bytes, or the whole event to JSON) next to nats.js publishing the very same
// bytes and headers, encoded before the clock starts. Core NATS: publish the lot, then flush (one
// round trip, so the server has them all). JetStream: every publish waits for its PubAck, with up
// to 256 in flight on both sides, and each event carries its own message id (Nats-Msg-Id).
//
// The server: NATS_URL when set, else a nats-server this suite starts (testkit).

interface Encoded {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
}

function preEncode(event: CloudEvent, mode: "binary" | "structured"): Encoded {
  const m = toNatsMessage(event, mode === "structured" ? { mode, format: json } : { mode });
  const h = natsHeaders();
  for (const [name, values] of m.headers) for (const v of values) h.append(name, v);
  return { data: m.data, headers: h };
}

// What an application using nats.js alone would write per event: attributes as ce- headers and
// the data as JSON (binary mode), or the whole event as JSON (structured mode). No checks, no
// percent-encoding: the cheapest correct-looking encoding by hand.
function handEncoded(event: CloudEvent, mode: "binary" | "structured"): Encoded {
  const h = natsHeaders();
  if (mode === "structured") {
    h.set("content-type", "application/cloudevents+json; charset=utf-8");
    return { data: Buffer.from(JSON.stringify(event)), headers: h };
  }
  const record = event as unknown as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (name !== "data") h.set(`ce-${name}`, String(record[name]));
  }
  return { data: Buffer.from(JSON.stringify(event.data)), headers: h };
}

async function pipelined(count: number, window: number, send: (i: number) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < count) await send(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}

export const suite: BenchSuite = {
  name: "NATS binding: publish throughput vs nats.js",
  async run(ctx) {
    const fromEnv = process.env.NATS_URL;
    const launched: LaunchedBroker | undefined = fromEnv ? undefined : await startNatsServer();
    const url = fromEnv ?? (launched as LaunchedBroker).url;
    const nc = await connect({ servers: url });
    const rows: Row[] = [];
    try {
      const event = vector("typical").event;
      const rounds = ctx.quick ? 3 : 5;
      const coreCount = ctx.quick ? 20_000 : 200_000;
      for (const mode of ["binary", "structured"] as const) {
        const subject = `bench.core.${mode}`;
        const pre = preEncode(event, mode);
        const publisher = natsPublisher(nc, {
          subject,
          mode,
          ...(mode === "structured" ? { format: json } : {}),
        });
        // publish() hands the message to the client before it returns, as nc.publish() does;
        // awaiting each call would force a socket write per message (see the docs).
        const ours = async (n: number) => {
          const sent: Promise<void>[] = new Array(n);
          for (let i = 0; i < n; i++) sent[i] = publisher.publish(event);
          await Promise.all(sent);
          await nc.flush();
        };
        // Against the same bytes pre-encoded (the goal row), and against the event encoded by
        // hand for every publish, as code using nats.js alone would: what the binding costs on
        // top of the encoding any sender has to do.
        const baselines = [
          {
            name: `core NATS publish, ${mode}, typical event`,
            label: "nats.js publish (pre-encoded)",
            encoded: () => pre,
          },
          {
            name: `core NATS publish, ${mode}, baseline encoding each event by hand too`,
            label: "nats.js publish + hand-written encoding",
            encoded: () => handEncoded(event, mode),
          },
        ];
        for (const [i, b] of baselines.entries()) {
          rows.push(
            await compareThroughput({
              group: "throughput: NATS",
              name: b.name,
              count: coreCount,
              rounds,
              warmup: 20_000,
              ...(i === 0 ? { goal: 0.9 } : {}),
              ours: { run: ours },
              baseline: {
                label: b.label,
                run: async (n) => {
                  for (let k = 0; k < n; k++) {
                    const { data, headers } = b.encoded();
                    nc.publish(subject, data, { headers });
                  }
                  await nc.flush();
                },
              },
            }),
          );
        }
      }

      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const stream = `BENCH_${process.pid}`;
      await jsm.streams.add({
        name: stream,
        subjects: [`bench.js.${process.pid}.>`],
        storage: StorageType.Memory,
        retention: RetentionPolicy.Limits,
        max_msgs: 100_000,
      });
      try {
        const jsCount = ctx.quick ? 3_000 : 20_000;
        // Distinct ids for every publish of every round, so no publish is a duplicate.
        const warmup = 1000;
        const total = jsCount * rounds + warmup;
        const ours = Array.from({ length: total }, (_, i) => event.cloneWith({ id: `ours-${i}` }));
        const base = Array.from({ length: total }, (_, i) => {
          const e = event.cloneWith({ id: `base-${i}` });
          return { id: e.id, ...preEncode(e, "binary") };
        });
        let oursAt = 0;
        let baseAt = 0;
        const subject = `bench.js.${process.pid}.events`;
        const publisher = jetStreamPublisher(js, { subject });
        rows.push(
          await compareThroughput({
            group: "throughput: NATS",
            name: "JetStream publish with acks, binary, 256 in flight",
            count: jsCount,
            rounds,
            warmup,
            goal: 0.9,
            ours: {
              run: (n) => pipelined(n, 256, () => publisher.publish(ours[oursAt++] as CloudEvent)),
            },
            baseline: {
              label: "nats.js js.publish (pre-encoded)",
              run: (n) =>
                pipelined(n, 256, () => {
                  const b = base[baseAt++] as (typeof base)[number];
                  return js.publish(subject, b.data, { headers: b.headers, msgID: b.id });
                }),
            },
          }),
        );
      } finally {
        await jsm.streams.delete(stream);
      }
    } finally {
      await nc.close();
      await launched?.stop();
    }
    return rows;
  },
};

import { type Delivery, PosthornError, type Subscriber, utf8Decode } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import {
  type CommandIo,
  countOption,
  EXIT_FAILED,
  EXIT_OK,
  note,
  numberOption,
} from "../cli-io.js";
import { listeningDisplay, openEndpoint } from "../endpoint.js";
import { describeError, REDACTED } from "../redact.js";
import { parseOrHelp, positionalArgs } from "./shared.js";

/** `posthorn receive --help`. */
export const RECEIVE_HELP = `Usage: posthorn receive <url> [options]

Receives events from an endpoint URL and prints each as one line of the JSON event format
on stdout, then accepts it (so the output pipes into jq, a file, or posthorn send).
For http:// and ws:// it listens on the URL's host, port and path; port 0 listens on a
free port the system picks, which the "ready" line names (http://127.0.0.1:0/events).

Options:
  --count <n>        stop after n events (default: run until --timeout or Ctrl-C);
                     messages that are not CloudEvents do not count
  --timeout <ms>     stop after this long; with --count, fewer than n events is a failure
  --json             print one JSON object per delivery instead:
                     {"event":{...},"deliveryCount":1,"contentType":"...","properties":{...}}
                     (undecodable messages too, with "error")
  -h, --help         this text

A message that is not a valid CloudEvent is reported on stderr and rejected (dead-lettered)
where the transport can, otherwise accepted so it is not redelivered forever.
"ready" is written to stderr once the subscription is in place.

Exit status: 0 on success, 1 when --count was not reached before --timeout or on an error,
2 on a usage error.

Examples:
  posthorn receive 'kafka://127.0.0.1:9092/orders?group=cli&from=earliest' --count 10
  posthorn receive http://127.0.0.1:8080/events --json | jq .event.type
`;

const OPTIONS = {
  count: { type: "string", short: "n" },
  timeout: { type: "string" },
  json: { type: "boolean" },
} as const;

function jsonSafe(value: unknown): unknown {
  if (value instanceof Uint8Array) return { base64: Buffer.from(value).toString("base64") };
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(jsonSafe);
  return value;
}

const CREDENTIAL_HEADERS = new Set(["authorization", "proxy-authorization"]);

/** One delivery as the `--json` line (credential headers such as `authorization` as `***`). */
export function deliveryRecord(delivery: Delivery): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(delivery.message.properties)) {
    // An HTTP receiver's properties are the request headers: its credentials are not output.
    properties[k] = CREDENTIAL_HEADERS.has(k.toLowerCase()) ? REDACTED : jsonSafe(v);
  }
  const record: Record<string, unknown> = {};
  if (delivery.event) record.event = JSON.parse(utf8Decode(json.encode(delivery.event)));
  if (delivery.error) record.error = { code: delivery.error.code, message: delivery.error.message };
  record.deliveryCount = delivery.deliveryCount;
  if (delivery.message.contentType !== undefined) record.contentType = delivery.message.contentType;
  record.properties = properties;
  if (!delivery.event) record.bodyBase64 = Buffer.from(delivery.message.body).toString("base64");
  return record;
}

/**
 * Pulls deliveries until `count` (when given), the deadline (when given) or the signal.
 * Calls `handle` on each in order; a delivery for which it returns `false` does not count.
 *
 * @returns how many were handled and counted
 */
export async function consume(
  subscriber: Subscriber,
  handle: (delivery: Delivery) => Promise<unknown>,
  limits: { count?: number | undefined; timeoutMs?: number | undefined; signal?: AbortSignal },
): Promise<number> {
  const iterator = subscriber[Symbol.asyncIterator]();
  let handled = 0;
  let timer: NodeJS.Timeout | undefined;
  const stop = new Promise<"stop">((resolve) => {
    if (limits.timeoutMs !== undefined) timer = setTimeout(() => resolve("stop"), limits.timeoutMs);
    limits.signal?.addEventListener("abort", () => resolve("stop"), { once: true });
  });
  try {
    while (limits.count === undefined || handled < limits.count) {
      // A delivery already buffered would win the race below against a stop already made.
      if (limits.signal?.aborted) break;
      const next = await Promise.race([iterator.next(), stop]);
      if (next === "stop" || next.done) break;
      if ((await handle(next.value)) !== false) handled++;
    }
  } finally {
    if (timer) clearTimeout(timer);
  }
  return handled;
}

/**
 * Writes a delivery's line and waits until the stream took it, so that a delivery is settled
 * only once printed. When the output is gone (`receive | head -1` after head exits), the delivery
 * is released where the transport can redeliver and the command stops with `Closed`: it crashed
 * on EPIPE with a stack trace, having accepted events nobody read.
 */
async function printThenSettle(io: CommandIo, line: string, delivery: Delivery): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      io.stdout.write(line, (err) => (err ? reject(err) : resolve()));
    });
  } catch (err) {
    if (delivery.capabilities.release !== "none") await delivery.release().catch(() => undefined);
    throw new PosthornError(
      "Closed",
      `stdout was closed (${(err as { code?: string }).code ?? describeError(err)}): stopped; the delivery being printed was ${delivery.capabilities.release !== "none" ? "released for redelivery" : "not accepted"}`,
      { cause: err },
    );
  }
}

/** Runs `posthorn receive`. */
export async function receiveCommand(
  argv: readonly string[],
  io: CommandIo,
  signal?: AbortSignal,
): Promise<number> {
  const parsed = parseOrHelp(argv, OPTIONS, RECEIVE_HELP, io);
  if (!parsed) return EXIT_OK;
  const { values, positionals } = parsed;
  const [url] = positionalArgs(positionals, ["url"]);
  const count = countOption(values, "count");
  const timeoutMs = numberOption(values, "timeout");
  const endpoint = await openEndpoint(url);
  const subscriber = await endpoint.createSubscriber();
  // On http:// and ws:// with port 0, the port the system picked: a sender needs it.
  note(io, `ready: receiving from ${listeningDisplay(url, endpoint.display, subscriber)}`);
  let handled = 0;
  try {
    handled = await consume(
      subscriber,
      async (delivery) => {
        const line = values.json
          ? JSON.stringify(deliveryRecord(delivery))
          : delivery.event && utf8Decode(json.encode(delivery.event));
        if (line) await printThenSettle(io, `${line}\n`, delivery);
        if (delivery.event) {
          await delivery.accept();
          return true;
        }
        // --count counts events: a message that is not one is reported and settled, and the
        // command goes on waiting (it ended, exit 0, having printed no event).
        const why = delivery.error
          ? `${delivery.error.code}: ${delivery.error.message}`
          : "not a CloudEvent";
        if (delivery.capabilities.reject !== "none") {
          note(io, `rejecting a message that is not a valid CloudEvent (${why})`);
          await delivery
            .reject(why)
            .catch((err) => note(io, `reject failed: ${describeError(err)}`));
        } else {
          note(io, `accepting (dropping) a message that is not a valid CloudEvent (${why})`);
          await delivery.accept();
        }
        return false;
      },
      { count, timeoutMs, ...(signal ? { signal } : {}) },
    );
  } finally {
    await subscriber.close();
  }
  if (count !== undefined && handled < count) {
    note(io, `posthorn receive: got ${handled} of ${count} events before the timeout`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

import { readFile } from "node:fs/promises";
import { type CloudEvent, utf8Decode } from "@posthorn/core";
import {
  type CommandIo,
  countOption,
  EXIT_FAILED,
  EXIT_OK,
  note,
  numberOption,
  UsageError,
} from "../cli-io.js";
import { openEndpoint } from "../endpoint.js";
import { buildEvent, parseEventsText, readAll } from "../input.js";
import { parseOrHelp, positionalArgs, withModeAndFormat } from "./shared.js";

/** `posthorn send --help`. */
export const SEND_HELP = `Usage: posthorn send <url> [options]

Sends CloudEvents to an endpoint URL and exits when the transport acknowledged them.

Events come from (first that applies):
  --event <file>        a file in the JSON event format: one event, a JSON batch
                        (an array) or JSON lines; "-" reads stdin
  --type/--source/...   one event built from options (id and time generated)
  stdin                 when it is not a terminal

Options:
  --mode <mode>         binary | structured | batch (overrides ?mode=)
  --format <format>     json | avro | protobuf, for structured and batch (overrides ?format=)
  --type <type>         event type, e.g. com.example.order.created
  --source <uri>        event source, e.g. /orders
  --id <id>             event id (default: a random UUID)
  --subject <subject>   event subject
  --data <text>         event data; JSON text is sent as JSON, anything else as text
  --datacontenttype <t> media type of --data
  --ext <name=value>    an extension attribute (repeatable)
                        (these build one event; with --event they are a usage error)
  --concurrency <n>     publishes in flight at once, outside batch mode (default 16)
  --timeout <ms>        connection and acknowledgement timeout (default 10000)
  --json                print a JSON summary on stdout
  -h, --help            this text

Ctrl-C starts no more publishes, waits for those under way, and says how many were sent.

Exit status: 0 when every event was acknowledged, 1 when any failed or was not sent after Ctrl-C,
2 on a usage error.

Examples:
  posthorn send http://127.0.0.1:8080/events --type com.example.ping --source /cli --data '{"n":1}'
  posthorn send 'kafka://127.0.0.1:9092/orders?mode=structured&format=avro' --event orders.jsonl
  cat events.json | posthorn send amqp://guest:guest@127.0.0.1:5672/orders
`;

const OPTIONS = {
  event: { type: "string", short: "e" },
  mode: { type: "string" },
  format: { type: "string" },
  type: { type: "string" },
  source: { type: "string" },
  id: { type: "string" },
  subject: { type: "string" },
  data: { type: "string" },
  datacontenttype: { type: "string" },
  ext: { type: "string", multiple: true },
  concurrency: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
} as const;

const BUILD_OPTIONS = [
  "type",
  "source",
  "id",
  "subject",
  "data",
  "datacontenttype",
  "ext",
] as const;

async function loadEvents(values: Record<string, unknown>, io: CommandIo): Promise<CloudEvent[]> {
  const file = values.event as string | undefined;
  const building = BUILD_OPTIONS.filter((name) => values[name] !== undefined);
  if (file !== undefined && building.length > 0) {
    // They were ignored: --event f.json --ext tenant=a sent the file's events without the extension.
    throw new UsageError(
      `--${building[0]} builds an event from options and does not apply to --event: give one or the other`,
    );
  }
  if (file === "-")
    return parseEventsText(await readAll(io.stdin as AsyncIterable<Uint8Array>), "stdin");
  if (file !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new UsageError(`cannot read --event ${file}: ${(err as Error).message}`);
    }
    // Invalid UTF-8 is MalformedInput, as on stdin: it was read as U+FFFD and sent.
    return parseEventsText(utf8Decode(bytes, file), file);
  }
  if (values.type !== undefined || values.source !== undefined || values.data !== undefined) {
    return [
      buildEvent({
        type: values.type as string | undefined,
        source: values.source as string | undefined,
        id: values.id as string | undefined,
        subject: values.subject as string | undefined,
        data: values.data as string | undefined,
        datacontenttype: values.datacontenttype as string | undefined,
        extensions: values.ext as string[] | undefined,
      }),
    ];
  }
  if (io.stdin.isTTY) {
    throw new UsageError(
      "no events: give --event <file>, --type and --source, or pipe events on stdin",
    );
  }
  return parseEventsText(await readAll(io.stdin as AsyncIterable<Uint8Array>), "stdin");
}

/** Runs `posthorn send`. */
export async function sendCommand(
  argv: readonly string[],
  io: CommandIo,
  signal?: AbortSignal,
): Promise<number> {
  const parsed = parseOrHelp(argv, OPTIONS, SEND_HELP, io);
  if (!parsed) return EXIT_OK;
  const { values, positionals } = parsed;
  const [url] = positionalArgs(positionals, ["url"]);
  const timeoutMs = numberOption(values, "timeout", 10_000) as number;
  const concurrency = countOption(values, "concurrency", 16, 1) as number;
  const events = await loadEvents(values, io);
  const endpoint = await openEndpoint(
    withModeAndFormat(url, values.mode as string | undefined, values.format as string | undefined),
    { timeoutMs },
  );
  const started = Date.now();
  const publisher = await endpoint.createPublisher();
  let sent = 0;
  try {
    if (endpoint.mode === "batch") {
      await publisher.publish(events, { timeoutMs });
      sent = events.length;
    } else {
      let next = 0;
      // Ctrl-C starts no more publishes; those under way finish (they were handed to the
      // transport, and ending them now would leave unknown whether they arrived).
      const worker = async () => {
        while (next < events.length && signal?.aborted !== true) {
          const event = events[next++] as CloudEvent;
          await publisher.publish(event, { timeoutMs });
          sent++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, events.length) }, worker));
    }
  } finally {
    await publisher.close();
  }
  const ms = Date.now() - started;
  const count = (n: number) => `${n} event${n === 1 ? "" : "s"}`;
  const how = endpoint.mode === "binary" ? "binary" : `${endpoint.mode}/${endpoint.formatName}`;
  const interrupted = sent < events.length;
  if (values.json) {
    const summary: Record<string, unknown> = { sent };
    if (interrupted) summary.unsent = events.length - sent;
    io.stdout.write(
      `${JSON.stringify({ ...summary, url: endpoint.display, mode: endpoint.mode, format: endpoint.formatName, ms })}\n`,
    );
  }
  if (interrupted) {
    note(
      io,
      `interrupted: sent ${sent} of ${count(events.length)} to ${endpoint.display} (${how}) in ${ms} ms; the other ${events.length - sent} were not sent`,
    );
    return EXIT_FAILED;
  }
  if (!values.json) note(io, `sent ${count(sent)} to ${endpoint.display} (${how}) in ${ms} ms`);
  return EXIT_OK;
}

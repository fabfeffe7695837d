import type { Delivery, Publisher } from "@posthorn/core";
import {
  type CommandIo,
  countOption,
  EXIT_FAILED,
  EXIT_OK,
  note,
  numberOption,
} from "../cli-io.js";
import { listeningDisplay, openEndpoint } from "../endpoint.js";
import { describeError } from "../redact.js";
import { consume } from "./receive.js";
import { parseOrHelp, positionalArgs, sleep } from "./shared.js";

/** `posthorn bridge --help`. */
export const BRIDGE_HELP = `Usage: posthorn bridge <from-url> <to-url> [options]

Moves events from one endpoint to another, at least once: each upstream delivery is accepted
only after the downstream publish was acknowledged, and released (redelivered) when it failed.
The downstream mode and format come from <to-url> (?mode=, ?format=), so a bridge also converts
between content modes and formats.

Options:
  --count <n>         stop after n events were moved
  --timeout <ms>      stop after this long
  --concurrency <n>   downstream publishes in flight at once (default 16; 1 keeps strict order)
  --publish-timeout <ms>
                      how long a downstream publish may take before the event is released
                      upstream for redelivery (default 10000)
  --json              print a JSON summary on stdout at the end
  -h, --help          this text

Messages that are not valid CloudEvents are rejected upstream (dead-lettered where the transport
can). On a transport that cannot redeliver (core NATS, WebSocket) a failed publish loses the
event; the bridge says so on stderr and exits 1.

Exit status: 0 when every event received was moved, 1 otherwise, 2 on a usage error.

Example:
  posthorn bridge 'mqtt://127.0.0.1:1883/sensors/#?version=5&qos=1' kafka://127.0.0.1:9092/sensors
`;

const OPTIONS = {
  count: { type: "string", short: "n" },
  timeout: { type: "string" },
  concurrency: { type: "string" },
  "publish-timeout": { type: "string" },
  json: { type: "boolean" },
} as const;

/** Counts of what a bridge did. */
export interface BridgeStats {
  moved: number;
  released: number;
  rejected: number;
  lost: number;
}

/**
 * Moves one delivery downstream: publish, then accept; release on failure (after a short delay
 * where the transport honours one).
 */
export async function bridgeOne(
  delivery: Delivery,
  publisher: Publisher,
  stats: BridgeStats,
  io: CommandIo,
  timeoutMs: number,
  abortSignal?: AbortSignal,
): Promise<boolean> {
  if (!delivery.event) {
    const why = delivery.error ? delivery.error.message : "not a CloudEvent";
    stats.rejected++;
    note(io, `bridge: rejecting an upstream message that is not a valid CloudEvent (${why})`);
    if (delivery.capabilities.reject !== "none") await delivery.reject(why).catch(() => undefined);
    else await delivery.accept();
    return false;
  }
  try {
    await publisher.publish(delivery.event, { timeoutMs, ...(abortSignal ? { abortSignal } : {}) });
  } catch (err) {
    note(io, `bridge: downstream publish failed: ${describeError(err)}`);
    if (delivery.capabilities.release === "none") {
      stats.lost++;
      note(io, "bridge: the upstream transport cannot redeliver; this event is lost");
      await delivery.accept().catch(() => undefined);
      return false;
    }
    stats.released++;
    const delay = delivery.capabilities.releaseDelay ? { delayMs: 500 } : {};
    await delivery
      .release(delay)
      .catch((e) => note(io, `bridge: release failed: ${describeError(e)}`));
    return false;
  }
  await delivery.accept();
  stats.moved++;
  return true;
}

/** Runs `posthorn bridge`. */
export async function bridgeCommand(
  argv: readonly string[],
  io: CommandIo,
  signal?: AbortSignal,
): Promise<number> {
  const parsed = parseOrHelp(argv, OPTIONS, BRIDGE_HELP, io);
  if (!parsed) return EXIT_OK;
  const { values, positionals } = parsed;
  const [from, to] = positionalArgs(positionals, ["from-url", "to-url"]);
  const count = countOption(values, "count");
  const timeoutMs = numberOption(values, "timeout");
  const concurrency = countOption(values, "concurrency", 16, 1) as number;
  // 0 would time out every publish before it is sent: a whole number of ms, 1 or more.
  const publishTimeoutMs = countOption(values, "publish-timeout", 10_000, 1) as number;
  const upstream = await openEndpoint(from);
  const downstream = await openEndpoint(to);
  const publisher = await downstream.createPublisher();
  const stats: BridgeStats = { moved: 0, released: 0, rejected: 0, lost: 0 };
  const started = Date.now();
  try {
    const subscriber = await upstream.createSubscriber();
    note(
      io,
      `ready: bridging ${listeningDisplay(from, upstream.display, subscriber)} -> ${downstream.display}`,
    );
    const inFlight = new Set<Promise<void>>();
    const stop = new AbortController();
    signal?.addEventListener("abort", () => stop.abort(), { once: true });
    try {
      await consume(
        subscriber,
        async (delivery) => {
          if (count !== undefined) {
            // No more publishes in flight than events still to move: --count 2 moved all 5
            // events waiting upstream.
            while (inFlight.size > 0 && stats.moved + inFlight.size >= count) {
              await Promise.race(inFlight);
            }
            if (stats.moved >= count && delivery.capabilities.release !== "none") {
              // Taken from upstream after the count was reached: give it back, unmoved.
              await delivery.release().catch(() => undefined);
              stop.abort();
              return;
            }
          }
          // Ctrl-C ends the publishes still waiting, so their deliveries are released now
          // rather than left to the upstream connection's end (or lost with the process).
          const task: Promise<void> = bridgeOne(
            delivery,
            publisher,
            stats,
            io,
            publishTimeoutMs,
            signal,
          ).then((ok) => {
            inFlight.delete(task);
            if (!ok) return sleep(50);
            if (count !== undefined && stats.moved >= count) stop.abort();
          });
          inFlight.add(task);
          while (inFlight.size >= concurrency) await Promise.race(inFlight);
        },
        // Redeliveries are deliveries too: the count is of events moved, checked as tasks finish.
        { timeoutMs, signal: stop.signal },
      );
      await Promise.all(inFlight);
    } finally {
      await subscriber.close();
    }
  } finally {
    await publisher.close();
  }
  const ms = Date.now() - started;
  if (values.json) io.stdout.write(`${JSON.stringify({ ...stats, ms })}\n`);
  else
    note(
      io,
      `bridged ${stats.moved} events in ${ms} ms (${stats.released} released for redelivery, ${stats.rejected} rejected, ${stats.lost} lost)`,
    );
  if (stats.lost > 0 || stats.rejected > 0) return EXIT_FAILED;
  if (count !== undefined && stats.moved < count) return EXIT_FAILED;
  return EXIT_OK;
}

import type { CloudEvent } from "@posthorn/core";
import { createSubscriber } from "posthorn";

/** Options for {@link consumeWithCheckpoints}. */
export interface CheckpointOptions {
  /** `kafka://host:port/topic`. */
  readonly url: string;
  /** The consumer group: its committed offsets are the checkpoint. */
  readonly group: string;
  /** Stop after this many events (a stand-in for a deployment that stops). */
  readonly limit: number;
  /** Stop when nothing arrives for this long, counted from joining the group. Default 5000 ms. */
  readonly idleMs?: number;
}

/**
 * Reads events with a consumer group, calling `process` on each and accepting it afterwards, so
 * the group's checkpoint only ever covers processed events. A new group starts at the earliest
 * offset; an existing one resumes after its checkpoint.
 *
 * @returns the events processed this run, in order
 */
export async function consumeWithCheckpoints(
  options: CheckpointOptions,
  process: (event: CloudEvent) => Promise<void> | void,
): Promise<CloudEvent[]> {
  const sep = options.url.includes("?") ? "&" : "?";
  const subscriber = await createSubscriber(
    `${options.url}${sep}group=${encodeURIComponent(options.group)}&from=earliest`,
  );
  const seen: CloudEvent[] = [];
  const iterator = subscriber[Symbol.asyncIterator]();
  try {
    // Joining a group can take seconds on a real cluster; the idle clock starts once it joined.
    await subscriber.ready;
    while (seen.length < options.limit) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<"idle">((resolve) => {
        timer = setTimeout(() => resolve("idle"), options.idleMs ?? 5000);
      });
      const next = await Promise.race([iterator.next(), idle]);
      clearTimeout(timer);
      if (next === "idle" || next.done) break;
      const delivery = next.value;
      if (!delivery.event) {
        await delivery.accept(); // not an event: skip it, and checkpoint past it
        continue;
      }
      await process(delivery.event);
      await delivery.accept(); // the checkpoint moves only after processing
      seen.push(delivery.event);
    }
  } finally {
    // Closing commits what was accepted and hands the partitions back to the group.
    await subscriber.close();
  }
  return seen;
}

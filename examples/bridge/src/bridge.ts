import { createPublisher, createSubscriber } from "posthorn";

/** Counts of what {@link bridge} did. */
export interface BridgeCounts {
  moved: number;
  released: number;
  rejected: number;
}

/**
 * Moves events from one endpoint URL to another until `signal` fires or `limit` events moved.
 * The downstream URL's `mode` and `format` decide how events leave, so a bridge also converts.
 */
export async function bridge(
  from: string,
  to: string,
  options: { limit?: number; signal?: AbortSignal; onReady?: () => void } = {},
): Promise<BridgeCounts> {
  const counts: BridgeCounts = { moved: 0, released: 0, rejected: 0 };
  const downstream = await createPublisher(to);
  const upstream = await createSubscriber(from);
  options.signal?.addEventListener("abort", () => void upstream.close(), { once: true });
  options.onReady?.();
  try {
    for await (const delivery of upstream) {
      if (!delivery.event) {
        counts.rejected++;
        await (delivery.capabilities.reject === "none"
          ? delivery.accept()
          : delivery.reject("not a CloudEvent"));
        continue;
      }
      try {
        await downstream.publish(delivery.event);
      } catch {
        // Not acknowledged downstream: let the upstream transport deliver it again.
        counts.released++;
        await delivery.release();
        continue;
      }
      await delivery.accept();
      counts.moved++;
      if (options.limit !== undefined && counts.moved >= options.limit) break;
    }
  } finally {
    await upstream.close();
    await downstream.close();
  }
  return counts;
}

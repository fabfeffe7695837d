import { setTimeout as sleep } from "node:timers/promises";
import { createPublisher, createSubscriber } from "posthorn";

/** Counts of what {@link bridge} did. */
export interface BridgeCounts {
  /** Published downstream, then accepted upstream. */
  moved: number;
  /** Not acknowledged downstream, and handed back to the upstream transport to come again. */
  released: number;
  /** Not a CloudEvent: rejected upstream (or accepted, where the transport cannot reject). */
  rejected: number;
  /**
   * Not acknowledged downstream, from an upstream that cannot deliver it again (its
   * `capabilities.release` is `none`: WebSocket, core NATS, MQTT QoS 0 or a clean session).
   */
  lost: number;
}

/**
 * Moves events from one endpoint URL to another until `signal` fires or `limit` events moved.
 * The downstream URL's `mode` and `format` decide how events leave, so a bridge also converts.
 * An event is accepted upstream only after the downstream publish resolved; when the publish
 * fails it is released, so the upstream transport delivers it again (at least once), except
 * where the upstream cannot redeliver: there it is counted as `lost` and the bridge goes on.
 */
export async function bridge(
  from: string,
  to: string,
  options: {
    limit?: number;
    signal?: AbortSignal;
    /**
     * Called once the upstream subscription is in place, with the port it listens on when it is
     * a listening endpoint (`http://`, `ws://`): give port 0 in `from` and the system picks one.
     */
    onReady?: (listeningPort: number | undefined) => void;
    /** Called after each upstream delivery was settled, with what became of it. */
    onSettled?: (outcome: keyof BridgeCounts) => void;
  } = {},
): Promise<BridgeCounts> {
  const counts: BridgeCounts = { moved: 0, released: 0, rejected: 0, lost: 0 };
  const downstream = await createPublisher(to);
  const upstream = await createSubscriber(from).catch(async (err) => {
    await downstream.close();
    throw err;
  });
  options.signal?.addEventListener("abort", () => void upstream.close(), { once: true });
  try {
    await upstream.ready;
    options.onReady?.(upstream.listeningPort);
    for await (const delivery of upstream) {
      const can = delivery.capabilities;
      if (!delivery.event) {
        counts.rejected++;
        await (can.reject === "none" ? delivery.accept() : delivery.reject("not a CloudEvent"));
        options.onSettled?.("rejected");
        continue;
      }
      try {
        await downstream.publish(delivery.event);
      } catch {
        if (can.release === "none") {
          // release() would be a NotSupported error: nothing can deliver this event again.
          counts.lost++;
          await delivery.accept();
          options.onSettled?.("lost");
          continue;
        }
        // Not acknowledged downstream: let the upstream transport deliver it again, after a
        // pause, so a downstream that is away is not asked again and again at full speed.
        counts.released++;
        if (can.releaseDelay) await delivery.release({ delayMs: 500 });
        else {
          await sleep(500);
          // A stop during the pause closed the subscriber, which released it already.
          if (options.signal?.aborted) break;
          await delivery.release();
        }
        options.onSettled?.("released");
        continue;
      }
      await delivery.accept();
      counts.moved++;
      options.onSettled?.("moved");
      if (options.limit !== undefined && counts.moved >= options.limit) break;
    }
  } finally {
    await upstream.close();
    await downstream.close();
  }
  return counts;
}

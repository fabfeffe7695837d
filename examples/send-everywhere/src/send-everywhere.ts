import type { CloudEventLike } from "@posthorn/core";
import { createPublisher, hidePassword, redact } from "posthorn";

/** What happened at one endpoint. */
export interface SendResult {
  readonly url: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

/**
 * Publishes one event to every URL at once. Each URL picks its transport, mode and format; a
 * failure at one endpoint does not stop the others.
 */
export async function sendEverywhere(
  event: CloudEventLike,
  urls: readonly string[],
): Promise<SendResult[]> {
  return Promise.all(
    urls.map(async (url): Promise<SendResult> => {
      const started = performance.now();
      try {
        const publisher = await createPublisher(url);
        try {
          await publisher.publish(event);
        } finally {
          await publisher.close();
        }
        return { url, ok: true, ms: performance.now() - started };
      } catch (err) {
        return { url, ok: false, ms: performance.now() - started, error: (err as Error).message };
      }
    }),
  );
}

/** One line for a result, with any password in the URL or the error shown as `***`. */
export function formatResult(result: SendResult): string {
  const status = result.ok ? "ok  " : "FAIL";
  const error = result.error === undefined ? "" : ` ${redact(result.error)}`;
  return `${status} ${hidePassword(result.url)} ${result.ms.toFixed(1)} ms${error}`;
}

import { PosthornError } from "@posthorn/core";

/** Joins chunks into one array, without copying when there is just one. */
export function concatChunks(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** The error a body reader throws when the client went away before its body was read. */
export function clientGone(): PosthornError {
  return new PosthornError("Aborted", "the client closed the request before its body was read");
}

/**
 * The error a body reader throws for a body something else read first (a body parser mounted
 * before the receiver).
 *
 * @param hint - what to do about it, appended to the message
 */
export function alreadyRead(hint = ""): PosthornError {
  return new PosthornError(
    "NotSupported",
    `the request body was already read before the CloudEvents receiver saw it${hint}`,
  );
}

/** The error a body reader throws past its limit. */
export function tooLarge(limit: number): PosthornError {
  return new PosthornError("PayloadTooLarge", `body exceeds ${limit} bytes`, { protocolCode: 413 });
}

/**
 * Secrets (passwords, tokens) seen in endpoint URLs and options. Every message the command prints
 * and every error an endpoint throws passes through {@link redact}, so a password never reaches a
 * terminal or a log, even when a client library quotes the URL it was given.
 */
const secrets = new Set<string>();

/** The text that stands in for a secret. */
export const REDACTED = "***";

/**
 * Remembers a secret so that {@link redact} hides it wherever it appears (raw and percent-encoded).
 *
 * @param secret - a password or token; empty strings are ignored
 */
export function registerSecret(secret: string | undefined): void {
  if (secret === undefined || secret.length === 0) return;
  secrets.add(secret);
  const encoded = encodeURIComponent(secret);
  if (encoded !== secret) secrets.add(encoded);
}

/**
 * Hides every registered secret in a text, and the password part of any `scheme://user:pass@`
 * authority it contains.
 *
 * @param text - a message, URL or error text
 * @returns the text with secrets replaced by `***`
 */
export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) {
    if (!out.includes(secret)) continue;
    // A short secret is hidden where it stands alone, not inside a longer run of letters and
    // digits: a password "p" turned "publish" into "***ublish" and "plain" into "***lain".
    out =
      secret.length < WHOLE_WORD_BELOW
        ? out.replace(
            new RegExp(`(?<![A-Za-z0-9])${escapeRegExp(secret)}(?![A-Za-z0-9])`, "g"),
            REDACTED,
          )
        : out.split(secret).join(REDACTED);
  }
  return out.replace(USERINFO, (_m, head: string, user: string) => `${head}${user}:${REDACTED}@`);
}

/** Secrets shorter than this are matched as whole words only. */
const WHOLE_WORD_BELOW = 8;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):[^@/\s]+@/gi;

/**
 * Makes an error safe to print: its message (and its causes' messages) with secrets hidden.
 *
 * @param err - anything thrown
 * @returns a one-line description, redacted
 */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 4; depth++) {
    const message =
      current instanceof Error
        ? current.message ||
          (current as { code?: unknown }).code?.toString() ||
          current.name ||
          "error"
        : typeof current === "string"
          ? current
          : describeObject(current);
    if (message && !parts.some((p) => p.includes(message))) parts.push(message);
    current = current instanceof Error ? (current as { cause?: unknown }).cause : undefined;
  }
  return redact(parts.join(": "));
}

/**
 * A thrown value that is no Error (rhea's AMQP error: `condition`, `description`): its text, or
 * "" when it has none, instead of "[object Object]".
 */
function describeObject(value: unknown): string {
  if (typeof value !== "object" || value === null) return String(value);
  const v = value as { description?: unknown; message?: unknown; condition?: unknown };
  for (const text of [v.description, v.message, v.condition]) {
    if (typeof text === "string" && text !== "") return text;
  }
  const shown = String(value);
  return shown === "[object Object]" ? "" : shown;
}

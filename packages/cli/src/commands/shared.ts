import { UsageError } from "../cli-io.js";

/**
 * Sets `mode` and `format` query parameters on an endpoint URL from `--mode` and `--format`
 * (the options win over the URL).
 */
export function withModeAndFormat(
  url: string,
  mode: string | undefined,
  format: string | undefined,
): string {
  if (mode === undefined && format === undefined) return url;
  const hash = url.indexOf("#");
  const base = hash < 0 ? url : url.slice(0, hash);
  const q = base.indexOf("?");
  const head = q < 0 ? base : base.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : base.slice(q + 1));
  if (mode !== undefined) params.set("mode", mode);
  if (format !== undefined) params.set("format", format);
  return `${head}?${params.toString()}`;
}

/** The one positional a command needs, or a usage error naming it. */
export function positional(positionals: readonly string[], index: number, name: string): string {
  const value = positionals[index];
  if (value === undefined) throw new UsageError(`missing <${name}>`);
  return value;
}

/** Rejects positionals beyond the expected count. */
export function noMorePositionals(positionals: readonly string[], count: number): void {
  if (positionals.length > count) {
    throw new UsageError(`unexpected argument "${positionals[count]}"`);
  }
}

/** Resolves after `ms`, or when the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

import {
  type CommandIo,
  type OptionTable,
  type ParsedArgs,
  parseCommandArgs,
  UsageError,
} from "../cli-io.js";
import { listTransports } from "../endpoint.js";
import { FORMAT_NAMES, MODE_NAMES } from "../endpoint-url.js";

/**
 * Parses a command's arguments, or answers `--help`: prints `help` on stdout and returns
 * `undefined`, and the command then exits 0.
 */
export function parseOrHelp(
  argv: readonly string[],
  options: OptionTable,
  help: string,
  io: CommandIo,
): ParsedArgs | undefined {
  const parsed = parseCommandArgs(argv, options);
  if (!parsed.values.help) return parsed;
  io.stdout.write(help);
  return undefined;
}

/**
 * Sets `mode` and `format` query parameters on an endpoint URL from `--mode` and `--format`
 * (the options win over the URL).
 *
 * @throws {@link UsageError} when `--mode` or `--format` is not one of its values: a wrong option
 *   is a usage error (exit 2), not a `MalformedInput` about a `?mode=` the URL never had
 */
export function withModeAndFormat(
  url: string,
  mode: string | undefined,
  format: string | undefined,
): string {
  if (mode !== undefined && !(MODE_NAMES as readonly string[]).includes(mode)) {
    throw new UsageError(
      `--mode must be one of ${MODE_NAMES.join(", ")}, got ${JSON.stringify(mode)}`,
    );
  }
  if (format !== undefined && !(FORMAT_NAMES as readonly string[]).includes(format)) {
    throw new UsageError(
      `--format must be one of ${FORMAT_NAMES.join(", ")}, got ${JSON.stringify(format)}`,
    );
  }
  if (mode === undefined && format === undefined) return url;
  // Every character but the parameters replaced stays as given: a "#" belongs to the path or
  // the query (an AMQP address, an MQTT topic), as parseEndpointUrl reads it. The URL was cut at
  // "#" (amqp://h/queue/q#1 sent to queue/q) and the rest of its query re-encoded.
  const text = url.trim();
  const q = text.indexOf("?");
  const head = q < 0 ? text : text.slice(0, q);
  const query = q < 0 ? "" : text.slice(q + 1);
  const kept = (query === "" ? [] : query.split("&")).filter((piece) => {
    // The name as parseEndpointUrl reads it (URLSearchParams: "+" and percent-decoding).
    const name = new URLSearchParams(piece).keys().next().value;
    return !(name === "mode" && mode !== undefined) && !(name === "format" && format !== undefined);
  });
  if (mode !== undefined) kept.push(`mode=${mode}`);
  if (format !== undefined) kept.push(`format=${format}`);
  return `${head}?${kept.join("&")}`;
}

/**
 * The positionals a command takes, in order, or a usage error naming the first one missing or
 * the first one too many.
 */
export function positionalArgs<const Names extends readonly string[]>(
  positionals: readonly string[],
  names: Names,
): { [K in keyof Names]: string } {
  for (const [index, name] of names.entries()) {
    if (positionals[index] === undefined) throw new UsageError(`missing <${name}>`);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument "${positionals[names.length]}"`);
  }
  return positionals.slice(0, names.length) as { [K in keyof Names]: string };
}

/**
 * The `--only` list of transports, when given, or a usage error naming one this build does not
 * know (a typo ran nothing and then said the paths did not round-trip).
 */
export function onlyOption(values: ParsedArgs["values"]): string[] | undefined {
  if (typeof values.only !== "string") return undefined;
  const known = listTransports().map((t) => t.transport);
  const only = values.only
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  if (only.length === 0) throw new UsageError(`--only needs transports: ${known.join(",")}`);
  for (const name of only) {
    if (!known.includes(name)) {
      throw new UsageError(`--only: unknown transport "${name}" (known: ${known.join(", ")})`);
    }
  }
  return only;
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

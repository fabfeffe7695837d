import {
  type CommandIo,
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  printError,
  UsageError,
} from "./cli-io.js";
import { BRIDGE_HELP, bridgeCommand } from "./commands/bridge.js";
import { CONFORMANCE_HELP, conformanceCommand } from "./commands/conformance.js";
import { DEMO_HELP, demoCommand } from "./commands/demo.js";
import { RECEIVE_HELP, receiveCommand } from "./commands/receive.js";
import { SEND_HELP, sendCommand } from "./commands/send.js";
import { listTransports } from "./endpoint.js";

/** The version printed by `posthorn --version`. */
export const VERSION = "0.1.0";

/** `posthorn --help`. */
export function mainHelp(): string {
  const transports = listTransports()
    .map((t) => {
      const schemes = t.schemes.map((s) => `${s}://`).join(" ");
      // No padding after the last column: every line ended in spaces.
      return t.available ? `  ${schemes}` : `  ${schemes.padEnd(40)}(unavailable: ${t.reason})`;
    })
    .join("\n");
  return `Usage: posthorn <command> [options]

Send, receive and bridge CloudEvents over HTTP, WebSockets, AMQP 1.0, MQTT, Kafka and NATS,
addressed by URL, in binary, structured or batch mode and the JSON, Avro or Protobuf format.

Commands:
  send <url>                 send events (from a file, stdin, or --type/--source/--data)
  receive <url>              print received events as JSON lines, accepting each
  bridge <from-url> <to-url> move events between transports, at least once
  conformance                run every test vector over every binding x mode x format
  demo                       one event across every transport, mode and format, as a table

Run posthorn <command> --help for its options.

URL schemes:
${transports}
  Query parameters everywhere: mode=binary|structured|batch, format=json|avro|protobuf

Exit status: 0 success, 1 failure, 2 usage error.
`;
}

const COMMANDS: Record<
  string,
  {
    run(argv: readonly string[], io: CommandIo, signal: AbortSignal): Promise<number>;
    help: string;
  }
> = {
  send: { run: sendCommand, help: SEND_HELP },
  receive: { run: receiveCommand, help: RECEIVE_HELP },
  bridge: { run: bridgeCommand, help: BRIDGE_HELP },
  conformance: { run: conformanceCommand, help: CONFORMANCE_HELP },
  demo: { run: demoCommand, help: DEMO_HELP },
};

/**
 * Runs the `posthorn` command line.
 *
 * @param argv - the arguments after the program name
 * @param io - streams and environment
 * @param signal - aborts long-running commands (receive, bridge) cleanly, e.g. on Ctrl-C
 * @returns the exit status
 */
export async function runCli(
  argv: readonly string[],
  io: CommandIo,
  signal: AbortSignal = new AbortController().signal,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    const command = topic === undefined ? undefined : COMMANDS[topic];
    io.stdout.write(command ? command.help : mainHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === "--version" || name === "-v") {
    io.stdout.write(`${VERSION}\n`);
    return EXIT_OK;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    io.stderr.write(`posthorn: unknown command "${name}"\n\n${mainHelp()}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io, signal);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`posthorn ${name}: ${err.message}\nRun posthorn ${name} --help for usage.\n`);
      return EXIT_USAGE;
    }
    printError(io, name, err);
    return EXIT_FAILED;
  }
}

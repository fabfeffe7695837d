import type { CommandIo } from "../cli-io.js";

/** `posthorn conformance --help`. */
export const CONFORMANCE_HELP = "Usage: posthorn conformance\n";

/** Runs `posthorn conformance`. */
export async function conformanceCommand(
  _argv: readonly string[],
  _io: CommandIo,
): Promise<number> {
  return 1;
}

import type { CommandIo } from "../cli-io.js";

/** `posthorn demo --help`. */
export const DEMO_HELP = "Usage: posthorn demo\n";

/** Runs `posthorn demo`. */
export async function demoCommand(_argv: readonly string[], _io: CommandIo): Promise<number> {
  return 1;
}

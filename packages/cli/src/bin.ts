#!/usr/bin/env node
import { runCli } from "./main.js";

// The posthorn command. Ctrl-C (or SIGTERM) stops receive and bridge cleanly (subscriptions are
// closed and unsettled deliveries released) and send after the publishes under way; a second
// Ctrl-C exits at once.
const controller = new AbortController();
let interrupted = 0;
const onSignal = (signal: NodeJS.Signals) => {
  interrupted++;
  if (interrupted > 1) process.exit(signal === "SIGINT" ? 130 : 143);
  controller.abort();
  // receive and bridge stop cleanly on the abort; anything still running after 3 s is ended.
  // Unreferenced: a command that stopped cleanly exits at once, not when this fires.
  setTimeout(() => process.exit(signal === "SIGINT" ? 130 : 143), 3000).unref();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

// A reader that goes away (receive | head -1) makes writes fail with EPIPE: the command sees it
// as a failed write and stops; without a listener the stream's error event crashed the process.
process.stdout.on("error", () => controller.abort());

const io = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
};
const code = await runCli(process.argv.slice(2), io, controller.signal);
process.exitCode = code;
// Whatever a client library left behind (a reconnect timer, an idle socket) must not keep the
// command alive once its work is done.
setTimeout(() => process.exit(code), 2000).unref();

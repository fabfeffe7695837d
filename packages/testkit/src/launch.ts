// Starting a broker binary on loopback ports without racing other processes for them.
//
// An external binary binds its ports itself, so a port must be chosen before it starts and can be
// taken by another process (a parallel vitest worker, another package's tests under turbo, an
// outgoing connection's local port) between the choice and the bind. Two things follow:
// - the broker is ready only when it says so in its log, after every listener is bound: a port
//   that merely accepts connections may be someone else's (the old launchers waited for that, and
//   could hand a test another test's broker while their own had exited with "address in use");
// - a start that failed because a port was taken is retried on new ports, a few times.
// Ports are chosen by listening on port 0; every port of one start is held until all are chosen,
// so two listeners of one broker never get the same port.

import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import { track } from "./process-cleanup.js";

/** How many starts a launcher tries, each on new ports, when another process takes a port first. */
export const START_ATTEMPTS = 5;

/** How long a broker has to log that it is ready. */
const READY_TIMEOUT_MS = 10_000;

// What nats-server and Mosquitto print when a listener's port is taken: Go's "bind: address
// already in use", Mosquitto's "Error: Address already in use", and for its WebSocket listener
// (libwebsockets) "Error: Unable to create websockets listener on port N."
const PORT_TAKEN = /address already in use|unable to create websockets listener/i;

/**
 * What Mosquitto logs once every listener is bound ("mosquitto version 2.0.11 running"); a taken
 * port ends it before, with "Address already in use" or "Unable to create websockets listener".
 */
export const MOSQUITTO_READY = /mosquitto version \S+ running/;

/**
 * Configuration lines that keep Mosquitto's log of errors and information on stderr (its
 * defaults), whatever lines before them say: each `log_dest` and `log_type` after the first adds.
 */
export const MOSQUITTO_LOG: readonly string[] = [
  "log_dest stderr",
  "log_type error",
  "log_type warning",
  "log_type notice",
  "log_type information",
];

/** A start that failed because another process held one of the broker's ports. */
export class PortTakenError extends Error {
  override readonly name = "PortTakenError";
}

/** What to start: the binary, its arguments, and the log line that says it is ready. */
export interface BrokerCommand {
  /** Path of the binary. */
  readonly binary: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Matches the line the broker logs (to stderr) once every listener is bound. */
  readonly ready: RegExp;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Ports for the named listeners, on 127.0.0.1, all different: each is listened on (port 0) until
 * every one is chosen, then all are closed.
 *
 * @param names - the listeners, e.g. `["mqtt", "websocket"]`
 */
export async function choosePorts(names: readonly string[]): Promise<Record<string, number>> {
  const servers: Server[] = [];
  try {
    const ports: Record<string, number> = {};
    for (const name of names) {
      const server = createServer();
      servers.push(server);
      ports[name] = await new Promise<number>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
          const address = server.address();
          resolve(typeof address === "object" && address ? address.port : 0);
        });
      });
    }
    return ports;
  } finally {
    await Promise.all(
      servers.map(
        (s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())),
      ),
    );
  }
}

/**
 * Starts the broker process once and resolves when it has logged that it is ready (its listeners
 * are bound: the ports are its own). Its stderr is kept (the last 4000 characters) for messages.
 *
 * @param command - what to run
 * @param dir - the broker's directory, removed with the process if the test process ends first
 * @throws PortTakenError when it exited because a port was taken
 * @throws Error when it exited otherwise, could not be spawned, or was not ready within 10 s
 */
export async function startProcess(command: BrokerCommand, dir: string): Promise<ChildProcess> {
  const child = spawn(command.binary, [...command.args], { stdio: ["ignore", "ignore", "pipe"] });
  track(child, dir);
  let stderr = "";
  let onLog = (): void => {};
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
    onLog();
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onLog = () => {
        if (command.ready.test(stderr)) resolve();
      };
      child.once("error", (err) =>
        reject(new Error(`${command.binary} could not be started: ${err.message}`)),
      );
      void exited(child).then(() => {
        const why = `${command.binary} exited at start: ${stderr}`;
        reject(PORT_TAKEN.test(stderr) ? new PortTakenError(why) : new Error(why));
      });
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${command.binary} did not log that it is ready (${command.ready}) within ${READY_TIMEOUT_MS} ms: ${stderr}`,
            ),
          ),
        READY_TIMEOUT_MS,
      );
      onLog();
    });
  } catch (err) {
    child.kill("SIGKILL");
    await exited(child);
    throw err;
  } finally {
    clearTimeout(timer);
    onLog = () => {};
  }
  return child;
}

/**
 * Chooses ports, starts the broker on them, and when another process took a port first, starts
 * it again on new ports, up to {@link START_ATTEMPTS} times.
 *
 * @param names - the listeners to choose ports for
 * @param command - writes the broker's configuration for these ports and returns what to run
 * @param dir - the broker's directory
 * @returns the running process and the ports it listens on
 * @throws Error when it fails to start for another reason, or every attempt found a port taken
 */
export async function startOnFreePorts(
  names: readonly string[],
  command: (ports: Readonly<Record<string, number>>) => BrokerCommand,
  dir: string,
): Promise<{ child: ChildProcess; ports: Record<string, number> }> {
  const collisions: string[] = [];
  let last = "";
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const ports = await choosePorts(names);
    try {
      return { child: await startProcess(command(ports), dir), ports };
    } catch (err) {
      if (!(err instanceof PortTakenError)) throw err;
      collisions.push(Object.values(ports).join(","));
      last = err.message;
    }
  }
  throw new Error(
    `another process took a port each time the broker started (${START_ATTEMPTS} attempts, ports ${collisions.join("; ")}); the last: ${last}`,
  );
}

/**
 * Starts the broker again on the ports it had. A port taken meanwhile cannot be chosen anew
 * (clients know the old ones): that is an error naming the ports, not a broker that is not ours.
 *
 * @param command - what to run (its configuration names the old ports)
 * @param ports - those ports, for the message
 * @param dir - the broker's directory
 * @throws Error when the broker does not start, naming the ports when one was taken
 */
export async function restartOnPorts(
  command: BrokerCommand,
  ports: Readonly<Record<string, number>>,
  dir: string,
): Promise<ChildProcess> {
  try {
    return await startProcess(command, dir);
  } catch (err) {
    if (!(err instanceof PortTakenError)) throw err;
    throw new Error(
      `cannot restart the broker on its ports (${Object.values(ports).join(", ")}): another process took one while it was down; ${err.message}`,
    );
  }
}

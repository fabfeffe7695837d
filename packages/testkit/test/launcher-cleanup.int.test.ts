import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { portOpen, startMosquitto, startNatsServer } from "../src/brokers.js";

// Whether a process is still there (and not only a zombie waiting for its parent).
function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = spawnSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" });
  return stat.stdout.trim() !== "" && !stat.stdout.trim().startsWith("Z");
}

// What a failing check would leave behind: the broker process and its directory.
function cleanUp(pid: number, dir: string): void {
  if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

// The launchers need the nats-server and mosquitto binaries; a missing one is a failure here.
describe("broker launchers clean up", () => {
  it("restart() of a running broker replaces its process, and stop() then frees the port", async () => {
    const nats = await startNatsServer();
    const first = nats.process.pid;
    await nats.restart();
    expect(alive(first), "the first nats-server outlived restart()").toBe(false);
    expect(alive(nats.process.pid)).toBe(true);
    expect(await portOpen("127.0.0.1", nats.port)).toBe(true);
    await nats.stop();
    expect(alive(nats.process.pid)).toBe(false);
    expect(await portOpen("127.0.0.1", nats.port)).toBe(false);
  });

  it("kill() then restart() brings it back on the same port", async () => {
    const mosquitto = await startMosquitto();
    await mosquitto.kill();
    expect(await portOpen("127.0.0.1", mosquitto.port)).toBe(false);
    await mosquitto.restart();
    expect(await portOpen("127.0.0.1", mosquitto.port)).toBe(true);
    await mosquitto.stop();
    expect(await portOpen("127.0.0.1", mosquitto.port)).toBe(false);
  });

  it("a broker that fails to start leaves no directory behind", async () => {
    const error = await startMosquitto({ config: () => ["no_such_option 1"] }).catch(
      (err: Error) => err,
    );
    expect(error).toBeInstanceOf(Error);
    const dir = /(\/\S*posthorn-mosquitto-[^/\s]+)/.exec((error as Error).message)?.[1];
    expect(dir, (error as Error).message).toBeDefined();
    expect(existsSync(dir as string)).toBe(false);
  });

  it("kills a broker the test process did not stop, and removes its directory, when it exits", () => {
    const script = [
      `import { startNatsServer } from ${JSON.stringify(join(import.meta.dirname, "../src/brokers.ts"))};`,
      "const nats = await startNatsServer();",
      "const dir = nats.process.spawnargs.at(-1);",
      "console.log(JSON.stringify({ pid: nats.process.pid, dir }));",
      "process.exit(0);",
    ].join("\n");
    const run = spawnSync(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    expect(run.status, run.stderr).toBe(0);
    const { pid, dir } = JSON.parse(run.stdout.trim().split("\n").at(-1) as string);
    try {
      expect(alive(pid), "nats-server outlived the process that started it").toBe(false);
      expect(existsSync(dir)).toBe(false);
      expect(readdirSync(tmpdir())).not.toContain(dir.split("/").at(-1));
    } finally {
      cleanUp(pid, dir);
    }
  });

  it.each([
    ["startNatsServer", "brokers.ts"],
    ["startPersistentMosquitto", "faults.ts"],
  ])(
    "kills a broker of %s the test process did not stop when SIGTERM ends that process, as vitest ends its workers",
    async (launcher, file) => {
      const script = [
        `import { ${launcher} } from ${JSON.stringify(join(import.meta.dirname, "../src", file))};`,
        `const broker = await ${launcher}();`,
        // The directory: nats-server's last argument, or the folder of Mosquitto's configuration.
        "const last = broker.process.spawnargs.at(-1);",
        "const dir = last.endsWith('.conf') ? last.slice(0, last.lastIndexOf('/')) : last;",
        "console.log(JSON.stringify({ pid: broker.process.pid, dir }));",
        "setInterval(() => {}, 1000);",
      ].join("\n");
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script],
        {
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      const line = await new Promise<string>((resolve) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(out.trim());
        });
      });
      const { pid, dir } = JSON.parse(line);
      expect(alive(pid)).toBe(true);
      const ended = new Promise<NodeJS.Signals | null>((resolve) =>
        child.once("exit", (_code, signal) => resolve(signal)),
      );
      child.kill("SIGTERM");
      try {
        expect(await ended, "the process ends by the signal, as without the launcher").toBe(
          "SIGTERM",
        );
        await new Promise((r) => setTimeout(r, 100));
        expect(
          alive(pid),
          `${launcher}: the broker outlived the SIGTERM of the process that started it`,
        ).toBe(false);
        expect(existsSync(dir)).toBe(false);
      } finally {
        cleanUp(pid, dir);
      }
    },
  );

  it("refuses options that would break the broker or write outside its directory", async () => {
    await expect(startNatsServer({ maxPayloadBytes: Number.NaN })).rejects.toThrow(
      /maxPayloadBytes must be a whole number .*, got NaN/,
    );
    await expect(startNatsServer({ maxPayloadBytes: -1 })).rejects.toThrow(RangeError);
    await expect(startMosquitto({ files: { "../acl": "x" } })).rejects.toThrow(
      /"\.\.\/acl" is not a plain file name/,
    );
    expect(existsSync(join(tmpdir(), "acl"))).toBe(false);
  });
});

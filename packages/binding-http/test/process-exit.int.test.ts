import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { startServer, type TestServer } from "./servers.js";

const script = fileURLToPath(new URL("./fixtures/publish-and-exit.ts", import.meta.url));
const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

/**
 * Runs the fixture against `url`; resolves with the milliseconds from its "published" line to
 * its exit (and its exit code).
 */
async function exitAfterPublish(url: string, mode = "one") {
  const child = spawn(process.execPath, ["--import", "tsx", script, url, mode], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let publishedAt: number | undefined;
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk;
    publishedAt = performance.now();
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  return {
    code,
    out,
    afterPublishMs: publishedAt === undefined ? -1 : performance.now() - publishedAt,
  };
}

describe("a process that published and has nothing else to do", () => {
  // The answer is a 2xx whose body never ends: the publish settles on the status, and the
  // publisher reads the rest in the background for up to 1 s. That must not keep the process up.
  // (Over `fetch`, undici holds its connection while the body comes: not the sender's to release.)
  it("exits promptly after a 2xx whose body is still arriving (over node:http)", {
    timeout: 20_000,
  }, async () => {
    const server = await startServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("accepted, and more to come");
    });
    servers.push(server);
    const { code, afterPublishMs } = await exitAfterPublish(server.url);
    expect(code).toBe(0);
    expect(afterPublishMs).toBeGreaterThanOrEqual(0);
    // The body cutoff is 1 s; process teardown takes a few tens of ms (more on a busy machine).
    expect(afterPublishMs).toBeLessThan(600);
  });

  it("still sends a publish queued behind a 2xx whose body then ends (the socket is held again)", {
    timeout: 20_000,
  }, async () => {
    const ids: string[] = [];
    const server = await startServer((req, res) => {
      req.resume();
      ids.push(String(req.headers["ce-id"]));
      if (req.headers["ce-id"] === "first") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("accepted, ");
        setTimeout(() => res.end("and that is all"), 300);
      } else setTimeout(() => res.writeHead(204).end(), 300);
    });
    servers.push(server);
    const { code, out } = await exitAfterPublish(server.url, "queued");
    expect(code).toBe(0);
    expect(out).toBe("published first\npublished second\n");
    expect(ids).toEqual(["first", "second"]);
  });
});

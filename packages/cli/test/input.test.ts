import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { buildEvent } from "../src/input.js";
import { runCli } from "../src/main.js";

// Input that cannot be read as it was written fails before anything connects (the URL points at
// port 1, where nothing listens): nothing is sent, exit 1, MalformedInput naming the input.

const dir = mkdtempSync(join(tmpdir(), "posthorn-cli-input-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function send(argv: string[], stdin?: Uint8Array): Promise<{ code: number; stderr: string }> {
  const stderr = new PassThrough();
  let text = "";
  stderr.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  const input = new PassThrough();
  input.end(stdin ?? Buffer.alloc(0));
  const io = { stdout: new PassThrough(), stderr, stdin: input, env: {} };
  const code = await runCli(["send", "nats://127.0.0.1:1/s", ...argv], io);
  return { code, stderr: text };
}

// An event whose data holds the byte 0xFF, which no UTF-8 text holds.
const notUtf8 = Buffer.concat([
  Buffer.from('{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"a'),
  Buffer.from([0xff]),
  Buffer.from('b"}\n'),
]);

describe("input that is not valid UTF-8", () => {
  it("on stdin is MalformedInput, not an event with U+FFFD in it", async () => {
    // It was decoded leniently: the event was sent with data "a\uFFFDb" (exit 0).
    for (const argv of [[], ["--event", "-"]]) {
      const r = await send(argv, notUtf8);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain("MalformedInput: stdin is not valid UTF-8");
    }
  });

  it("in an --event file is MalformedInput naming the file", async () => {
    const file = join(dir, "not-utf8.json");
    writeFileSync(file, notUtf8);
    const r = await send(["--event", file]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`MalformedInput: ${file} is not valid UTF-8`);
  });

  it("with a byte order mark and valid UTF-8 still reads", async () => {
    // Read, then the connection to port 1 is what fails.
    const file = join(dir, "bom.json");
    writeFileSync(
      file,
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"é"}'),
      ]),
    );
    const r = await send(["--event", file, "--timeout", "2000"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ConnectionFailed");
  });
});

describe("--data past core's JSON limits", () => {
  it("nested deeper than 128 levels is MalformedInput, not sent", async () => {
    // It went through JSON.parse without a limit and was sent (2,000 levels).
    const deep = `${"[".repeat(2000)}${"]".repeat(2000)}`;
    expect(() => buildEvent({ type: "t", source: "/s", data: deep })).toThrowError(
      expect.objectContaining({
        code: "MalformedInput",
        message: "--data is nested deeper than 128 levels",
      }),
    );
    const r = await send(["--type", "t", "--source", "/s", "--data", deep]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("MalformedInput: --data is nested deeper than 128 levels");
  });

  it("holding a number past the range of a double is MalformedInput", () => {
    // JSON.parse read 1e400 as Infinity, which the JSON format writes as null.
    expect(() => buildEvent({ type: "t", source: "/s", data: '{"n":1e400}' })).toThrowError(
      expect.objectContaining({ code: "MalformedInput" }),
    );
  });

  it("within the limits is JSON, and text that is not JSON is still text", () => {
    const nested = `${"[".repeat(128)}${"]".repeat(128)}`;
    const json = buildEvent({ type: "t", source: "/s", data: nested });
    expect(json.datacontenttype).toBe("application/json");
    expect(JSON.stringify(json.data)).toBe(nested);
    const text = buildEvent({ type: "t", source: "/s", data: `${"[".repeat(200)}` });
    expect(text.datacontenttype).toBe("text/plain");
    expect(text.data).toBe("[".repeat(200));
  });
});

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { withModeAndFormat } from "../src/commands/shared.js";
import { openEndpoint } from "../src/index.js";
import { runCli } from "../src/main.js";

// Counts on the command line and in endpoint URLs are whole numbers, refused before anything
// connects (every URL here points at port 1, where nothing listens).

async function run(
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string }> {
  const stderr = new PassThrough();
  let text = "";
  stderr.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  const io = { stdout: new PassThrough(), stderr, stdin: new PassThrough(), env };
  const code = await runCli(argv, io);
  return { code, stderr: text };
}

/** `send URL` with the event's required options, then `rest`. */
function sendArgs(url: string, ...rest: string[]): string[] {
  return ["send", url, "--type", "t", "--source", "/s", ...rest];
}

describe("mode and format options", () => {
  it("send --mode and --format outside their values are usage errors naming the option", async () => {
    // They were exit 1, a MalformedInput about "nats://127.0.0.1:1/s?mode=bogus", a query
    // parameter the URL given never had.
    const mode = await run(sendArgs("nats://127.0.0.1:1/s", "--mode", "bogus"));
    expect(mode.code).toBe(2);
    expect(mode.stderr).toContain('--mode must be one of binary, structured, batch, got "bogus"');
    expect(mode.stderr).not.toContain("?mode=");
    const format = await run(
      sendArgs("nats://127.0.0.1:1/s", "--mode", "structured", "--format", "xml"),
    );
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('--format must be one of json, avro, protobuf, got "xml"');
  });
});

describe("--mode and --format on a URL with a # or an encoded query", () => {
  it("keep every character of the URL but the mode and format parameters", () => {
    // The URL was cut at "#" (amqp://h/exchange/x/key#1 sent to exchange/x/key) and its query
    // rebuilt by URLSearchParams (%20 became +, / became %2F, a repeated name was lost).
    expect(withModeAndFormat("amqp://h/exchange/x/key#1", "structured", undefined)).toBe(
      "amqp://h/exchange/x/key#1?mode=structured",
    );
    expect(withModeAndFormat("mqtt://h/a/b?version=5&clientid=c#1", "binary", undefined)).toBe(
      "mqtt://h/a/b?version=5&clientid=c#1&mode=binary",
    );
    expect(
      withModeAndFormat(
        "http://h/e?q=a%20b&p=x/y&p=z&mode=binary&mo%64e=batch",
        "structured",
        "avro",
      ),
    ).toBe("http://h/e?q=a%20b&p=x/y&p=z&mode=structured&format=avro");
    expect(withModeAndFormat("nats://h/s?format=avro", "structured", undefined)).toBe(
      "nats://h/s?format=avro&mode=structured",
    );
  });

  it("an http:// URL with a # is still refused, not sent to the URL before the #", async () => {
    const r = await run(sendArgs("http://127.0.0.1:1/events#x", "--mode", "structured"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("MalformedInput");
    expect(r.stderr).toContain("write %23");
  });
});

describe("count options", () => {
  it("receive --count must be a whole number (2.5 was read as 3)", async () => {
    const r = await run(["receive", "nats://127.0.0.1:1/s", "--count", "2.5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--count must be a whole number, 0 or more, got "2.5"');
  });

  it("bridge --concurrency must be a whole number of 1 or more (0 was taken as 1)", async () => {
    const r = await run([
      "bridge",
      "nats://127.0.0.1:1/a",
      "nats://127.0.0.1:1/b",
      "--concurrency",
      "0",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--concurrency must be a whole number, 1 or more, got "0"');
  });

  it("bridge --publish-timeout must be a whole number of 1 or more (0 would time out every publish)", async () => {
    for (const bad of ["0", "2.5", "soon"]) {
      const r = await run([
        "bridge",
        "nats://127.0.0.1:1/a",
        "nats://127.0.0.1:1/b",
        "--publish-timeout",
        bad,
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `--publish-timeout must be a whole number, 1 or more, got "${bad}"`,
      );
    }
  });

  it("send --concurrency must be a whole number of 1 or more (2.5 ran 2 at once)", async () => {
    const r = await run(["send", "nats://127.0.0.1:1/s", "--concurrency", "2.5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--concurrency must be a whole number, 1 or more, got "2.5"');
  });

  it("an AMQP credit or Kafka partitions of 0 is refused when the endpoint is opened", async () => {
    // Credit 0 grants the broker nothing to send: the subscriber waited for ever.
    await expect(openEndpoint("amqp://127.0.0.1:1/queue/q?credit=0")).rejects.toMatchObject({
      code: "MalformedInput",
      message: expect.stringContaining('credit="0" is not an integer of 1 or more'),
    });
    await expect(openEndpoint("kafka://127.0.0.1:1/t?partitions=0")).rejects.toMatchObject({
      code: "MalformedInput",
      message: expect.stringContaining('partitions="0" is not an integer of 1 or more'),
    });
    await expect(openEndpoint("amqp://127.0.0.1:1/queue/q?credit=5")).resolves.toBeDefined();
  });
});

describe("--only", () => {
  it.each(["demo", "conformance"])(
    "%s --only with a transport this build does not know is a usage error naming the known ones",
    async (command) => {
      // It ran no row at all, then said "some paths did not round-trip", exit 1.
      const r = await run([command, "--only", "http,kafak"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        '--only: unknown transport "kafak" (known: http, ws, amqp, mqtt, kafka, nats)',
      );
      const empty = await run([command, "--only", ","]);
      expect(empty.code).toBe(2);
      expect(empty.stderr).toContain("--only needs transports");
    },
  );
});

describe("conformance --report to a path that cannot be written", () => {
  it("is a usage error before the run, and the report is written where it can be", async () => {
    const dir = mkdtempSync(join(tmpdir(), "posthorn-cli-report-"));
    try {
      // It ran every vector first, then failed writing the report (exit 1, ENOENT).
      const missing = join(dir, "no-such-dir", "report.json");
      const r = await run(["conformance", "--only", "http", "--report", missing]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `--report ${missing}: the directory ${join(dir, "no-such-dir")} does not exist`,
      );
      const folder = join(dir, "folder.html");
      mkdirSync(folder);
      const d = await run(["conformance", "--only", "http", "--report", folder]);
      expect(d.code).toBe(2);
      expect(d.stderr).toContain(`--report ${folder} is a directory`);
      const ok = join(dir, "report.json");
      const written = await run(["conformance", "--only", "http", "--report", ok]);
      expect(written.code, written.stderr).toBe(0);
      expect(existsSync(ok)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a broker variable that points at nothing", () => {
  it("is named as the user's own setting, not as one to set", async () => {
    const r = await run(["demo", "--only", "amqp"], { AMQP_URL: "amqp://127.0.0.1:1" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "amqp was asked for and left out: nothing answers at amqp://127.0.0.1:1 (AMQP_URL): is the broker running there?",
    );
    expect(r.stderr).not.toContain("set AMQP_URL");
  });
});

describe("send --event with options that build an event", () => {
  it("is a usage error naming the option, instead of ignoring it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "posthorn-cli-"));
    try {
      const file = join(dir, "events.jsonl");
      writeFileSync(file, '{"specversion":"1.0","id":"1","source":"/s","type":"t"}\n');
      // Before: the file's event was sent without the extension (here: to nothing, exit 1).
      const r = await run(["send", "http://127.0.0.1:1/x", "--event", file, "--ext", "tenant=a"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        "--ext builds an event from options and does not apply to --event",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("posthorn --help", () => {
  it("lists every scheme, with no line ending in spaces", async () => {
    const stdout = new PassThrough();
    let text = "";
    stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    const io = { stdout, stderr: new PassThrough(), stdin: new PassThrough(), env: {} };
    expect(await runCli(["--help"], io)).toBe(0);
    expect(text).toContain("  mqtt:// mqtts:// mqtt+ws:// mqtt+wss://\n");
    expect(text.split("\n").filter((line) => / $/.test(line))).toEqual([]);
  });
});

import { httpPublisher } from "@posthorn/binding-http";
import { isPosthornError } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { shutdownEvent, unencodableEvent } from "@posthorn/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { SENDERS, startServer, type TestServer } from "./servers.js";

// publish(array) against a node:http server: an event that cannot be encoded fails the whole
// call before any request is made.
const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe.each(SENDERS)("over $name", ({ options: sender }) => {
  describe("httpPublisher publish(array)", () => {
    it("rejects with the encoding error and makes no request, in binary, structured and batch mode", async () => {
      let requests = 0;
      const server = await startServer((req, res) => {
        req.resume();
        req.on("end", () => {
          requests++;
          res.writeHead(204).end();
        });
      });
      servers.push(server);
      const invalid = unencodableEvent("http");
      for (const mode of ["binary", "structured", "batch"] as const) {
        const publisher = httpPublisher({
          ...sender,
          url: server.url,
          mode,
          format: json,
          retry: false,
        });
        const err = await publisher
          .publish([shutdownEvent("http", 1), invalid, shutdownEvent("http", 3)])
          .catch((e: unknown) => e);
        expect(isPosthornError(err, "InvalidEvent"), `${mode}: ${String(err)}`).toBe(true);
        await publisher.close();
      }
      expect(requests).toBe(0);
      // The server does count: in binary mode a valid array is one request per event.
      await httpPublisher({
        ...sender,
        url: server.url,
        retry: false,
      }).publish([shutdownEvent("http", 1), shutdownEvent("http", 2)]);
      expect(requests).toBe(2);
    });
  });
});

import {
  AsyncQueue,
  checkChoiceOption,
  checkCountOption,
  checkTimeOption,
  type Delivery,
  EventRouter,
  isCertificateErrorCode,
} from "@posthorn/core";
import { refusedOption } from "@posthorn/testkit";
import { describe, expect, it } from "vitest";

const refused = refusedOption;

describe("checkTimeOption", () => {
  it("passes undefined, 0, fractions and Infinity through", () => {
    for (const ms of [undefined, 0, 0.5, 250, Number.POSITIVE_INFINITY]) {
      expect(checkTimeOption("timeoutMs", ms)).toBe(ms);
    }
  });

  it("refuses NaN, a negative number and anything not a number, naming option and value", () => {
    expect(() => checkTimeOption("timeoutMs", Number.NaN)).toThrow(refused("timeoutMs", "NaN"));
    expect(() => checkTimeOption("closeTimeoutMs", -1)).toThrow(refused("closeTimeoutMs", "-1"));
    expect(() => checkTimeOption("drainTimeoutMs", Number.NEGATIVE_INFINITY)).toThrow(
      refused("drainTimeoutMs", "-Infinity"),
    );
    expect(() => checkTimeOption("timeoutMs", "100" as unknown as number)).toThrow(
      refused("timeoutMs", 'string "100"'),
    );
    expect(() => checkTimeOption("expiresMs", 999, 1000, 60_000)).toThrow(
      refused("expiresMs", "999"),
    );
    expect(() => checkTimeOption("expiresMs", Infinity, 1000, 60_000)).toThrow(
      refused("expiresMs", "Infinity"),
    );
    expect(checkTimeOption("expiresMs", 60_000, 1000, 60_000)).toBe(60_000);
  });
});

describe("checkCountOption", () => {
  it("passes whole numbers from the least value up, and Infinity unless bounded", () => {
    for (const n of [undefined, 1, 7, Number.POSITIVE_INFINITY]) {
      expect(checkCountOption("maxInFlight", n)).toBe(n);
    }
    expect(checkCountOption("maxQueued", 0, 0)).toBe(0);
    expect(checkCountOption("maxMessages", 256, 1, false)).toBe(256);
  });

  it("refuses NaN, fractions, values under the least and Infinity where bounded", () => {
    expect(() => checkCountOption("maxInFlight", 0)).toThrow(refused("maxInFlight", "0"));
    expect(() => checkCountOption("maxInFlight", Number.NaN)).toThrow(
      refused("maxInFlight", "NaN"),
    );
    expect(() => checkCountOption("maxInFlight", 2.5)).toThrow(refused("maxInFlight", "2.5"));
    expect(() => checkCountOption("maxQueued", -1, 0)).toThrow(refused("maxQueued", "-1"));
    expect(() => checkCountOption("maxMessages", Number.POSITIVE_INFINITY, 1, false)).toThrow(
      refused("maxMessages", "Infinity"),
    );
  });
});

describe("checkChoiceOption", () => {
  it("passes undefined and each of the choices", () => {
    for (const acks of [undefined, -1, 0, 1] as const) {
      expect(checkChoiceOption("acks", acks, [-1, 0, 1])).toBe(acks);
    }
  });

  it("refuses anything else, naming the option, the choices and the value", () => {
    for (const [qos, shown] of [
      [3, "3"],
      [-1, "-1"],
      [0.5, "0.5"],
      [Number.NaN, "NaN"],
      ["1", 'string "1"'],
    ] as const) {
      expect(() => checkChoiceOption("qos", qos as unknown as 0 | 1 | 2, [0, 1, 2])).toThrow(
        refused("qos", shown),
      );
    }
    expect(() => checkChoiceOption("qos", 3 as 0, [0, 1, 2])).toThrow(
      "qos must be one of 0, 1, 2, got 3",
    );
  });

  it("takes string choices too, matched exactly, and quotes them in the message", () => {
    expect(checkChoiceOption("mode", "binary", ["binary", "structured"])).toBe("binary");
    for (const [mode, shown] of [
      ["Binary", 'string "Binary"'],
      ["binary ", 'string "binary "'],
      [1, "1"],
    ] as const) {
      expect(() => checkChoiceOption("mode", mode, ["binary", "structured"])).toThrow(
        refused("mode", shown),
      );
    }
    expect(() => checkChoiceOption("mode", "bin", ["binary", "structured"])).toThrow(
      'mode must be one of "binary", "structured", got string "bin"',
    );
  });
});

describe("EventRouter.run concurrency", () => {
  const idle = () => {
    const queue = new AsyncQueue<Delivery>();
    queue.end();
    return queue;
  };

  it("refuses 0, NaN and fractions before reading a delivery", async () => {
    const router = new EventRouter();
    // NaN compared false with the number running, so every delivery ran at once; 0 and
    // negatives were taken as 1.
    for (const [concurrency, shown] of [
      [0, "0"],
      [Number.NaN, "NaN"],
      [-2, "-2"],
      [1.5, "1.5"],
    ] as const) {
      await expect(router.run(idle(), { concurrency })).rejects.toEqual(
        refused("concurrency", shown),
      );
    }
  });

  it("takes Infinity as no limit", async () => {
    await expect(
      new EventRouter().run(idle(), { concurrency: Number.POSITIVE_INFINITY }),
    ).resolves.toBeUndefined();
  });
});

describe("isCertificateErrorCode", () => {
  it("is true for Node's certificate verification codes only", () => {
    for (const code of [
      "DEPTH_ZERO_SELF_SIGNED_CERT",
      "CERT_HAS_EXPIRED",
      "ERR_TLS_CERT_ALTNAME_INVALID",
    ]) {
      expect(isCertificateErrorCode(code)).toBe(true);
    }
    for (const code of ["ECONNREFUSED", "ECONNRESET", "EPROTO", "", undefined, 7, null]) {
      expect(isCertificateErrorCode(code)).toBe(false);
    }
  });
});

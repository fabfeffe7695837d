import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { topicMatches } from "../src/index.js";

// The examples of MQTT 5.0 section 4.7 (topic names and filters), and the `$` rule of 4.7.2.
const cases: Array<[filter: string, topic: string, matches: boolean]> = [
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/#", "sport", true],
  ["#", "sport/tennis", true],
  ["#", "/", true],
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player2", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["+/+", "/finance", true],
  ["/+", "/finance", true],
  ["+", "/finance", false],
  ["+", "finance", true],
  ["#", "$SYS/broker/load", false],
  ["+/monitor/Clients", "$SYS/monitor/Clients", false],
  ["$SYS/#", "$SYS/broker/load", true],
  ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
  // No wildcard: the topic name itself, case-sensitive, level for level.
  ["orders/created", "orders/created", true],
  ["orders/created", "orders/created/", false],
  ["orders/created", "orders", false],
  ["orders/created", "Orders/created", false],
  ["orders/created", "orders/created/eu", false],
  // A shared subscription's `$share/<group>/` prefix is not part of the filter.
  ["$share/workers/orders/+", "orders/created", true],
  ["$share/workers/orders/created", "orders/created", true],
  ["$share/workers/orders/created", "$share/workers/orders/created", false],
  ["$share/workers/#", "$SYS/broker", false],
];

describe("topicMatches", () => {
  it.each(cases)("%s against %s is %s", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  // An independent reading of the rules: the filter as a regular expression.
  const reference = (filter: string, topic: string): boolean => {
    const f = filter.startsWith("$share/") ? filter.split("/").slice(2).join("/") : filter;
    if (topic.startsWith("$") && (f.startsWith("+") || f.startsWith("#"))) return false;
    const pattern = f
      .split("/")
      .map((level, i) => {
        if (level === "#") return i === 0 ? ".*" : "(?:/.*)?";
        const part = level === "+" ? "[^/]*" : level.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        return i === 0 ? part : `/${part}`;
      })
      .join("");
    return new RegExp(`^${pattern}$`).test(topic);
  };

  it("agrees with a regular-expression reading of the rules on random filters and topics", () => {
    const level = fc.constantFrom("a", "b", "", "$x");
    const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join("/"));
    const filterLevel = fc.constantFrom("a", "b", "", "+", "$x");
    const filter = fc
      .tuple(fc.array(filterLevel, { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([levels, multi]) => (multi ? [...levels, "#"] : levels).join("/"));
    fc.assert(
      fc.property(filter, topic, (f, t) => {
        expect(topicMatches(f, t)).toBe(reference(f, t));
      }),
      { numRuns: 2000 },
    );
  });
});

import type { Row } from "./lib.ts";

const xmlEscape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A horizontal bar chart of ratios (ours / baseline) for rows that have one, grouped, with the
 * 1x parity line and each row's goal marked. Returns SVG text.
 */
export function ratioChart(title: string, rows: readonly Row[]): string {
  const withRatio = rows.filter((r) => r.ratio !== undefined);
  const labelWidth = 430;
  const barWidth = 420;
  const rowHeight = 22;
  const top = 40;
  const maxRatio = Math.max(2, ...withRatio.map((r) => Math.max(r.ratio ?? 0, r.goal ?? 0))) * 1.1;
  const x = (ratio: number) =>
    labelWidth + (Math.log10(1 + ratio) / Math.log10(1 + maxRatio)) * barWidth;
  const parts: string[] = [];
  let y = top;
  let group = "";
  for (const r of withRatio) {
    if (r.group !== group) {
      group = r.group;
      y += 8;
      parts.push(`<text x="8" y="${y + 14}" font-weight="bold">${xmlEscape(group)}</text>`);
      y += rowHeight;
    }
    const ratio = r.ratio as number;
    const fill = r.goal === undefined ? "#5c7fa3" : ratio >= r.goal ? "#2e7d32" : "#c62828";
    parts.push(
      `<text x="20" y="${y + 15}">${xmlEscape(r.name)}</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${(x(ratio) - labelWidth).toFixed(1)}" height="${rowHeight - 6}" fill="${fill}"/>`,
      `<text x="${(x(ratio) + 4).toFixed(1)}" y="${y + 15}">${ratio.toFixed(2)}x</text>`,
    );
    if (r.goal !== undefined) {
      parts.push(
        `<line x1="${x(r.goal).toFixed(1)}" x2="${x(r.goal).toFixed(1)}" y1="${y + 1}" y2="${y + rowHeight - 1}" stroke="#000" stroke-dasharray="3,2"/>`,
      );
    }
    y += rowHeight;
  }
  const height = y + 30;
  const width = labelWidth + barWidth + 80;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="20" font-size="15" font-weight="bold">${xmlEscape(title)}</text>`,
    `<line x1="${x(1).toFixed(1)}" x2="${x(1).toFixed(1)}" y1="${top}" y2="${y}" stroke="#888"/>`,
    `<text x="${(x(1) - 10).toFixed(1)}" y="${y + 16}" fill="#555">1x</text>`,
    ...parts,
    `<text x="8" y="${height - 6}" fill="#555">bar: Posthorn / baseline in the same run (log scale); dashed: goal; green: goal met, red: missed, blue: no goal</text>`,
    "</svg>",
  ].join("\n");
}

/**
 * Grouped horizontal bars of latency percentiles (p50 and p99, ms) for rows whose `extra` has
 * `p50Ms`/`p99Ms`: Posthorn and the raw client for each transport. Returns SVG text.
 */
export function latencyChart(title: string, rows: readonly Row[]): string {
  const withLatency = rows.filter((r) => r.ours.extra?.p50Ms !== undefined);
  const labelWidth = 430;
  const barWidth = 420;
  const rowHeight = 18;
  const top = 40;
  const values = withLatency.flatMap((r) => [
    r.ours.extra?.p99Ms ?? 0,
    r.baseline?.extra?.p99Ms ?? 0,
  ]);
  const max = Math.max(1, ...values) * 1.1;
  const x = (ms: number) => labelWidth + (Math.log10(1 + ms) / Math.log10(1 + max)) * barWidth;
  const parts: string[] = [];
  let y = top;
  for (const r of withLatency) {
    y += 8;
    parts.push(
      `<text x="8" y="${y + 14}" font-weight="bold">${xmlEscape(`${r.group.replace(/^latency: /, "")}: ${r.name}`)}</text>`,
    );
    y += rowHeight;
    const sides: [string, Readonly<Record<string, number>> | undefined, string][] = [
      ["posthorn", r.ours.extra, "#1565c0"],
      [r.baseline?.label ?? "raw", r.baseline?.extra, "#9e9e9e"],
    ];
    for (const [label, extra, color] of sides) {
      if (!extra) continue;
      for (const p of ["p50Ms", "p99Ms"] as const) {
        const v = extra[p] ?? 0;
        parts.push(
          `<text x="20" y="${y + 13}">${xmlEscape(`${label} ${p.slice(0, 3)}`)}</text>`,
          `<rect x="${labelWidth}" y="${y + 3}" width="${(x(v) - labelWidth).toFixed(1)}" height="${rowHeight - 6}" fill="${color}" opacity="${p === "p50Ms" ? 1 : 0.6}"/>`,
          `<text x="${(x(v) + 4).toFixed(1)}" y="${y + 13}">${v.toFixed(2)} ms</text>`,
        );
        y += rowHeight;
      }
    }
  }
  const height = y + 30;
  const width = labelWidth + barWidth + 90;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="20" font-size="15" font-weight="bold">${xmlEscape(title)}</text>`,
    ...parts,
    `<text x="8" y="${height - 6}" fill="#555">end-to-end latency at a fixed rate, milliseconds (log scale); blue: Posthorn, grey: raw client</text>`,
    "</svg>",
  ].join("\n");
}

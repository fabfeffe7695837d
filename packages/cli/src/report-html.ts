import type { ConformanceReport } from "./conformance-run.js";

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

function pretty(text: string | undefined): string {
  if (text === undefined) return "(nothing)";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/**
 * The conformance report as one self-contained HTML page (no scripts, no external assets): the
 * matrix in colour at the top, then every failure as an expandable section with the vector, what
 * was sent and what came back.
 */
export function renderHtmlReport(report: ConformanceReport): string {
  const s = report.summary;
  const ok = s.failed === 0 && s.cells > 0;
  const header = report.columns.map((c) => `<th>${esc(c)}</th>`).join("");
  const rows = report.rows
    .map((row) => {
      const cells = report.columns
        .map((col) => {
          const cell = row.cells.find((c) => c.path === col);
          if (!cell) return `<td class="na" title="this binding has no such path">—</td>`;
          const cls = cell.error || cell.failed > 0 ? "fail" : "pass";
          const anchor = `${row.binding}-${col}`.replace(/[^a-z0-9]+/gi, "-");
          const text = cell.error ? "error" : `${cell.passed}/${cell.passed + cell.failed}`;
          const title = `${cell.passed} passed, ${cell.failed} failed, ${cell.skipped} skipped`;
          const inner = cls === "fail" ? `<a href="#${anchor}">${text}</a>` : text;
          return `<td class="${cls}" title="${esc(title)}">${inner}${cell.skipped ? `<small> (${cell.skipped} skipped)</small>` : ""}</td>`;
        })
        .join("");
      return `<tr><th scope="row">${esc(row.binding)}<small>${esc(row.backend)}</small></th>${cells}</tr>`;
    })
    .join("\n");
  const failures = report.rows
    .flatMap((row) =>
      row.cells
        .filter((cell) => cell.error || cell.failed > 0)
        .map((cell) => {
          const anchor = `${row.binding}-${cell.path}`.replace(/[^a-z0-9]+/gi, "-");
          const items = cell.outcomes
            .filter((o) => o.status === "fail")
            .map(
              (
                o,
              ) => `<details><summary><code>${esc(o.vector)}</code> (${o.kind}): ${esc(o.reason ?? "")}</summary>
<div class="pair"><div><h4>sent</h4><pre>${esc(pretty(o.sent))}</pre></div><div><h4>came back</h4><pre>${esc(pretty(o.received))}</pre></div></div></details>`,
            )
            .join("\n");
          return `<section id="${anchor}"><h3>${esc(row.binding)} · ${esc(cell.path)}</h3>${cell.error ? `<p class="err">${esc(cell.error)}</p>` : ""}${items}</section>`;
        }),
    )
    .join("\n");
  const unavailable = report.unavailable
    .map((u) => `<li><strong>${esc(u.label)}</strong>: ${esc(u.reason)}</li>`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Posthorn conformance: ${ok ? "all green" : `${s.failed} failed`}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1d2228}
h1{margin:0 0 .25rem}.sub{color:#5b6570;margin:0 0 1.5rem}
.verdict{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600;color:#fff;background:${ok ? "#1f883d" : "#cf222e"}}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border:1px solid #d0d7de;padding:.45rem .6rem;text-align:center}
th[scope=row]{text-align:left;white-space:nowrap}th small{display:block;font-weight:400;color:#5b6570;font-size:.75rem}
td.pass{background:#dafbe1;color:#116329;font-weight:600}td.fail{background:#ffebe9;color:#a40e26;font-weight:700}
td.na{background:#f6f8fa;color:#8c959f}td small{font-weight:400;color:#5b6570}td a{color:inherit}
details{border:1px solid #d0d7de;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}summary{cursor:pointer}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.8rem}pre{background:#f6f8fa;padding:.6rem;overflow:auto;max-height:24rem;font-size:.8rem}
.err{color:#a40e26}
</style></head><body>
<h1>Posthorn conformance <span class="verdict">${ok ? "all green" : `${s.failed} failed`}</span></h1>
<p class="sub">${report.vectors.valid} valid and ${report.vectors.invalid} invalid vectors over every binding × mode × format ·
${s.greenCells} of ${s.cells} cells green · ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped ·
${esc(report.startedAt)} · ${(report.durationMs / 1000).toFixed(1)} s</p>
<table><thead><tr><th>binding</th>${header}</tr></thead><tbody>
${rows}
</tbody></table>
${unavailable ? `<h2>Left out</h2><ul>${unavailable}</ul>` : ""}
${failures ? `<h2>Failures</h2>${failures}` : "<p>No failures.</p>"}
</body></html>
`;
}

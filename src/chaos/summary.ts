/** The chaos runner's summary: one row per run, then the totals. */
import type { RunResult } from "./run.js";

function faultText(r: Pick<RunResult, "faults">): string {
  const kinds = [...new Set([...Object.keys(r.faults.applied), ...Object.keys(r.faults.refused)])].sort();
  if (kinds.length === 0) return "none";
  return kinds.map((k) => {
    const refused = r.faults.refused[k] ?? 0;
    return `${k} ${r.faults.applied[k] ?? 0}${refused > 0 ? ` (+${refused} refused)` : ""}`;
  }).join(", ");
}

const yesNo = (r: RunResult) => (r.verdict === "linearizable" ? "yes" : r.verdict === "not-linearizable" ? "NO" : "unknown");

export function formatSummary(results: RunResult[]): string {
  const header = ["run", "seed", "ops ok", "failed", "indeterminate", "linearizable", "versions grow", "session reads", "sessions hold", "acked writes", "lost", "faults"];
  const rows = results.map((r, i) => [String(i + 1), String(r.seed), String(r.ops.ok), String(r.ops.fail), String(r.ops.info), yesNo(r),
    r.versionRegressions === 0 ? "yes" : `NO (${r.versionRegressions})`, String(r.sessions.reads), r.sessions.violations === 0 ? "yes" : `NO (${r.sessions.violations})`,
    String(r.acked), String(r.lost.length), faultText(r)]);
  const sum = (f: (r: RunResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const total = { faults: { applied: {} as Record<string, number>, refused: {} as Record<string, number> } };
  for (const r of results) {
    for (const [k, n] of Object.entries(r.faults.applied)) total.faults.applied[k] = (total.faults.applied[k] ?? 0) + n;
    for (const [k, n] of Object.entries(r.faults.refused)) total.faults.refused[k] = (total.faults.refused[k] ?? 0) + n;
  }
  const lin = (v: RunResult["verdict"]) => results.filter((r) => r.verdict === v).length;
  rows.push(["all", "", String(sum((r) => r.ops.ok)), String(sum((r) => r.ops.fail)), String(sum((r) => r.ops.info)),
    `${lin("linearizable")}/${results.length}`, `${results.filter((r) => r.versionRegressions === 0).length}/${results.length}`,
    String(sum((r) => r.sessions.reads)), `${results.filter((r) => r.sessions.violations === 0).length}/${results.length}`, String(sum((r) => r.acked)), String(sum((r) => r.lost.length)), faultText(total)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ");
  const out = [line(header), ...rows.map(line)];
  const notes: string[] = [];
  if (lin("unknown") > 0) notes.push(`${lin("unknown")} run(s) without a linearizability verdict in time (raise --check-timeout)`);
  const unverified = sum((r) => r.unverified);
  if (unverified > 0) notes.push(`${unverified} acknowledged write(s) could not be read back in time`);
  const missed = sum((r) => r.missedByScan);
  if (missed > 0) notes.push(`${missed} acknowledged write(s) missing from the collection scan but found by id`);
  return [...out, ...notes].join("\n");
}

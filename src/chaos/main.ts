/**
 * `npm run chaos -- [--time 60] [--runs 1] [--nemesis kill,pause,partition,split,merge,transfer,netns]
 * [--seed 7] [--bug eventual-reads] [--out-dir DIR] [--check-timeout 30] [--verbose]`
 *
 * Fault tests on real processes (REQUIREMENTS VER-3), with sessions held to read-your-writes and
 * monotonic reads (DATA-4). Run k uses seed + k - 1; the seed is printed so
 * a failing run can be repeated as closely as real processes allow. Exit status: 0 every run
 * linearizable with no acknowledged write lost and no session read going back; 1 a violation (history written to a named file);
 * 2 bad arguments; 3 no violation found but some check gave no verdict in time.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { NEMESIS_KINDS, type NemesisKind, netnsUnavailable } from "./nemesis.js";
import { DEFAULT_RUN, type RunResult, runChaos } from "./run.js";
import { formatSummary } from "./summary.js";
import { CLIENT_BUGS, type ClientBug } from "./workload.js";


function usage(message: string): never {
  console.error(`chaos: ${message}`);
  process.exit(2);
}

function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) usage(`--${name} must be a positive number, got ${JSON.stringify(text)}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      time: { type: "string", default: "60" },
      runs: { type: "string", default: "1" },
      nemesis: { type: "string", default: "kill,pause,partition,split,merge,transfer,netns" },
      seed: { type: "string" },
      bug: { type: "string", default: "none" },
      "out-dir": { type: "string", default: join(tmpdir(), "shoal-chaos-failures") },
      "check-timeout": { type: "string", default: "60" },
      verbose: { type: "boolean", short: "v", default: false },
    },
    strict: true,
  });
  const timeMs = positive("time", values.time) * 1000;
  const runs = positive("runs", values.runs);
  if (!Number.isInteger(runs) || runs > 1000) usage("--runs must be an integer from 1 to 1000");
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) usage(`--seed must be a non-negative integer, got ${JSON.stringify(values.seed)}`);
  const nemesis = values.nemesis === "" || values.nemesis === "none" ? [] : values.nemesis.split(",").map((s) => s.trim());
  for (const k of nemesis) if (!(NEMESIS_KINDS as readonly string[]).includes(k)) usage(`unknown nemesis ${JSON.stringify(k)} (known: ${NEMESIS_KINDS.join(", ")})`);
  if (!(CLIENT_BUGS as readonly string[]).includes(values.bug)) usage(`unknown --bug ${JSON.stringify(values.bug)} (known: ${CLIENT_BUGS.join(", ")})`);
  const checkTimeoutMs = positive("check-timeout", values["check-timeout"]) * 1000;

  if (nemesis.includes("netns")) {
    const why = netnsUnavailable();
    if (why !== null) {
      console.log(`nemesis netns skipped: ${why}`);
      nemesis.splice(nemesis.indexOf("netns"), 1);
    }
  }
  console.log(`chaos: ${runs} run(s) of ${timeMs / 1000} s, nemesis ${nemesis.join(",") || "none"}, seed ${seed}${values.bug !== "none" ? `, deliberate bug ${values.bug}` : ""}`);
  const results: RunResult[] = [];
  for (let k = 0; k < runs; k++) {
    const runSeed = seed + k;
    const r = await runChaos({
      ...DEFAULT_RUN, seed: runSeed, timeMs, nemesis: nemesis as NemesisKind[], bug: values.bug as ClientBug, checkTimeoutMs,
      outDir: values["out-dir"],
    });
    results.push(r);
    const ops = r.ops.ok + r.ops.fail + r.ops.info;
    console.log(`run ${k + 1} (seed ${runSeed}): ${r.verdict}, ${r.versionRegressions} version regressions, ${r.sessions.violations} of ${r.sessions.reads} session reads went back, ${ops} ops, ${r.acked} acknowledged writes, ${r.lost.length} lost, ${(r.wallMs / 1000).toFixed(1)} s`);
    if (values.verbose) {
      for (const line of r.timeline) console.log(`  ${line}`);
      console.log(`  outcomes other than ok: ${[...r.reasons].sort((a, b) => b[1] - a[1]).map(([why, n]) => `${why} x${n}`).join(", ") || "none"}`);
    }
    for (const line of r.failure) console.log(`  ${line}`);
    for (const line of r.crashed) console.log(`  ${line}`);
    if (r.historyFile !== null) console.log(`  history written to ${r.historyFile} (shoal check-history ${r.historyFile} --model kv)`);
  }
  console.log(formatSummary(results));
  const violation = results.some((r) => r.verdict === "not-linearizable" || r.lost.length > 0 || r.crashed.length > 0 || !r.recovered || r.versionRegressions > 0 || r.sessions.violations > 0);
  if (violation) return 1;
  return results.some((r) => r.verdict === "unknown" || r.unverified > 0) ? 3 : 0;
}

// Ctrl-C or a kill of the runner: exit through process.exit, so each run's exit hook kills its nodes.
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

main().then((code) => process.exit(code), (e: unknown) => {
  console.error(`chaos: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});

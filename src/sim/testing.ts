/** Helpers for simulator tests. */
import { type SimOptions, type SimResult, runSeed } from "./simulation.js";

/** Runs seeds [first, first + count) and returns the failures, each with its replay command. */
export function runSeeds(first: number, count: number, opts: Omit<SimOptions, "seed"> = {}): SimResult[] {
  const failures: SimResult[] = [];
  for (let seed = first; seed < first + count; seed++) {
    const r = runSeed({ ...opts, seed });
    if (!r.ok) failures.push(r);
  }
  return failures;
}

export function describeFailures(failures: SimResult[]): string {
  return failures
    .map((f) => `seed ${f.seed} (${f.setup}) at ${f.failedAtMs} ms: ${f.failure}\n  replay: npm run sim -- --seeds 1 --first-seed ${f.seed} --verbose`)
    .join("\n");
}

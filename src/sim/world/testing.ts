/** Helpers for node-world tests. */
import type { NodeMutation } from "../../node/mutations.js";
import { type NodeWorldResult, runNodeWorld } from "./world.js";

/** Runs seeds [first, first + count) and returns the failures. */
export async function runWorldSeeds(first: number, count: number, mutation?: NodeMutation, stopAtFirst = false): Promise<NodeWorldResult[]> {
  const failures: NodeWorldResult[] = [];
  for (let seed = first; seed < first + count; seed++) {
    const r = await runNodeWorld({ seed, ...(mutation !== undefined ? { mutation } : {}) });
    if (!r.ok) {
      failures.push(r);
      if (stopAtFirst) break;
    }
  }
  return failures;
}

export function describeWorldFailures(failures: readonly NodeWorldResult[]): string {
  return failures.map((f) => `seed ${f.seed}: ${f.violation}\n  replay: npx shoal sim --world node --seeds 1 --first-seed ${f.seed} --verbose`).join("\n");
}

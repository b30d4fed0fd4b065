/** `shoal sim`: runs the deterministic simulator over a range of seeds and reports violations. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Mutations } from "../raft/index.js";
import { type SimResult, runSeed } from "../sim/index.js";
import type { FaultProfile } from "../sim/nemesis.js";

export interface SimCommandOptions {
  seeds: string;
  firstSeed: string;
  steps: string;
  nodes: string;
  mutation?: string;
  profile?: FaultProfile;
  historyDir?: string;
  verbose?: boolean;
}

const MUTATIONS: Record<string, keyof Mutations> = {
  "commit-previous-term": "commitPreviousTermByCount",
  "ack-before-persist": "ackBeforePersist",
  "double-vote": "grantTwoVotesInTerm",
  "read-without-quorum": "readIndexWithoutQuorum",
};

/** An integer flag of at least `min`, or a message naming the flag. */
export function int(name: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

export function replayCommand(seed: number, opts: SimCommandOptions): string {
  const extra = [
    opts.steps !== "20000" ? ` --steps ${opts.steps}` : "",
    opts.nodes !== "0" ? ` --nodes ${opts.nodes}` : "",
    opts.mutation !== undefined ? ` --mutation ${opts.mutation}` : "",
    opts.profile !== undefined ? ` --profile ${opts.profile}` : "",
  ].join("");
  return `npm run sim -- --seeds 1 --first-seed ${seed}${extra} --verbose`;
}

export async function simCommand(opts: SimCommandOptions): Promise<number> {
  let seeds: number, first: number, steps: number, nodes: number;
  try {
    seeds = int("seeds", opts.seeds, 1);
    first = int("first-seed", opts.firstSeed, 0);
    steps = int("steps", opts.steps, 1000);
    nodes = int("nodes", opts.nodes, 0);
    if (nodes !== 0 && nodes !== 3 && nodes !== 5) throw new Error("--nodes must be 3 or 5 (or 0 for chosen by seed)");
  } catch (e) {
    console.error(`sim: ${(e as Error).message}`);
    return 2;
  }
  const mutations: Mutations = {};
  if (opts.mutation !== undefined) {
    const key = MUTATIONS[opts.mutation];
    if (key === undefined) {
      console.error(`sim: unknown mutation ${opts.mutation} (one of ${Object.keys(MUTATIONS).join(", ")})`);
      return 2;
    }
    mutations[key] = true;
  }
  const chaosMs = Math.round(steps * 0.6);
  const healMs = steps - chaosMs;
  const started = Date.now();
  const failures: SimResult[] = [];
  const totals = { operations: 0, acks: 0, crashes: 0, partitions: 0, membership: 0, transfers: 0, snapshots: 0, messages: 0, events: 0 };
  let lastProgress = started;
  let recoveryMsMax = 0;
  const recoveries: number[] = [];
  for (let seed = first; seed < first + seeds; seed++) {
    const r = runSeed({ seed, chaosMs, healMs, nodes, mutations, ...(opts.profile ? { profile: opts.profile } : {}), keepHistory: opts.historyDir !== undefined });
    totals.operations += r.stats.operations;
    totals.acks += r.stats.acknowledgedWrites;
    totals.crashes += r.stats.crashes;
    totals.partitions += r.stats.partitions;
    totals.membership += r.stats.membershipChanges;
    totals.transfers += r.stats.leaderTransfers;
    totals.snapshots += r.stats.snapshotsInstalled;
    totals.messages += r.stats.messagesSent;
    totals.events += r.stats.events;
    if (r.stats.recoveryMs !== null) {
      recoveries.push(r.stats.recoveryMs);
      recoveryMsMax = Math.max(recoveryMsMax, r.stats.recoveryMs);
    }
    if (opts.historyDir !== undefined && r.history !== null) {
      mkdirSync(opts.historyDir, { recursive: true });
      writeFileSync(join(opts.historyDir, `seed-${seed}.jsonl`), r.history);
    }
    if (opts.verbose) {
      const s = r.stats;
      console.log(`seed ${seed}: ${r.ok ? "ok" : "FAILED"} — ${r.setup}; ${s.operations} ops (${s.acknowledgedWrites} acked writes), ` +
        `${s.crashes} crashes, ${s.partitions} partitions, ${s.membershipChanges} membership changes, ` +
        `${s.leaderTransfers} transfers, ${s.snapshotsInstalled} snapshots installed, term ${s.maxTerm}, commit ${s.finalCommit}, ` +
        `recovered ${s.recoveryMs === null ? "never" : `${Math.round(s.recoveryMs)} ms`} after healing`);
    }
    if (!r.ok) {
      failures.push(r);
      console.log(`seed ${seed} FAILED at ${r.failedAtMs} ms: ${r.failure}`);
      console.log(`  setup: ${r.setup}`);
      console.log(`  replay: ${replayCommand(seed, opts)}`);
    } else if (!opts.verbose && Date.now() - lastProgress > 5000) {
      lastProgress = Date.now();
      console.log(`… ${seed - first + 1}/${seeds} seeds, ${failures.length} failed`);
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`sim: ${seeds} seeds (${first}..${first + seeds - 1}), ${failures.length} failed, ${secs} s; ` +
    `${totals.operations} client ops, ${totals.acks} acked writes, ${totals.crashes} crashes, ${totals.partitions} partitions, ` +
    `${totals.membership} membership changes, ${totals.transfers} leader transfers, ${totals.snapshots} snapshots installed, ` +
    `${totals.messages} messages, ${totals.events} events`);
  if (recoveries.length > 0) {
    recoveries.sort((a, b) => a - b);
    const p50 = recoveries[Math.floor(recoveries.length * 0.5)]!;
    const p99 = recoveries[Math.min(recoveries.length - 1, Math.floor(recoveries.length * 0.99))]!;
    console.log(`sim: after healing, a leader committed in its term within ${p50.toFixed(0)} ms (p50), ` +
      `${p99.toFixed(0)} ms (p99), ${recoveryMsMax.toFixed(0)} ms (max) of simulated time (10 ms ticks)`);
  }
  return failures.length === 0 ? 0 : 1;
}

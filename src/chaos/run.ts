/**
 * One chaos run: a fresh 3-node cluster of real processes, register and durability clients through
 * every node's gateway, faults from the nemesis for `timeMs`, then everything healed, the acknowledged
 * writes read back and the history checked for linearizability (kv model, one partition per key).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CheckResult, type SessionVerdict, checkOperations, checkSessions, describeOperation, kvModel, operationsFromEvents } from "../check/index.js";
import { ProcCluster, keepShardCount } from "./cluster.js";
import { HistoryRecorder, versionRegressions } from "../check/index.js";
import { type FaultCounts, Nemesis, type NemesisKind } from "./nemesis.js";
import { type ClientBug, DurabilityClient, RegisterClient, SessionClient, type WorkloadOptions, verifyDurability } from "./workload.js";

export interface RunOptions {
  seed: number;
  timeMs: number;
  nemesis: NemesisKind[];
  bug: ClientBug;
  /** Register clients per node, and durability clients per node. */
  registerClientsPerNode: number;
  durabilityClientsPerNode: number;
  /** Sessions (each spreads its operations over every node). */
  sessions: number;
  clientTimeoutMs: number;
  opIntervalMs: number;
  keysPerGeneration: number;
  keyLifeMs: number;
  holdMs: [number, number];
  gapMs: [number, number];
  checkTimeoutMs: number;
  /** Where a failing run's history (and its fault timeline) is written. */
  outDir: string;
}

export const DEFAULT_RUN: Omit<RunOptions, "seed" | "outDir"> = {
  timeMs: 20_000,
  nemesis: ["kill", "pause", "partition"],
  bug: "none",
  registerClientsPerNode: 2,
  durabilityClientsPerNode: 1,
  sessions: 3,
  clientTimeoutMs: 4_000,
  opIntervalMs: 10,
  keysPerGeneration: 3,
  keyLifeMs: 5_000,
  holdMs: [1_000, 4_000],
  gapMs: [500, 2_000],
  checkTimeoutMs: 30_000,
};

export interface RunResult {
  seed: number;
  /** Session reads checked, and those that went back on the session's writes or earlier reads (check/sessions.ts). */
  sessions: SessionVerdict;
  /** Operations that saw (or answered) a lower version of a record than one ended before they began. */
  versionRegressions: number;
  /** Whether every node was ready again within RECOVERY_TIMEOUT_MS of healing every fault. */
  recovered: boolean;
  faults: FaultCounts;
  ops: { ok: number; fail: number; info: number };
  verdict: CheckResult["verdict"];
  /** Why the history is not linearizable (the key and the operations that could not be placed). */
  failure: string[];
  acked: number;
  lost: string[];
  unverified: number;
  missedByScan: number;
  /** Node processes that exited without the nemesis killing them. */
  crashed: string[];
  historyFile: string | null;
  /** Why operations failed or ended unknown, with counts. */
  reasons: Map<string, number>;
  /** The faults as they happened, with times since the clients started. */
  timeline: string[];
  wallMs: number;
}

const SIZE = 3;
const RECOVERY_TIMEOUT_MS = 60_000;
const SHARDS = 2;

export async function runChaos(o: RunOptions): Promise<RunResult> {
  const wallStart = Date.now();
  // The `netns` nemesis wants every node in a network namespace of its own (the caller checked it can).
  const c = await ProcCluster.start(SIZE, SHARDS, 60_000, o.nemesis.includes("netns"));
  const onExit = () => c.abandonSync();
  process.once("exit", onExit);
  try {
    // Only the nemesis changes the shard map: the placement driver's own splits and merges would make
    // a run's shard operations depend on load and timing rather than on the seed.
    await keepShardCount(c.url(1, ""), "chaos: no automatic reshaping");

    const t0 = performance.now();
    const elapsedMs = () => performance.now() - t0;
    const rec = new HistoryRecorder(() => performance.now() - t0);
    const w: WorkloadOptions = { clientTimeoutMs: o.clientTimeoutMs, opIntervalMs: o.opIntervalMs, keysPerGeneration: o.keysPerGeneration, keyLifeMs: o.keyLifeMs, bug: o.bug };
    const registers: RegisterClient[] = [];
    const durables: DurabilityClient[] = [];
    const clientsTotal = SIZE * o.registerClientsPerNode;
    for (let i = 0; i < clientsTotal; i++) registers.push(new RegisterClient(i + 1, (i % SIZE) + 1, clientsTotal, o.seed, c, rec, w, elapsedMs));
    for (let i = 0; i < SIZE * o.durabilityClientsPerNode; i++) durables.push(new DurabilityClient(i + 1, (i % SIZE) + 1, c, w));
    const sessions = Array.from({ length: o.sessions }, (_, i) => new SessionClient(i + 1, c.ids, o.seed, c, w, elapsedMs));
    const nemesis = new Nemesis(c, { kinds: o.nemesis, seed: o.seed, holdMs: o.holdMs, gapMs: o.gapMs }, elapsedMs);

    const stop = () => elapsedMs() >= o.timeMs;
    await Promise.all([
      ...registers.map((cl) => cl.run(stop)),
      ...durables.map((cl) => cl.run(stop)),
      ...sessions.map((cl) => cl.run(stop)),
      nemesis.run(stop),
    ]);
    await nemesis.healAll();
    // A cluster that does not come back once every fault is healed fails the run, but its history is still checked.
    const unrecovered = await c.waitReady(c.ids, RECOVERY_TIMEOUT_MS).then(() => null, (e: Error) => e.message);
    const crashed = [...c.crashes];

    const durability = await verifyDurability(c, 1, durables, 60_000);
    const history = rec.history();
    const ops = operationsFromEvents(history);
    const deadline = Date.now() + o.checkTimeoutMs;
    const check = checkOperations(kvModel, ops, { shouldStop: () => Date.now() > deadline });
    const failure: string[] = [];
    if (check.failure !== null) {
      failure.push(`key ${JSON.stringify(check.failure.key)}: the longest linearizable prefix ends with`);
      for (const op of check.failure.longestPrefix.slice(-4)) failure.push(`  ${describeOperation(op)}`);
      failure.push("and none of these can come next:");
      for (const op of check.failure.stuck.slice(0, 6)) failure.push(`  ${describeOperation(op)}`);
    }
    if (unrecovered !== null) failure.push(`after healing: ${unrecovered}`);
    const versions = versionRegressions(rec.versions);
    for (const line of versions.examples) failure.push(`version regression: ${line}`);
    const sessionVerdict = checkSessions(sessions.flatMap((cl) => cl.ops));
    for (const line of sessionVerdict.examples) failure.push(`session: ${line}`);
    const bad = versions.count > 0 || sessionVerdict.violations > 0 || check.verdict !== "linearizable" || durability.lost.length > 0 || crashed.length > 0 || unrecovered !== null;
    let historyFile: string | null = null;
    if (bad) {
      mkdirSync(o.outDir, { recursive: true });
      const prefix = join(o.outDir, `chaos-seed${o.seed}-${Date.now()}`);
      historyFile = `${prefix}.jsonl`;
      writeFileSync(historyFile, rec.jsonLines());
      // What the faults were and what went wrong, next to the history; the nodes' logs as well.
      writeFileSync(`${prefix}.faults.txt`, [...nemesis.timeline, ...failure, ...durability.lost.map((k) => `lost: ${k}`), ...crashed].join("\n") + "\n");
      c.saveLogs(prefix);
    }
    return {
      seed: o.seed, recovered: unrecovered === null, versionRegressions: versions.count, sessions: sessionVerdict, faults: nemesis.counts, ops: { ...rec.counts }, verdict: check.verdict, failure,
      acked: durability.acked, lost: durability.lost, unverified: durability.unverified, missedByScan: durability.missedByScan,
      crashed, historyFile, reasons: rec.reasons, timeline: nemesis.timeline, wallMs: Date.now() - wallStart,
    };
  } finally {
    process.removeListener("exit", onExit);
    await c.destroy();
  }
}

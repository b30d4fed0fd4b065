/**
 * The node world (`shoal sim --world node`): 3 to 5 real nodes — the production multi-raft host,
 * gateway, membership, shard agent and placement driver — on simulated hosts (scheduler.ts: virtual
 * time; network.ts; disk.ts), driven by one seed. Clients write and read through the gateways of
 * different nodes while the nemesis crashes nodes, cuts the network, fails disks, jumps clocks and runs
 * operators; checks run between events (world-checks.ts). Then everything heals, and the run must end
 * whole: every shard led and fully replicated, every acknowledged write readable, the history
 * linearizable (check/) and versions only growing. The same seed replays the same run exactly.
 */
import { HistoryRecorder, checkOperations, kvModel, operationsFromEvents, versionRegressions } from "../../check/index.js";
import type { NodeMutation } from "../../node/mutations.js";
import { RemovedFromClusterError } from "../../node/group.js";
import { Rng } from "../../util/rng.js";
import { InjectedDiskFault } from "./disk.js";
import { type Answered, DurabilityClient, RegisterClient, withTimeout } from "./clients.js";
import type { StoredRecord } from "../../node/records.js";
import { assert } from "../../util/assert.js";
import { SimNetwork } from "./network.js";
import { SimScheduler } from "./scheduler.js";
import { WorldChecks, WorldViolation } from "./world-checks.js";
import { WorldNemesis } from "./world-nemesis.js";
import { WorldNode } from "./world-node.js";

export interface NodeWorldOptions {
  seed: number;
  /** 3 to 5; 0 lets the seed choose. */
  nodes?: number;
  /** Shards of the default collection at the start. */
  shards?: number;
  /** Virtual time of clients and faults, then of healing. */
  chaosMs?: number;
  healMs?: number;
  mutation?: NodeMutation;
  registerClients?: number;
  keys?: number;
}

export interface NodeWorldStats {
  nodes: number;
  events: number;
  virtualMs: number;
  operations: number;
  acknowledgedWrites: number;
  historyOperations: number;
  checks: number;
  /** Reads of acknowledged writes after healing that had to be asked again. */
  readBackRetries: number;
  /** Faults and operators by kind (refused operators counted apart). */
  nemesis: Record<string, number>;
}

export interface NodeWorldResult {
  seed: number;
  ok: boolean;
  violation: string | null;
  stats: NodeWorldStats;
  /** The clients' history (check/'s JSON lines), for `--history-dir` and for reading a failure. */
  history: string;
  /** The nemesis's actions with their virtual times. */
  trace: string[];
}

const STARTUP_MS_MAX = 15_000;
const CLIENT_TIMEOUT_MS = 6_000;
/** Replica agreement walks every record: every this much virtual time. */
const REPLICA_CHECK_EVERY_MS = 100;
/** Reads of an acknowledged write after healing, before its absence counts as a loss. */
const READ_BACK_ATTEMPTS = 20;

export async function runNodeWorld(o: NodeWorldOptions): Promise<NodeWorldResult> {
  const rng = new Rng(o.seed);
  const count = o.nodes !== undefined && o.nodes !== 0 ? o.nodes : 3 + rng.int(3);
  const chaosMs = o.chaosMs ?? 4_000;
  const healMs = o.healMs ?? 20_000;
  const scheduler = new SimScheduler();
  const network = new SimNetwork(scheduler, rng.fork());
  const ids = Array.from({ length: count }, (_, i) => i + 1);
  const mutations = new Set<NodeMutation>(o.mutation !== undefined ? [o.mutation] : []);
  const joinRng = rng.fork();
  const nodes = ids.map((id) => new WorldNode({ id, founders: ids, shards: o.shards ?? 2, mutations, scheduler, network, rng: rng.fork() }));
  const checks = new WorldChecks();
  const rec = new HistoryRecorder(() => scheduler.nowMs);
  const stats: NodeWorldStats = { nodes: count, events: 0, virtualMs: 0, operations: 0, acknowledgedWrites: 0, historyOperations: 0, checks: 0, readBackRetries: 0, nemesis: {} };
  const failures: Error[] = [];
  // Idempotent: the nemesis, a failed node's restart and healing may each ask for the same node.
  const start = (n: WorldNode) => (n.up ? Promise.resolve() : n.start()).catch((e: unknown) => failures.push(new WorldViolation("node start failed", `node ${n.id}: ${String(e)}`)));
  const nemesis = new WorldNemesis(rng.fork(), {
    scheduler, network, nodes,
    crash: (n) => n.crash(),
    restart: (n) => void start(n),
    join: async () => {
      const via = nodes.filter((n) => n.serving());
      if (via.length === 0) return "skipped";
      const port = 7500 + nodes.length;
      const r = await via[joinRng.int(via.length)]!.gateway!.join({ peer: { host: "sim", port }, http: { host: "sim", port: port + 1000 }, labels: {}, role: "standard" });
      if (!r.ok) return `refused ${r.code}`;
      const n = new WorldNode({ id: r.id, founders: [], joinedVia: r.members.map((m) => m.id), shards: o.shards ?? 2, mutations, scheduler, network, rng: rng.fork() });
      nodes.push(n);
      await start(n);
      return "ok";
    },
  });
  const clientRng = rng.fork();
  const ctx = {
    scheduler, rec, clientTimeoutMs: CLIENT_TIMEOUT_MS,
    gateway: (r: Rng) => {
      const up = nodes.filter((n) => n.serving());
      return up.length === 0 ? null : r.pick(up).gateway;
    },
  };
  const registers = Array.from({ length: o.registerClients ?? 4 }, (_, i) => new RegisterClient(i, 100, o.keys ?? 6, clientRng.fork(), ctx));
  const durability = new DurabilityClient(1000, clientRng.fork(), ctx);

  let lastReplicaCheckMs = 0;
  /** Runs events until `done()` or `untilMs` of virtual time; checks after each. */
  const run = async (untilMs: number, done: () => boolean = () => false): Promise<void> => {
    for (let guard = 0; scheduler.nowMs < untilMs && !done(); guard++) {
      if (!(await scheduler.step())) break;
      stats.events++;
      if (failures.length > 0) throw failures[0]!;
      for (const n of nodes) {
        const f = n.serving() || n.node === null ? null : n.node.failure;
        if (f !== null && n.up) {
          // Told by a member, between its removal and the nemesis retiring it: it stops, as it should.
          if (f instanceof RemovedFromClusterError) {
            n.retire();
            continue;
          }
          // A node whose disk failed stops (fail-stop, as in production); anything else is a bug.
          if (!(f instanceof InjectedDiskFault)) throw new WorldViolation("node failed", `node ${n.id}: ${f.stack ?? f.message}`);
          n.crash();
          scheduler.schedule(() => void start(n), 500, "world");
        }
      }
      checks.afterEvent(nodes);
      if (scheduler.nowMs - lastReplicaCheckMs >= REPLICA_CHECK_EVERY_MS) {
        lastReplicaCheckMs = scheduler.nowMs;
        checks.replicas(nodes);
      }
    }
  };

  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  try {
    for (const n of nodes) scheduler.schedule(() => void start(n), 0, "world");
    await run(STARTUP_MS_MAX, () => WorldChecks.notWhole(nodes) === null);
    const notReady = WorldChecks.notWhole(nodes);
    if (notReady !== null) throw new WorldViolation("startup", `not whole after ${STARTUP_MS_MAX} ms: ${notReady}`);
    const chaosEndMs = scheduler.nowMs + chaosMs;
    // Clients loop until the chaos ends: one operation at a time each, a short pause between.
    const loop = (step: () => Promise<void>, owner: string) => {
      const next = () => {
        if (scheduler.nowMs >= chaosEndMs) return;
        void step().then(() => scheduler.schedule(next, clientRng.range(5, 40), owner));
      };
      scheduler.schedule(next, clientRng.range(0, 20), owner);
    };
    for (const c of registers) loop(() => c.step(), `client${c.id}`);
    loop(() => durability.step(), "client-durability");
    const act = () => {
      if (scheduler.nowMs >= chaosEndMs - 500) return;
      nemesis.act();
      scheduler.schedule(act, clientRng.range(150, 600), "nemesis");
    };
    scheduler.schedule(act, 200, "nemesis");
    await run(chaosEndMs);
    // Heal: links whole, disks sound, crashed nodes back; then wait for the cluster to be whole.
    network.heal();
    network.setLinkFaults({ dropProbability: 0, duplicateProbability: 0, reorder: false, delayMsMin: 1, delayMsMax: 5 });
    for (const n of nodes) n.disk.setFaults({ walAppendFailProbability: 0, corruptTailOnCrashProbability: 0 });
    for (const n of nodes) if (!n.up) void start(n);
    const healEndMs = scheduler.nowMs + healMs;
    await run(healEndMs, () => WorldChecks.notWhole(nodes) === null);
    const notWhole = WorldChecks.notWhole(nodes);
    if (notWhole !== null) throw new WorldViolation("not whole after healing", `${healMs} ms after healing: ${notWhole}`);
    // Every acknowledged write is there (a linearizable read through some node's gateway).
    // A refusal that applied nothing (no leader yet, no quorum heard yet) is asked again, as a client would.
    const ask = async <T>(fn: () => Promise<T>): Promise<Answered<T>> => {
      const box: { a: Answered<T> | null } = { a: null };
      const asked = withTimeout(ctx, fn, "world").then((x) => {
        box.a = x;
      });
      await run(scheduler.nowMs + CLIENT_TIMEOUT_MS + 1, () => box.a !== null);
      await asked;
      assert(box.a !== null, "a client call is answered or times out");
      return box.a;
    };
    for (const [key, version] of durability.acknowledged) {
      let a: Answered<StoredRecord | undefined> | null = null;
      // A read changes nothing: it is asked again after any failure, at the next running node.
      for (let attempt = 0; attempt < READ_BACK_ATTEMPTS && (a === null || !a.ok); attempt++) {
        if (attempt > 0) stats.readBackRetries++;
        const serving = nodes.filter((n) => n.serving());
        if (serving.length === 0) break;
        const gateway = serving[attempt % serving.length]!.gateway!;
        a = await ask(() => gateway.get(key, "linearizable"));
        if (!a.ok) await run(scheduler.nowMs + 100);
      }
      if (a === null || !a.ok) throw new WorldViolation("read-back failed", `acknowledged ${key}: ${a === null ? "no answer" : a.reason}`);
      if (a.value === undefined || a.value.version < version) {
        throw new WorldViolation("acknowledged write lost", `${key} acknowledged at version ${version}, read back ${a.value === undefined ? "absent" : `version ${a.value.version}`}`);
      }
    }
    if (unhandled.length > 0) throw new WorldViolation("unhandled rejection", String(unhandled[0]));
    const versions = versionRegressions(rec.versions);
    if (versions.count > 0) throw new WorldViolation("versions went back", `${versions.count}: ${versions.examples.join("; ")}`);
    const ops = operationsFromEvents(rec.history());
    stats.historyOperations = ops.length;
    const verdict = checkOperations(kvModel as never, ops);
    if (verdict.verdict === "not-linearizable") throw new WorldViolation("not linearizable", JSON.stringify(verdict).slice(0, 600));
    return { seed: o.seed, ok: true, violation: null, stats: finish(), history: rec.jsonLines(), trace: nemesis.trace };
  } catch (e) {
    const message = e instanceof WorldViolation ? e.message : `${(e as Error).name}: ${(e as Error).stack ?? String(e)}`;
    return { seed: o.seed, ok: false, violation: message, stats: finish(), history: rec.jsonLines(), trace: nemesis.trace };
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }

  function finish(): NodeWorldStats {
    stats.virtualMs = Math.round(scheduler.nowMs);
    stats.operations = registers.reduce((s, c) => s + c.ops, 0) + durability.ops;
    stats.acknowledgedWrites = durability.acknowledged.size + rec.versions.filter((v) => v.write).length;
    stats.checks = checks.checks;
    const counts = new Map(nemesis.counts);
    // What the disks did besides injected faults: WAL segments rotated and deleted, records a crash lost.
    const add = (k: string, v: number) => { if (v > 0) counts.set(k, (counts.get(k) ?? 0) + v); };
    for (const n of nodes) {
      add("wal segments opened", n.disk.counts.segmentsOpened);
      add("wal segments deleted", n.disk.counts.segmentsDeleted);
      add("unsynced records lost", n.disk.counts.lostRecords);
      add("torn tails", n.disk.counts.tornTails);
    }
    stats.nemesis = Object.fromEntries([...counts].sort());
    return stats;
  }
}

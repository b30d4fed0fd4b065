import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PLACEMENT, type ReplicaRole } from "../placement/types.js";
import { Rng } from "../util/rng.js";
import { type MetaChanges, applyMetaTracked, metaFromRecords, metaToRecords } from "./records.js";
import {
  ENDED_OPERATORS_MAX, type MemberLifecycle, type MetaCommand, type MetaState, type OperatorStatus, SETTINGS_HISTORY_MAX,
  initialMetaState,
} from "./state.js";

/** What a fresh metadata store holds: nothing (the node bootstraps the group without records). */
const freshStore = () => new Map<string, unknown>();

/** Applies a command's changes to a record map as the node's state store does (a copy of each value). */
function write(store: Map<string, unknown>, changes: MetaChanges): void {
  for (const [k, v] of changes.puts) store.set(k, structuredClone(v));
  for (const k of changes.deletes) store.delete(k);
}

/** The state a node rebuilds from its records (on open, and after installing a snapshot): its own copy. */
const rebuilt = (store: Map<string, unknown>): MetaState => metaFromRecords([...store].map(([k, v]) => [k, structuredClone(v)]));

test("records written by tracked applies rebuild the same state, command after command", () => {
  const s = metaFromRecords([]);
  assert.deepEqual(s, initialMetaState(DEFAULT_PLACEMENT, 0), "no records: the initial state");
  const store = freshStore();
  const commands: MetaCommand[] = [
    ...[1, 2, 3].map((i): MetaCommand => ({ kind: "register-node", peer: { host: "h", port: 7000 + i }, http: { host: "h", port: 8000 + i }, labels: { zone: `z${i}` }, role: "standard", atMs: i })),
    { kind: "set-worker-state", node: 2, state: "ready", atMs: 4 },
    { kind: "set-lifecycle", node: 2, lifecycle: "ready", atMs: 5 },
    { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3], [2, 3, 1]], atMs: 6 },
    { kind: "set-replicas", shard: 1, confIndex: 3, replicas: [{ node: 1, role: "voter" }, { node: 2, role: "learner" }], atMs: 7 },
    { kind: "set-replicas", shard: 1, confIndex: 2, replicas: [], atMs: 8 }, // refused: an older configuration
    { kind: "set-settings", baseVersion: 1, placement: { ...DEFAULT_PLACEMENT, maxMovesTotal: 300 }, note: "x", atMs: 9 },
    { kind: "rollback-settings", toVersion: 1, atMs: 10 },
    { kind: "record-operator", operator: { id: 1, shard: 1, epoch: 2, reason: "repair", steps: [], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 }, status: "running", atMs: 11 },
    { kind: "forget-node", node: 3, atMs: 12 }, // refused: holds replicas
    { kind: "reserve-shard-id", atMs: 13 },
    { kind: "split-shard", shard: 2, child: 3, at: 3 * 2 ** 30, end: 2 ** 32, index: 40, atMs: 14 },
    { kind: "split-shard", shard: 2, child: 4, at: 3 * 2 ** 30, end: 2 ** 32, index: 41, atMs: 15 }, // refused: recorded already
    { kind: "merge-shards", into: 2, from: 3, end: 2 ** 32, atMs: 16 },
  ];
  for (const cmd of commands) {
    const { result, changes } = applyMetaTracked(s, cmd);
    if (!result.ok) assert.deepEqual(changes, { puts: [], deletes: [] }, "a refused command writes nothing");
    write(store, changes);
    assert.deepEqual(rebuilt(store), s, `after ${cmd.kind}`);
  }
  assert.deepEqual(new Map(metaToRecords(s).map(([k, v]) => [k, structuredClone(v)])), store, "the tracked records are exactly the full mapping");
});

test("the initial settings version survives a restart: set, rebuild from the records, roll back to version 1", () => {
  const s = metaFromRecords([]);
  const store = freshStore();
  const placement = { ...DEFAULT_PLACEMENT, shardCooldownMs: 1000 };
  const set = applyMetaTracked(s, { kind: "set-settings", baseVersion: 1, placement, note: "config set", atMs: 5 });
  assert.deepEqual(set.result, { ok: true, value: 2 });
  assert.ok(set.changes.puts.some(([k]) => k === "v:1"), "the first change writes the initial version it keeps");
  write(store, set.changes);
  const restarted = rebuilt(store);
  assert.deepEqual(restarted.settings.map((v) => v.version), [1, 2]);
  const rollback = applyMetaTracked(restarted, { kind: "rollback-settings", toVersion: 1, atMs: 6 });
  assert.deepEqual(rollback.result, { ok: true, value: 3 });
  write(store, rollback.changes);
  assert.deepEqual(rebuilt(store).settings.at(-1), { version: 3, placement: DEFAULT_PLACEMENT, atMs: 6, note: "rollback to version 1" });
});

test("stores written before version 1 was recorded rebuild it while the history still keeps it, not after", () => {
  // As the earlier code wrote them: every version but the initial one, the pruned ones deleted.
  const legacy = (last: number): [string, unknown][] => {
    const s = initialMetaState(DEFAULT_PLACEMENT, 0);
    for (let v = 2; v <= last; v++) {
      const { result } = applyMetaTracked(s, { kind: "set-settings", baseVersion: v - 1, placement: { ...DEFAULT_PLACEMENT, maxMovesTotal: 200 + v }, note: `${v}`, atMs: v });
      assert.deepEqual(result, { ok: true, value: v });
    }
    const records = metaToRecords(s).filter(([k]) => k !== "v:1");
    assert.deepEqual(metaFromRecords(records), s, `history up to version ${last}`);
    return records;
  };
  assert.equal(metaFromRecords(legacy(2)).settings[0]!.version, 1);
  assert.equal(metaFromRecords(legacy(SETTINGS_HISTORY_MAX)).settings.length, SETTINGS_HISTORY_MAX);
  assert.equal(metaFromRecords(legacy(SETTINGS_HISTORY_MAX + 1)).settings[0]!.version, 2, "version 1 was pruned: not brought back");
  assert.equal(metaFromRecords(legacy(SETTINGS_HISTORY_MAX + 7)).settings[0]!.version, 8);
});

test("an ended operator pruned by the very command that records it leaves no record behind", () => {
  const s = metaFromRecords([]);
  const store = freshStore();
  const op = (id: number) => ({ id, shard: 1, epoch: 1, reason: "repair" as const, steps: [], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 });
  for (let id = 1; id <= ENDED_OPERATORS_MAX; id++) write(store, applyMetaTracked(s, { kind: "record-operator", operator: op(id), status: "done", atMs: 1000 + id }).changes);
  // A proposer whose clock is behind: the new record is the oldest ended one, pruned at once.
  const { result, changes } = applyMetaTracked(s, { kind: "record-operator", operator: op(5000), status: "done", atMs: 1 });
  assert.ok(result.ok);
  assert.equal(s.operators.has(5000), false);
  assert.deepEqual(changes, { puts: [], deletes: ["o:5000"] });
  write(store, changes);
  assert.deepEqual(rebuilt(store), s);
  // A record without a value (as the earlier code wrote one) stands for none.
  assert.deepEqual(metaFromRecords([...store, ["o:5000", undefined]]), s);
});

test("an unknown record is an error, not a silent skip", () => {
  assert.throws(() => metaFromRecords([["x:1", {}]]), /unknown metadata record x:1/);
});

// ---------------------------------------------------------------------------------------------------
// Property: after any sequence of commands, the records written so far rebuild the state.

const LIFECYCLES: MemberLifecycle[] = ["joining", "syncing", "ready", "pairing", "voter", "standby-learner", "keep-as-learner"];
const STATUSES: OperatorStatus[] = ["running", "done", "timed-out", "fenced", "cancelled"];
const ROLES: ReplicaRole[] = ["voter", "learner"];

/** Commands drawn from the state (mostly valid ones, some refused), with a clock that proposers may see behind. */
class CommandGen {
  private clock = 0;
  private nextOperator = 1;
  /** `operatorShare`: the fraction of commands that record operators (enough of them pass the bound on ended ones). */
  constructor(private readonly rng: Rng, private readonly operatorShare: number) {}

  /** A proposer's clock: mostly now, sometimes (another proposer's) well behind. */
  private atMs(): number {
    this.clock += this.rng.int(4);
    return this.rng.chance(0.1) ? Math.max(0, this.clock - this.rng.int(20_000)) : this.clock;
  }

  private nodeId(s: MetaState): number {
    const ids = [...s.nodes.keys()];
    return ids.length > 0 && this.rng.chance(0.9) ? this.rng.pick(ids) : this.rng.range(1, s.nextNodeId + 1);
  }

  private shardId(s: MetaState): number {
    const live = [...s.shards.values()].filter((sh) => sh.retiredInto === undefined).map((sh) => sh.id);
    return live.length > 0 && this.rng.chance(0.9) ? this.rng.pick(live) : this.rng.range(1, s.nextShardId + 1);
  }

  private replicaSet(s: MetaState, n: number): number[] {
    const ids = this.rng.shuffle([...s.nodes.keys()]);
    return ids.slice(0, Math.max(1, Math.min(n, ids.length)));
  }

  next(s: MetaState): MetaCommand {
    const r = this.rng;
    const atMs = this.atMs();
    if (r.chance(this.operatorShare)) {
      // New operators mostly, updates of known ones too (a running one ends, a pruned one comes back).
      const id = this.nextOperator > 1 && r.chance(0.15) ? r.range(Math.max(1, this.nextOperator - 1500), this.nextOperator - 1) : this.nextOperator++;
      const steps = [{ kind: "add-learner" as const, node: r.range(1, 5) }, { kind: "promote" as const, node: r.range(1, 5) }];
      return {
        kind: "record-operator", status: r.chance(0.15) ? "running" : r.pick(STATUSES), atMs,
        operator: { id, shard: this.shardId(s), epoch: r.range(1, 5), reason: "repair", steps, stepIndex: r.int(3), startedAtMs: atMs, stepStartedAtMs: atMs },
      };
    }
    const w = r.int(80);
    if (w < 8) {
      const port = r.range(1, 12);
      return { kind: "register-node", ...(r.chance(0.2) ? { id: r.range(1, s.nextNodeId + 3) } : {}), peer: { host: "h", port }, http: { host: "h", port: 9000 + port }, labels: { zone: `z${port % 3}` }, role: r.pick(["standard", "standard", "analytics", "standby"]), atMs };
    }
    if (w < 12) return { kind: "set-lifecycle", node: this.nodeId(s), lifecycle: r.pick(LIFECYCLES), atMs };
    if (w < 16) return { kind: "set-worker-state", node: this.nodeId(s), state: r.pick(["joining", "ready", "draining", "removed"]), atMs };
    if (w < 18) return { kind: "forget-node", node: this.nodeId(s), atMs };
    if (w < 21) {
      if (r.chance(0.3)) return { kind: "set-collection-replicas", name: `c${r.int(6)}`, replicationFactor: r.range(0, 8), atMs };
      if (r.chance(0.2)) return { kind: "drop-collection", name: r.chance(0.1) ? "default" : `c${r.int(6)}`, atMs };
      const rf = r.range(1, 3);
      const placements = Array.from({ length: r.range(1, 3) }, () => this.replicaSet(s, rf));
      // Other collections are refused until the default one is recorded (its ids are the founders').
      if (!s.collections.has("default") && r.chance(0.5)) return { kind: "create-collection", name: "default", replicationFactor: rf, placements, atMs };
      if (r.chance(0.5)) return { kind: "create-collection", name: `c${r.int(6)}`, replicationFactor: rf, placements, atMs };
      const schema = { partitioning: "hash" as const, vectors: { dim: r.range(1, 8), metric: "cosine" as const, storage: "f32" as const, hnsw: { m: 16, efConstruction: 128, efSearch: 64 } },
        payloadIndexes: { color: "keyword" as const }, ttlMs: null };
      return { kind: "create-collection", name: `c${r.int(6)}`, replicationFactor: rf, placements, schema, targetReplicas: r.range(0, 8), atMs };
    }
    if (w < 27) {
      const shard = s.shards.get(this.shardId(s));
      const confIndex = (shard?.confIndex ?? 0) + r.range(-1, 3);
      const replicas = this.replicaSet(s, r.range(1, 4)).map((node, i) => ({ node, role: i === 0 && r.chance(0.9) ? "voter" as const : r.pick(ROLES) }));
      return { kind: "set-replicas", shard: shard?.id ?? this.shardId(s), confIndex, replicas, atMs };
    }
    if (w < 36) {
      const current = s.settings[s.settings.length - 1]!;
      const baseVersion = r.chance(0.9) ? current.version : current.version - r.range(1, 3);
      const placement = { ...current.placement, maxMovesTotal: r.range(64, 400), shardCooldownMs: r.chance(0.05) ? -1 : r.int(5000) };
      return { kind: "set-settings", baseVersion, placement, note: `n${r.int(1000)}`, atMs };
    }
    if (w < 44) {
      const first = s.settings[0]!.version;
      const last = s.settings[s.settings.length - 1]!.version;
      return { kind: "rollback-settings", toVersion: r.range(Math.max(0, first - 3), last + 1), atMs };
    }
    if (w < 49) return { kind: "reserve-shard-id", atMs };
    if (w < 64) {
      const shard = s.shards.get(this.shardId(s));
      const start = (shard?.range.start ?? 0) as number;
      const end = (shard?.range.end ?? 2 ** 32) as number;
      const at = r.chance(0.9) ? start + Math.max(1, Math.floor((end - start) / 2)) : end;
      const child = r.chance(0.9) ? s.nextShardId - (r.chance(0.5) ? 1 : 0) : r.range(1, s.nextShardId + 2);
      return { kind: "split-shard", shard: shard?.id ?? 1, child, at, end: r.chance(0.95) ? end : end - 1, index: r.int(1000), atMs };
    }
    // A merge of adjacent live shards of a collection (sometimes of any two).
    const pairs: [number, number, number][] = [];
    for (const a of s.shards.values()) {
      for (const b of s.shards.values()) {
        if (a.collection === b.collection && a.retiredInto === undefined && b.retiredInto === undefined && a.range.end === b.range.start && a !== b) pairs.push([a.id, b.id, b.range.end as number]);
      }
    }
    const [into, from, end] = pairs.length > 0 && r.chance(0.9) ? r.pick(pairs) : [this.shardId(s), this.shardId(s), 2 ** 32];
    return { kind: "merge-shards", into, from, end, atMs };
  }
}

/**
 * The keys of a state's records as a store that started empty holds them: every one, but for those of
 * the initial state not changed yet (the counters, the initial settings version), which need none.
 */
function expectedKeys(s: MetaState): string[] {
  const initial = initialMetaState(DEFAULT_PLACEMENT, 0);
  return metaToRecords(s).map(([k]) => k)
    .filter((k) => !(k === "seq" && s.nextNodeId === initial.nextNodeId && s.nextShardId === initial.nextShardId))
    .filter((k) => !(k === "v:1" && s.settings.length === 1));
}

/**
 * Runs: [seed, steps, share of operator records]. The long operator-heavy run passes the bound on ended
 * operators (a few milliseconds per step once 1000 are kept: the whole state is compared every step);
 * every run passes the settings history bound. META_RECORDS_SEED (with META_RECORDS_STEPS and
 * META_RECORDS_SHARE, as a failure prints them) runs one seed.
 */
const RUNS: [number, number, number][] = process.env.META_RECORDS_SEED !== undefined
  ? [[Number(process.env.META_RECORDS_SEED), Number(process.env.META_RECORDS_STEPS ?? 3000), Number(process.env.META_RECORDS_SHARE ?? 0.5)]]
  : [[20240611, 2500, 0.8], [1, 1200, 0.2], [2, 1200, 0.2], [3, 1200, 0.2]];

for (const [seed, steps, operatorShare] of RUNS) {
  test(`property (seed ${seed}, ${steps} steps): after any sequence of commands, metaFromRecords of the records written so far equals the state`, () => {
    const rng = new Rng(seed);
    const gen = new CommandGen(rng.fork(), operatorShare);
    let s = metaFromRecords([]);
    const store = freshStore();
    const refused = new Map<string, number>();
    let maxSettings = 0;
    let prunedSettings = 0;
    let prunedOperators = 0;
    let restarts = 0;
    let maxEnded = 0;
    let selfPruned = 0;
    for (let step = 0; step < steps; step++) {
      const cmd = gen.next(s);
      try {
        const { result, changes } = applyMetaTracked(s, cmd);
        if (!result.ok) {
          refused.set(result.code, (refused.get(result.code) ?? 0) + 1);
          assert.deepEqual(changes, { puts: [], deletes: [] }, "a refused command writes nothing");
        }
        const keys = [...changes.puts.map(([k]) => k), ...changes.deletes];
        assert.equal(new Set(keys).size, keys.length, "one change per record");
        assert.ok(changes.puts.every(([, v]) => v !== undefined && v !== null), "no record without a value");
        prunedSettings += changes.deletes.filter((k) => k.startsWith("v:")).length;
        prunedOperators += changes.deletes.filter((k) => k.startsWith("o:")).length;
        if (cmd.kind === "record-operator" && !s.operators.has(cmd.operator.id)) selfPruned++;
        write(store, changes);
        // The store's values are copies already; metaFromRecords does not change them.
        assert.deepEqual(metaFromRecords(store), s);
        const keysWanted = expectedKeys(s);
        const missing = keysWanted.filter((k) => !store.has(k));
        assert.ok(missing.length === 0 && store.size === keysWanted.length, `the records are the state's, less the untouched initial ones: missing ${missing.join(", ")}; ${store.size} records, ${keysWanted.length} wanted`);
        maxSettings = Math.max(maxSettings, s.settings[s.settings.length - 1]!.version);
        if (cmd.kind === "record-operator") maxEnded = Math.max(maxEnded, [...s.operators.values()].filter((o) => o.status !== "running").length);
        // Now and then the node restarts (or installs a snapshot): it goes on from its records.
        if (rng.chance(0.02)) {
          s = rebuilt(store);
          restarts++;
        }
      } catch (e) {
        const err = e as Error;
        err.message = `seed ${seed} (rerun: META_RECORDS_SEED=${seed} META_RECORDS_STEPS=${step + 1} META_RECORDS_SHARE=${operatorShare}), step ${step}, ${JSON.stringify(cmd)}: ${err.message}`;
        console.log(err.message.split("\n")[0]);
        throw err;
      }
    }
    assert.deepEqual(new Map(metaToRecords(s).map(([k, v]) => [k, structuredClone(v)])), store, `seed ${seed}: the tracked records are exactly the full mapping`);
    console.log(`seed ${seed}: ${steps} steps, settings up to version ${maxSettings} (${prunedSettings} pruned), up to ${maxEnded} ended operators kept (${prunedOperators} pruned, ${selfPruned} by their own record), ` +
      `${s.nodes.size} nodes, ${s.shards.size} shards, ${restarts} restarts, refused: ${JSON.stringify(Object.fromEntries(refused))}`);
    // The run went where the bugs were: past the history bounds, through refusals and restarts.
    assert.ok(maxSettings > SETTINGS_HISTORY_MAX + 10 && prunedSettings > 0, `seed ${seed}: settings reached version ${maxSettings}`);
    if (operatorShare >= 0.5) {
      assert.ok(maxEnded === ENDED_OPERATORS_MAX && prunedOperators > 0 && selfPruned > 0, `seed ${seed}: up to ${maxEnded} ended operators, ${prunedOperators} pruned, ${selfPruned} by their own record`);
    }
    assert.ok(s.shards.size > 3 && s.nodes.size > 1 && restarts > 0, `seed ${seed}: ${s.shards.size} shards, ${s.nodes.size} nodes, ${restarts} restarts`);
    for (const code of ["stale_settings", "settings_version_not_found", "stale_configuration", "address_in_use"]) {
      assert.ok((refused.get(code) ?? 0) > 0, `seed ${seed}: no command refused with ${code}`);
    }
  });
}

/**
 * The metadata state survives restarts, log compaction and a catch-up by snapshot on a real 3-node
 * cluster: each of those rebuilds it from the state store's records (meta/records.ts), which must hold
 * all of it, the initial settings version included (`shoal config rollback 1` after a restart).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { DEFAULT_PLACEMENT, type Operator } from "../placement/types.js";
import type { ApplyResult, MetaCommand, MetaState, OperatorRecord } from "../meta/state.js";
import { META_GROUP, type MultiRaftNode } from "./multi-raft.js";
import { type TestCluster, openNode, startCluster, stopAll, stopLeftovers, waitFor, waitForLeaders } from "./testing.js";

const clusters: TestCluster[] = [];
after(async () => {
  await stopLeftovers();
  // Nodes stopped by hand midway (restarts) are not the cluster's any more: stop whatever is left.
  for (const c of clusters) for (const n of c.nodes.values()) await n.stop();
  for (const c of clusters) for (const dir of c.dirs.values()) rmSync(dir, { recursive: true, force: true });
});

const COMPACT_AFTER = 8;

function metaLeader(c: TestCluster): MultiRaftNode | undefined {
  return [...c.nodes.values()].find((n) => n.leaderOf(META_GROUP) === n.id);
}

async function leader(c: TestCluster): Promise<MultiRaftNode> {
  await waitFor("a metadata leader", () => metaLeader(c) !== undefined, 15_000);
  return metaLeader(c)!;
}

/**
 * Proposes through the metadata leader, asking again while leadership moves. `done` says whether an
 * earlier attempt whose outcome is unknown was applied after all (then it is not proposed again).
 */
async function propose(c: TestCluster, make: (s: Readonly<MetaState>) => MetaCommand, done: (s: Readonly<MetaState>) => boolean = () => false): Promise<ApplyResult | null> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const l = await leader(c);
    if (done(l.metaState())) return null;
    try {
      return await l.proposeMeta(make(l.metaState()));
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
  }
}

async function setSettings(c: TestCluster, note: string, maxMovesTotal: number, shardCooldownMs: number): Promise<void> {
  const r = await propose(c, (s) => {
    const current = s.settings[s.settings.length - 1]!;
    return { kind: "set-settings", baseVersion: current.version, placement: { ...current.placement, maxMovesTotal, shardCooldownMs }, note, atMs: Date.now() };
  }, (s) => s.settings.some((v) => v.note === note));
  assert.ok(r === null || r.ok, JSON.stringify(r));
}

/** Proposes harmless metadata commands until every running node compacted its metadata log past `index`. */
async function compactPast(c: TestCluster, index: number): Promise<void> {
  const compacted = () => [...c.nodes.values()].every((n) => n.metaStatus().firstIndex > index + 1);
  for (let i = 0; i < 20 * COMPACT_AFTER && !compacted(); i++) {
    const r = await propose(c, () => ({ kind: "reserve-shard-id", atMs: Date.now() }));
    assert.ok(r?.ok, JSON.stringify(r));
  }
  await waitFor(`every node's metadata log compacted past index ${index}`, compacted, 15_000);
}

async function restart(c: TestCluster, ids: number[]): Promise<void> {
  for (const id of ids) {
    await c.nodes.get(id)!.stop();
    c.nodes.delete(id);
  }
  for (const id of ids) await openNode(c, id);
  for (const [id, node] of c.nodes) {
    for (const [peer, port] of c.ports) if (peer !== id && c.nodes.has(peer)) node.transport.setPeer(peer, { host: "127.0.0.1", port });
  }
}

/** Waits until every node holds `expected` (the whole metadata state), then asserts it (for the diff). */
async function everyNodeHolds(c: TestCluster, what: string, expected: () => MetaState, timeoutMs = 15_000): Promise<void> {
  try {
    await waitFor(what, () => [...c.nodes.values()].every((n) => isDeepStrictEqual(n.metaState(), expected())), timeoutMs);
  } finally {
    const want = expected();
    for (const n of c.nodes.values()) assert.deepEqual(n.metaState(), want, `${what}: node ${n.id}`);
  }
}

const versions = (n: MultiRaftNode) => n.metaState().settings.map((v) => v.version);

test("settings history and operator records survive restarts, compaction and a catch-up by snapshot; rollback to version 1 works after them", async () => {
  const c = await startCluster(3, 1, { compactAfterEntries: COMPACT_AFTER });
  clusters.push(c);
  await waitForLeaders(c);
  await leader(c);

  // `shoal config set` twice, and an operator record.
  await setSettings(c, "cooldown", DEFAULT_PLACEMENT.maxMovesTotal, 1000);
  await setSettings(c, "more moves", DEFAULT_PLACEMENT.maxMovesTotal + 1, 1000);
  const operator: Operator = { id: 7, shard: 1, epoch: 1, reason: "manual", steps: [{ kind: "transfer-leader", to: 2 }], stepIndex: 1, startedAtMs: 1, stepStartedAtMs: 2 };
  const recorded = await propose(c, () => ({ kind: "record-operator", operator, status: "done", atMs: 3 }));
  assert.ok(recorded?.ok, JSON.stringify(recorded));
  const expectedOperator: OperatorRecord = { operator, status: "done", updatedAtMs: 3 };
  const leaderState = async () => structuredClone((await leader(c)).metaState()) as MetaState;
  let expected = await leaderState();
  assert.deepEqual(expected.settings.map((v) => v.version), [1, 2, 3]);
  assert.deepEqual(expected.operators.get(7), expectedOperator);
  await everyNodeHolds(c, "the settings and the operator applied everywhere", () => expected);

  // The log holding those commands is compacted away: from now on only the records hold them.
  await compactPast(c, Math.max(...[...c.nodes.values()].map((n) => n.metaStatus().lastIndex)));
  expected = await leaderState();

  // Whole-cluster restart: every node rebuilds the state from its records.
  await restart(c, [...c.nodes.keys()]);
  await everyNodeHolds(c, "the metadata as before the restart, on every node", () => expected);
  for (const n of c.nodes.values()) assert.deepEqual(versions(n), [1, 2, 3], `node ${n.id} after the restart`);

  // Compaction after the restart, and a node that must catch up by snapshot.
  await compactPast(c, Math.max(...[...c.nodes.values()].map((n) => n.metaStatus().lastIndex)));
  const lagging = [...c.nodes.values()].find((n) => n !== metaLeader(c))!;
  const lastBefore = lagging.metaStatus().lastIndex;
  await c.nodes.get(lagging.id)!.stop();
  c.nodes.delete(lagging.id);
  await compactPast(c, lastBefore);
  const back = await openNode(c, lagging.id);
  for (const [peer, port] of c.ports) if (peer !== back.id) back.transport.setPeer(peer, { host: "127.0.0.1", port });
  for (const [id, node] of c.nodes) if (id !== back.id) node.transport.setPeer(back.id, { host: "127.0.0.1", port: c.ports.get(back.id)! });
  // Its log restarts past everything it had: what it holds came in a snapshot.
  await waitFor(`node ${back.id} caught up by snapshot`, () => back.metaStatus().firstIndex > lastBefore + 1 && back.metaStatus().applied >= (metaLeader(c)?.metaStatus().commit ?? Infinity), 20_000);
  expected = await leaderState();
  await everyNodeHolds(c, "the same metadata on every node, the one caught up by snapshot included", () => expected);
  for (const n of c.nodes.values()) {
    assert.deepEqual(versions(n), [1, 2, 3], `node ${n.id}`);
    assert.deepEqual(n.metaState().operators.get(7), expectedOperator, `node ${n.id}`);
  }

  // `shoal config rollback 1`: version 4, with version 1's placement.
  const note = "rollback to version 1";
  const rolled = await propose(c, () => ({ kind: "rollback-settings", toVersion: 1, atMs: Date.now() }), (s) => s.settings.some((v) => v.note === note));
  assert.ok(rolled === null || rolled.ok, JSON.stringify(rolled));
  if (rolled !== null && rolled.ok) assert.equal(rolled.value, 4);
  await waitFor("version 4 everywhere", () => [...c.nodes.values()].every((n) => versions(n).at(-1) === 4), 15_000);
  for (const n of c.nodes.values()) {
    const s = n.metaState().settings;
    assert.deepEqual(s.map((v) => v.version), [1, 2, 3, 4], `node ${n.id}`);
    assert.deepEqual(s[3]!.placement, s[0]!.placement, `node ${n.id}: version 4 is version 1's placement`);
    assert.deepEqual(s[0]!.placement, DEFAULT_PLACEMENT);
    assert.equal(s[3]!.note, note);
  }

  // And that too survives a whole-cluster restart.
  expected = await leaderState();
  await restart(c, [...c.nodes.keys()]);
  await everyNodeHolds(c, "the metadata after the rollback, on every node after another restart", () => expected);
  await stopAll(c);
});

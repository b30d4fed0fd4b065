import { test } from "node:test";
import assert from "node:assert/strict";
import { applyMeta, initialMetaState } from "../meta/state.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";
import { bornWithVoters, hostingChanges } from "./hosting.js";

const applied = () => 100;

/** Three nodes, one shard on all of them, split at log index 40 into a reserved child. */
function splitOfShard1() {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  for (const port of [1, 2, 3]) {
    assert.ok(applyMeta(s, { kind: "register-node", peer: { host: "h", port }, http: { host: "h", port: port + 100 }, labels: {}, role: "standard", atMs: 0 }).ok);
  }
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3]], atMs: 0 }).ok);
  const child = applyMeta(s, { kind: "reserve-shard-id", atMs: 0 });
  assert.ok(child.ok && applyMeta(s, { kind: "split-shard", shard: 1, child: child.value!, at: 2 ** 31, end: 2 ** 32, index: 40, atMs: 0 }).ok);
  return { s, child };
}

test("a node hosts the shards the metadata places on it; it drops the others only on caught-up metadata", () => {
  const s = initialMetaState(DEFAULT_PLACEMENT, 0);
  for (const port of [1, 2, 3, 4]) {
    assert.ok(applyMeta(s, { kind: "register-node", peer: { host: "h", port }, http: { host: "h", port: port + 100 }, labels: {}, role: "standard", atMs: 0 }).ok);
  }
  assert.ok(applyMeta(s, { kind: "create-collection", name: "default", replicationFactor: 3, placements: [[1, 2, 3], [2, 3, 4]], atMs: 0 }).ok);
  assert.deepEqual(hostingChanges(s, 1, new Set(), true, applied), { create: [1], drop: [] });
  assert.deepEqual(hostingChanges(s, 4, new Set([1, 9]), true, applied), { create: [2], drop: [1] }, "shard 9 is unknown to the metadata: kept");
  assert.deepEqual(hostingChanges(s, 4, new Set([1]), false, applied), { create: [2], drop: [] }, "no drop on metadata that may be behind");
  assert.deepEqual(hostingChanges(s, 3, new Set([1, 2]), true, applied), { create: [], drop: [] });
});

test("a split's child is left to the split where this node's replica of the parent has not applied it yet", () => {
  const { s, child } = splitOfShard1();
  assert.deepEqual(hostingChanges(s, 1, new Set([1]), true, () => 39).create, [], "the parent here is at 39: the split will make the child");
  assert.deepEqual(hostingChanges(s, 1, new Set([1]), true, () => 40).create, [child.value], "past the split (a snapshot): the child comes from its leader");
  assert.deepEqual(hostingChanges(s, 1, new Set(), true, () => 0).create, [1, child.value], "no parent here: both come from their leaders");
});

test("a child of a child, split elsewhere while this node lagged, is left to the splits this node will apply (node world seed 144)", () => {
  const { s, child } = splitOfShard1();
  const grandchild = applyMeta(s, { kind: "reserve-shard-id", atMs: 0 });
  assert.ok(grandchild.ok && applyMeta(s, { kind: "split-shard", shard: child.value!, child: grandchild.value!, at: 3 * 2 ** 30, end: 2 ** 32, index: 12, atMs: 0 }).ok);
  assert.deepEqual(hostingChanges(s, 1, new Set([1]), true, () => 39).create, [], "neither the child nor its child: both come from splits here");
  assert.deepEqual(hostingChanges(s, 1, new Set([1]), true, () => 40).create, [child.value, grandchild.value], "past the first split: both from their leaders");
  assert.deepEqual(hostingChanges(s, 1, new Set([1, child.value!]), true, (g) => (g === 1 ? 40 : 11)).create, [], "the child here is at 11: its split makes the grandchild");
});

test("a shard as created starts on the voters it was born with; one changed since, or made by a split, starts empty on a new replica", () => {
  const born = { id: 7, collection: "c", range: { start: 0, end: 100 }, epoch: 1, confIndex: 0, replicas: [2, 1, 3].map((node) => ({ node, role: "voter" as const })) };
  assert.equal(bornWithVoters(born, 1), true);
  assert.equal(bornWithVoters(born, 4), false, "not one of its voters");
  assert.equal(bornWithVoters({ ...born, confIndex: 12 }, 1), false, "a configuration change was mirrored since");
  assert.equal(bornWithVoters({ ...born, origin: { parent: 3, index: 40 } }, 1), false, "made by a split");
  assert.equal(bornWithVoters({ ...born, epoch: 3, range: { start: 0, end: 50 } }, 1), false, "split (or merged) since: its range is not the one it was born with");
  assert.equal(bornWithVoters({ ...born, replicas: [...born.replicas, { node: 4, role: "learner" as const }] }, 1), false, "a learner: not as created");
});

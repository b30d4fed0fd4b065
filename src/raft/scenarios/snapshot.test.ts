/** Snapshots and compaction (§7): catch-up by snapshot, chunked and resumable transfer. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MessageType } from "../types.js";
import { TestCluster, type Replica } from "../testing.js";

function compact(r: Replica, data: Uint8Array): void {
  const st = r.node.status();
  r.storage.createSnapshot(st.applied, st.config, data);
  r.storage.compact(st.applied);
}

test("§7: a follower behind the leader's compacted log catches up by snapshot, then by appends", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 10; i++) c.propose(1, `x${i}`);
  compact(c.get(1), new TextEncoder().encode("state at x9"));
  c.heal();
  c.tickAll(3);
  const snap = c.get(3).applied.find((e) => new TextDecoder().decode(e.data) === "state at x9");
  assert.ok(snap !== undefined, "follower 3 installed the leader's snapshot");
  assert.equal(c.get(3).storage.snapshot().meta.index, c.node(1).status().applied);
  c.propose(1, "after");
  assert.deepEqual(c.appliedData(3).slice(-1), ["after"]);
  assert.equal(c.node(3).status().commit, c.node(1).status().commit);
});

test("snapshot transfer is chunked and resumes from the last acknowledged chunk after a lost chunk", () => {
  const c = new TestCluster({ voters: [1, 2, 3], config: { maxSnapshotChunkBytes: 10, maxSnapshotInflightBytes: 30 } });
  c.elect(1);
  c.isolate(3);
  for (let i = 0; i < 3; i++) c.propose(1, `x${i}`);
  const data = new Uint8Array(95).map((_, i) => i);
  compact(c.get(1), data);
  c.heal();
  const offsets: number[] = [];
  let dropped = false;
  c.filters.push((m) => {
    if (m.type !== MessageType.SnapshotChunk) return false;
    offsets.push(m.snapshotChunk!.offset);
    if (m.snapshotChunk!.offset === 40 && !dropped) {
      dropped = true; // lose one chunk, once
      return true;
    }
    return false;
  });
  c.tickAll(10);
  assert.ok(dropped);
  const restored = c.get(3).storage.snapshot();
  assert.deepEqual([...restored.data], [...data], "the follower restored the exact bytes");
  // Nothing before the lost chunk was sent twice: the transfer resumed at offset 40.
  const firstResend = offsets.indexOf(40, offsets.indexOf(40) + 1);
  assert.ok(firstResend > 0, "the lost chunk was sent again");
  assert.ok(offsets.slice(firstResend).every((o) => o >= 40), `resent offsets ${offsets.slice(firstResend)}`);
  assert.equal(offsets.filter((o) => o === 0).length, 1, "the transfer did not restart from the beginning");
});

test("a snapshot carries the configuration: a follower restored from it knows every member", () => {
  const c = new TestCluster({ voters: [1, 2, 3], learners: [4] });
  c.elect(1);
  c.isolate(2);
  c.propose(1, "x");
  compact(c.get(1), new Uint8Array([7]));
  c.heal();
  c.tickAll(3);
  assert.deepEqual(c.get(2).storage.snapshot().meta.confState.learners, [4]);
  assert.deepEqual(c.config(2).voters, [1, 2, 3]);
});

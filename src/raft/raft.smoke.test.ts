import { test } from "node:test";
import assert from "node:assert/strict";
import { TestCluster, enc } from "./testing.js";

test("three voters elect a leader and replicate a proposal to all", () => {
  const c = new TestCluster({ voters: [1, 2, 3] });
  c.elect(1);
  assert.equal(c.leader(), 1);
  c.node(1).propose(enc("hello"));
  c.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(c.appliedData(id), ["hello"]);
  const st = c.node(1).status();
  // Index 1 is the bootstrap snapshot, 2 the leader's empty entry, 3 the proposal.
  assert.equal(st.commit, 3);
  assert.equal(st.progress!.get(2)!.match, 3);
});

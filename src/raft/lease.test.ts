import { test } from "node:test";
import assert from "node:assert/strict";
import { LeaderLease } from "./lease.js";

const voters = { incoming: new Set([1, 2, 3]), outgoing: new Set<number>() };

test("the lease runs from the heartbeat a quorum echoed, for an election timeout minus the drift", () => {
  const l = new LeaderLease();
  assert.equal(l.valid(voters, 1, 5, 10, 2), false, "no acknowledgement yet");
  l.onAck(2, 5);
  assert.equal(l.valid(voters, 1, 12, 10, 2), true, "quorum {1, 2} from tick 5: valid before 13");
  assert.equal(l.valid(voters, 1, 13, 10, 2), false);
  l.onAck(3, 12);
  l.onAck(2, 3); // an older stamp does not move the lease back
  assert.equal(l.valid(voters, 1, 19, 10, 2), true);
  l.clear();
  assert.equal(l.valid(voters, 1, 13, 10, 2), false, "cleared on transfer or leadership change");
});

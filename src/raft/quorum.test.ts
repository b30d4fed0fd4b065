import { test } from "node:test";
import assert from "node:assert/strict";
import { VoteResult, jointCommittedIndex, jointQuorumReached, jointVoteResult, majorityCommittedIndex, majorityVoteResult } from "./quorum.js";

const acked = (m: Record<number, number>) => (id: number) => m[id];

test("majority committed index is the highest index held by a majority", () => {
  assert.equal(majorityCommittedIndex(new Set([1, 2, 3]), acked({ 1: 5, 2: 3, 3: 1 })), 3);
  assert.equal(majorityCommittedIndex(new Set([1, 2, 3, 4]), acked({ 1: 5, 2: 3, 3: 1, 4: 9 })), 3);
  assert.equal(majorityCommittedIndex(new Set([1, 2, 3]), acked({ 1: 5 })), 0, "unknown counts as 0");
  assert.equal(majorityCommittedIndex(new Set(), acked({})), Infinity, "an empty half never limits a joint config");
});

test("joint committed index is the lower of the two halves", () => {
  const c = { incoming: new Set([1, 2, 3]), outgoing: new Set([3, 4, 5]) };
  assert.equal(jointCommittedIndex(c, acked({ 1: 9, 2: 9, 3: 4, 4: 2, 5: 1 })), 2);
  assert.equal(jointCommittedIndex({ incoming: new Set([1]), outgoing: new Set() }, acked({ 1: 7 })), 7);
});

test("vote results: won, lost, or pending while the outcome is open", () => {
  const v = new Set([1, 2, 3]);
  assert.equal(majorityVoteResult(v, new Map([[1, true], [2, true]])), VoteResult.Won);
  assert.equal(majorityVoteResult(v, new Map([[1, true], [2, false]])), VoteResult.Pending);
  assert.equal(majorityVoteResult(v, new Map([[1, false], [2, false]])), VoteResult.Lost);
  const joint = { incoming: new Set([1, 2, 3]), outgoing: new Set([4, 5, 6]) };
  assert.equal(jointVoteResult(joint, new Map([[1, true], [2, true], [4, true]])), VoteResult.Pending);
  assert.equal(jointVoteResult(joint, new Map([[1, true], [2, true], [4, false], [5, false]])), VoteResult.Lost);
  assert.equal(jointVoteResult(joint, new Map([[1, true], [2, true], [4, true], [5, true]])), VoteResult.Won);
});

test("jointQuorumReached says Won exactly when a full vote of the same voters would (every configuration of up to 5 + 5 ids, every vote)", () => {
  // Ids 1..7: each configuration half a subset, every subset of granted ids.
  const ids = [1, 2, 3, 4, 5, 6, 7];
  const subsets = (bits: number) => new Set(ids.filter((_, i) => bits & (1 << i)));
  let checked = 0;
  for (let inBits = 0; inBits < 1 << 5; inBits++) {
    for (let outBits = 0; outBits < 1 << 7; outBits += 5) {
      const c = { incoming: subsets(inBits), outgoing: subsets(outBits) };
      for (let grantedBits = 0; grantedBits < 1 << 7; grantedBits += 3) {
        const granted = subsets(grantedBits);
        const votes = new Map(ids.map((id) => [id, granted.has(id)]));
        assert.equal(jointQuorumReached(c, (id) => granted.has(id)), jointVoteResult(c, votes) === VoteResult.Won,
          `incoming ${[...c.incoming]}, outgoing ${[...c.outgoing]}, granted ${[...granted]}`);
        checked++;
      }
    }
  }
  assert.ok(checked > 10_000);
});

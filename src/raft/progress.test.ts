import { test } from "node:test";
import assert from "node:assert/strict";
import { Progress, ProgressState } from "./progress.js";

test("probe sends one append at a time; replicate pipelines within the window", () => {
  const p = new Progress(5, false, 2, 0);
  assert.equal(p.isPaused(), false);
  p.sentEntries(7, 10);
  assert.equal(p.isPaused(), true, "probe waits for the answer");
  p.maybeUpdate(7);
  p.becomeReplicate();
  assert.equal(p.next, 8);
  p.sentEntries(9, 10);
  p.sentEntries(11, 10);
  assert.equal(p.isPaused(), true, "window of 2 is full");
  assert.equal(p.next, 12);
});

test("rejections: stale ones are ignored, fresh ones move next back (invariant: match < next)", () => {
  const p = new Progress(10, false, 4, 0);
  p.maybeUpdate(5);
  p.becomeReplicate();
  assert.equal(p.maybeDecreaseTo(4, 2), false, "rejection of an index below match is stale");
  assert.equal(p.maybeDecreaseTo(7, 6), true);
  assert.equal(p.next, 6);
  p.becomeProbe();
  p.next = 9;
  assert.equal(p.maybeDecreaseTo(5, 5), false, "probe only honours a rejection of next - 1");
  assert.equal(p.maybeDecreaseTo(8, 6), true);
  assert.equal(p.next, 7);
  assert.ok(p.match < p.next);
});

test("snapshot state pauses appends and resumes after the snapshot index", () => {
  const p = new Progress(3, false, 4, 0);
  p.becomeSnapshot(50);
  assert.equal(p.state, ProgressState.Snapshot);
  assert.equal(p.isPaused(), true);
  p.becomeProbe();
  assert.equal(p.next, 51);
  assert.equal(p.pendingSnapshot, 0);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { SnapshotReceiver, SnapshotSender } from "./snapshot-stream.js";
import type { Snapshot } from "./types.js";

const snap = (n: number): Snapshot => ({
  meta: { index: 9, term: 2, confState: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
  data: new Uint8Array(n).map((_, i) => i),
});

test("the sender keeps at most a window of bytes unacknowledged", () => {
  const s = new SnapshotSender(snap(100), 10, 30);
  assert.deepEqual(s.nextChunks().map((c) => c.offset), [0, 10, 20]);
  assert.deepEqual(s.nextChunks(), [], "window full");
  s.onAck(10, 0);
  assert.deepEqual(s.nextChunks().map((c) => c.offset), [30]);
});

test("a stalled transfer resumes from the acknowledged offset, not from the start", () => {
  const s = new SnapshotSender(snap(100), 10, 30);
  s.nextChunks();
  s.onAck(20, 0); // the chunk at 20 was lost
  s.nextChunks(); // 30, 40 go out
  s.onHeartbeat(); // progress since the last heartbeat: no rewind yet
  assert.deepEqual(s.nextChunks(), []);
  s.onHeartbeat(); // no progress for a whole interval: rewind
  assert.deepEqual(s.nextChunks().map((c) => c.offset), [20, 30, 40]);
  assert.equal(s.attempt, 1);
});

test("late acknowledgements of an earlier attempt cannot rewind the stream again", () => {
  const s = new SnapshotSender(snap(100), 10, 30);
  s.nextChunks();
  s.onAck(30, 0);
  s.onAck(0, 0); // the follower restarted and asks from 0: rewind, new attempt
  assert.equal(s.attempt, 1);
  s.nextChunks();
  s.onAck(10, 1);
  s.onAck(0, 0); // a stale answer to attempt 0
  assert.equal(s.acked, 10, "ignored");
  assert.equal(s.attempt, 1);
});

test("the receiver assembles chunks in order and repeats its position for anything else", () => {
  const sender = new SnapshotSender(snap(25), 10, 100);
  const chunks = sender.nextChunks();
  const rx = new SnapshotReceiver(chunks[0]!);
  assert.deepEqual(rx.receive(chunks[0]!), { kind: "ack", nextOffset: 10 });
  assert.deepEqual(rx.receive(chunks[2]!), { kind: "ack", nextOffset: 10 }, "after a gap");
  assert.deepEqual(rx.receive(chunks[0]!), { kind: "ack", nextOffset: 10 }, "a duplicate");
  rx.receive(chunks[1]!);
  const done = rx.receive(chunks[2]!);
  assert.equal(done.kind, "complete");
  assert.deepEqual(done.kind === "complete" ? [...done.snapshot.data] : [], [...snap(25).data]);
});

test("an empty snapshot still travels as one chunk", () => {
  const s = new SnapshotSender(snap(0), 10, 30);
  const chunks = s.nextChunks();
  assert.equal(chunks.length, 1);
  assert.equal(new SnapshotReceiver(chunks[0]!).receive(chunks[0]!).kind, "complete");
});

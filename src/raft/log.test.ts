import { test } from "node:test";
import assert from "node:assert/strict";
import { RaftLog } from "./log.js";
import { MemoryStorage } from "./storage.js";
import { type Entry, EntryType } from "./types.js";

const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array([index]) });

function logWith(terms: number[]): RaftLog {
  const s = new MemoryStorage();
  s.append(terms.map((t, i) => e(i + 1, t)));
  return new RaftLog(s, 1 << 20);
}

test("maybeAppend accepts matching entries, truncates conflicts, and commits up to the last new one", () => {
  const log = logWith([1, 1, 2]);
  assert.equal(log.maybeAppend(1, 1, 10, [e(2, 1), e(3, 3), e(4, 3)]), 4);
  assert.deepEqual([1, 2, 3, 4].map((i) => log.term(i)), [1, 1, 3, 3]);
  assert.equal(log.committed, 4, "commit is bounded by the last new entry");
  assert.equal(log.maybeAppend(4, 2, 10, []), -1, "mismatched previous term");
});

test("a conflict below the commit index is an assertion failure, never a silent overwrite", () => {
  const log = logWith([1, 1, 1]);
  log.commitTo(3);
  assert.throws(() => log.maybeAppend(1, 1, 3, [e(2, 2)]), /conflicts with committed/);
});

test("findConflictByTerm skips every entry whose term is too high", () => {
  const log = logWith([1, 1, 2, 2, 5, 5, 5]);
  assert.deepEqual(log.findConflictByTerm(7, 3), { index: 4, term: 2 });
  assert.deepEqual(log.findConflictByTerm(7, 5), { index: 7, term: 5 });
  assert.deepEqual(log.findConflictByTerm(3, 0), { index: 0, term: 0 });
});

test("stableTo keeps entries that were replaced while being written (index and term must match)", () => {
  const log = logWith([]);
  log.append([e(1, 1), e(2, 1)]);
  log.append([e(2, 2)]); // replaced before the write of (2, 1) finished
  log.stableTo(2, 1);
  assert.deepEqual(log.unstableEntries().map((x) => x.term), [1, 2], "nothing marked stable");
  log.stableTo(2, 2);
  assert.deepEqual(log.unstableEntries(), []);
});

test("commit never regresses; up-to-date comparison uses last term, then last index", () => {
  const log = logWith([1, 2, 2]);
  log.commitTo(3);
  log.commitTo(1);
  assert.equal(log.committed, 3);
  assert.equal(log.isUpToDate(2, 3), true);
  assert.equal(log.isUpToDate(3, 2), true);
  assert.equal(log.isUpToDate(2, 2), false);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Rng } from "../util/rng.js";
import { tempDir } from "../util/temp-dir.js";
import { open } from "lmdb";
import { StateStore } from "./state-store.js";
import { readFrames } from "./snapshot-frames.js";

const tmp = () => tempDir("shoal-state-");

test("applied records and applied indexes of several groups persist across a reopen", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir });
  s.apply([
    { group: 1, appliedIndex: 5, puts: [["a", { x: 1 }], ["b", { x: 2 }]] },
    { group: 2, appliedIndex: 9, puts: [["a", "other group"]] },
  ]);
  s.apply([{ group: 1, appliedIndex: 6, deletes: ["a"], puts: [["c", [1, 2, 3]]] }]);
  await s.flushed();
  await s.close();
  const r = StateStore.open({ path: dir });
  assert.equal(r.applied(1), 6);
  assert.equal(r.applied(2), 9);
  assert.equal(r.get(1, "a"), undefined);
  assert.deepEqual(r.scan(1, 10), [["b", { x: 2 }], ["c", [1, 2, 3]]]);
  assert.deepEqual(r.scan(1, 10, "b"), [["c", [1, 2, 3]]]);
  assert.deepEqual(r.scan(2, 10), [["a", "other group"]]);
  assert.throws(() => r.apply([{ group: 1, appliedIndex: 3 }]), /regresses/);
  await r.close();
  rmSync(dir, { recursive: true });
});

test("packedPart: a walk in parts over what LMDB holds of a group, picked, values as stored; packed puts store those bytes as they are; the filling mark", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir });
  const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
  s.apply([{ group: 1, appliedIndex: 1, puts: keys.map((k, i) => [k, { x: i }]) }, { group: 2, appliedIndex: 1, puts: [["a", "other group"]] }]);
  s.apply([{ group: 3, appliedIndex: 5, fillFrom: 1 }]);
  assert.equal(s.fillingFrom(3), 1, "marked while staged");
  await s.flushed();
  // Walked 4 keys at a time: 4 + 4 + 2, the last part short, so the walk is done.
  const picked: [string, Uint8Array][] = [];
  let cursor: unknown;
  let parts = 0;
  do {
    const part = s.packedPart(1, (k) => k !== "k3", cursor, 4);
    picked.push(...part.entries);
    cursor = part.cursor;
    parts++;
  } while (cursor !== undefined);
  assert.equal(parts, 3);
  assert.deepEqual(picked.map(([k]) => k), keys.filter((k) => k !== "k3"), "in key order, only what is picked, each once, nothing of group 2");
  // A walk whose last part is exactly full ends with an empty one.
  assert.equal(s.packedPart(1, () => true, undefined, 10).cursor !== undefined, true);
  // Moved as stored to another group, they read back as the values.
  s.apply([{ group: 3, appliedIndex: 5, packedPuts: picked, fillFrom: null }, { group: 1, appliedIndex: 1, deletes: picked.map(([k]) => k) }]);
  assert.equal(s.fillingFrom(3), undefined, "cleared while staged");
  assert.deepEqual(s.scan(3, 3), [["k0", { x: 0 }], ["k1", { x: 1 }], ["k2", { x: 2 }]]);
  await s.flushed();
  await s.close();
  const r = StateStore.open({ path: dir });
  assert.deepEqual(r.scan(3, 3), [["k0", { x: 0 }], ["k1", { x: 1 }], ["k2", { x: 2 }]], "and so after a reopen");
  assert.deepEqual(r.scan(1, 10), [["k3", { x: 3 }]], "the parent keeps what was not picked");
  const snapshotKeys = (keep?: (k: string) => boolean) => readFrames(r.snapshot(1, keep === undefined ? undefined : () => keep).data).flatMap(([, pairs]) => pairs.map(([k]) => k));
  assert.deepEqual(snapshotKeys(), ["k3"]);
  assert.deepEqual(snapshotKeys((k) => k !== "k3"), [], "a snapshot carries only what `keep` keeps");
  assert.equal(r.fillingFrom(3), undefined, "the cleared mark is durable");
  assert.deepEqual(r.packedPart(2, () => true, undefined, 5).entries.map(([k]) => k), ["a"]);
  assert.throws(() => r.apply([{ group: 3, appliedIndex: 6, packedPuts: [["e", new Uint8Array(0)]] }]), /without bytes/);
  r.apply([{ group: 4, appliedIndex: 5, fillFrom: 1 }]);
  await r.close();
  const t = StateStore.open({ path: dir });
  assert.equal(t.fillingFrom(4), 1, "a mark is durable");
  await t.close();
  rmSync(dir, { recursive: true });
});

test("keys of 64 characters or more holding NULs come back whole from scans and snapshots (LMDB's array keys split them)", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir });
  // As stores written before outcomes were keyed by version hold them: record id, NUL, idempotency key.
  const long = `\u007fk${"r".repeat(40)}\u0000${"0".repeat(36)}`;
  const short = "\u007fkrec\u0000key";
  const unit = `\u007fv${"0".repeat(16)}\u001f${"r".repeat(40)}\u001f${"k".repeat(36)}`;
  s.apply([{ group: 1, appliedIndex: 3, puts: [["a", 1], [long, { v: 1 }], [short, { v: 2 }], [unit, { v: 3 }]] }]);
  await s.flushed();
  await s.close();
  const r = StateStore.open({ path: dir });
  const expected = [["a", 1], [long, { v: 1 }], [short, { v: 2 }], [unit, { v: 3 }]].sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
  assert.deepEqual(r.scan(1, 10), expected);
  assert.deepEqual(r.get(1, long), { v: 1 });
  const other = StateStore.open({ path: tmp() });
  const snap = r.snapshot(1);
  await other.installSnapshot(1, snap.appliedIndex, 1, snap.data);
  assert.deepEqual(other.scan(1, 10), expected, "a snapshot carries them whole");
  await r.close();
  await other.close();
  rmSync(dir, { recursive: true });
});

test("staged changes are read before LMDB, committed in batches off the loop thread, and a crash before a commit keeps store and applied index in step", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir, commitIntervalMs: 1000, commitMaxChanges: 1_000_000 });
  s.apply([{ group: 1, appliedIndex: 2, puts: [["a", 1], ["b", 2]] }]);
  await s.flushed(); // committed and durable: a=1, b=2 at applied 2
  const commitsBefore = s.commits;
  s.apply([{ group: 1, appliedIndex: 3, puts: [["a", 10]], deletes: ["b"] }], 100);
  s.apply([{ group: 1, appliedIndex: 4, puts: [["c", 30]] }], 100);
  assert.equal(s.get(1, "a"), 10, "a staged put is read");
  assert.equal(s.get(1, "b"), undefined, "a staged delete hides the committed record");
  assert.equal(s.applied(1), 4);
  assert.deepEqual(s.scan(1, 10), [["a", 10], ["c", 30]], "a scan merges staged changes over LMDB");
  s.commitIfDue(0);
  // In flight now: still read from memory until LMDB shows it.
  assert.equal(s.get(1, "a"), 10);
  assert.equal(s.applied(1), 4);
  s.commitIfDue(500);
  assert.equal(s.commits, commitsBefore + 1, "the first call commits (no commit yet in this interval); the second is inside the interval");
  s.apply([{ group: 1, appliedIndex: 5, puts: [["d", 40]], deletes: ["c"] }]);
  s.commitIfDue(900);
  assert.equal(s.commits, commitsBefore + 1);
  assert.deepEqual(s.scan(1, 10), [["a", 10], ["d", 40]], "staged over in-flight over LMDB");
  assert.deepEqual(s.scan(1, 1, "a"), [["d", 40]], "from a cursor, with a limit");
  await s.flushed();
  s.apply([{ group: 1, appliedIndex: 6, puts: [["e", 50]] }]);
  // Reopen without close (as after kill -9): the staged turn is gone, and with it its applied index.
  const r = StateStore.open({ path: dir });
  assert.equal(r.applied(1), 5);
  assert.equal(r.get(1, "e"), undefined);
  assert.equal(r.get(1, "d"), 40);
  assert.equal(r.get(1, "c"), undefined);
  await s.close();
  await r.close();
  const bounded = StateStore.open({ path: tmp(), commitIntervalMs: 1_000_000, commitMaxChanges: 3, commitMaxBytes: 1000 });
  bounded.apply([{ group: 1, appliedIndex: 1, puts: [["w", 1]] }]);
  bounded.commitIfDue(0); // the first commit starts the interval
  const c0 = bounded.commits;
  bounded.apply([{ group: 1, appliedIndex: 1, puts: [["x", 1]] }]);
  bounded.commitIfDue(1);
  assert.equal(bounded.commits, c0, "under every bound: staged");
  bounded.apply([{ group: 1, appliedIndex: 2, puts: [["y", 1]] }]);
  bounded.commitIfDue(2);
  assert.equal(bounded.commits, c0 + 1, "3 changes staged (2 records + applied index): committed");
  bounded.apply([{ group: 1, appliedIndex: 3, puts: [["z", 1]] }], 1000);
  bounded.commitIfDue(3);
  assert.equal(bounded.commits, c0 + 2, "byte bound reached: committed");
  await bounded.close();
  rmSync(dir, { recursive: true });
});

test("a staged record reads as what was put, not as the caller's object: changed after staging, it is not what a read sees, and reads before and after the commit agree", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir, commitIntervalMs: 60_000, commitMaxChanges: 1_000_000 });
  const value = { payload: { tags: ["a"], n: 1 }, version: 7 };
  s.apply([{ group: 1, appliedIndex: 1, puts: [["r", value], ["gone", 1]] }]);
  s.apply([{ group: 1, appliedIndex: 2, deletes: ["gone"] }]);
  value.payload.tags.push("changed later");
  value.version = 8;
  const staged = s.get(1, "r");
  assert.deepEqual(staged, { payload: { tags: ["a"], n: 1 }, version: 7 });
  assert.notEqual(s.get(1, "r"), staged, "each read decodes its own copy");
  assert.deepEqual(s.scan(1, 10), [["r", staged]], "a scan skips a staged delete and decodes a staged put");
  assert.equal(s.get(1, "gone"), undefined);
  await s.flushed();
  assert.deepEqual(s.get(1, "r"), staged);
  assert.deepEqual(s.scan(1, 10), [["r", staged]]);
  await s.close();
  rmSync(dir, { recursive: true });
});

test("commits in flight together, a large one ahead of small ones, settle in any order and every read sees the newest write", async () => {
  // lmdb-js settled a small commit's promise before the large one queued ahead of it (every few
  // commits here): the store asserted they settle in order, and a node under load stopped on it.
  const seed = 20261205;
  const rng = new Rng(seed);
  const dir = tmp();
  const s = StateStore.open({ path: dir, commitIntervalMs: 0 });
  const model = new Map<string, number>();
  const flushes: Promise<void>[] = [];
  for (let turn = 1; turn <= 300; turn++) {
    const n = turn % 4 === 1 ? 2000 + rng.int(2000) : 1 + rng.int(20);
    const puts: [string, unknown][] = [];
    const deletes: string[] = [];
    const touched = new Set<string>();
    for (let i = 0; i < n; i++) {
      const key = `k${rng.int(5000)}`;
      if (touched.has(key)) continue; // one change per key and turn, as an apply step stages them
      touched.add(key);
      if (rng.int(10) === 0) {
        deletes.push(key);
        model.delete(key);
      } else {
        puts.push([key, turn]);
        model.set(key, turn);
      }
    }
    s.apply([{ group: 1, appliedIndex: turn, puts, deletes }]);
    s.commit();
    if (turn % 25 === 0) flushes.push(s.flushed());
    if (rng.int(3) === 0) await new Promise((resolve) => setImmediate(resolve));
    for (let probe = 0; probe < 20; probe++) {
      const key = `k${rng.int(5000)}`;
      assert.equal(s.get(1, key), model.get(key), `seed ${seed}, turn ${turn}: ${key}`);
    }
  }
  await Promise.all(flushes);
  await s.flushed();
  await s.close();
  const r = StateStore.open({ path: dir });
  assert.equal(r.applied(1), 300);
  assert.deepEqual(new Map(r.scan(1, 10_000) as [string, number][]), model);
  await r.close();
  rmSync(dir, { recursive: true });
});

test("a commit that fails is never skipped over: a later one that succeeds keeps its changes readable, and the store then refuses work", async () => {
  const dir = tmp();
  const s = StateStore.open({ path: dir, commitIntervalMs: 0 });
  s.apply([{ group: 1, appliedIndex: 1, puts: [["kept", 1]] }]);
  await s.flushed();
  // LMDB's batches as the store sees them: the first one below fails without writing, after the
  // second one (which LMDB does write) has settled.
  const root = (s as unknown as { root: { batch: (work: () => void) => Promise<unknown> } }).root;
  const realBatch = root.batch.bind(root);
  let failFirst: (e: Error) => void = () => undefined;
  let calls = 0;
  root.batch = (work) => {
    calls++;
    if (calls === 1) return new Promise((_, reject) => (failFirst = reject));
    return realBatch(work);
  };
  s.apply([{ group: 1, appliedIndex: 2, puts: [["lost", 2]] }]);
  s.commit();
  s.apply([{ group: 1, appliedIndex: 3, puts: [["written", 3]] }]);
  s.commit();
  await (s as unknown as { inflight: { done: Promise<void> }[] }).inflight[1]!.done;
  assert.equal(s.get(1, "lost"), 2, "the unsettled first commit still answers reads from memory");
  assert.equal(s.get(1, "written"), 3);
  failFirst(new Error("disk full"));
  await assert.rejects(s.flushed(), /disk full/);
  assert.equal(s.get(1, "lost"), 2, "the failed commit is not skipped over");
  assert.throws(() => s.apply([{ group: 1, appliedIndex: 4, puts: [["after", 4]] }]), /disk full/);
  root.batch = realBatch;
  rmSync(dir, { recursive: true, force: true });
});

test("values are stored as plain msgpack maps, and values stored with msgpackr records (older stores) still read", async () => {
  const dir = tmp();
  const older = open({ path: dir, compression: false, maxDbs: 8 });
  const olderRecords = older.openDB<unknown, [number, string]>({ name: "records" });
  const meta = older.openDB<unknown, [number, string]>({ name: "meta" });
  await olderRecords.put([1, "old"], { payload: { v: "written before" }, version: 3 });
  await meta.put([1, "applied"], 3);
  assert.equal(olderRecords.getBinary([1, "old"])![0], 0xd4, "the older encoding starts with a record definition");
  await older.close();
  const s = StateStore.open({ path: dir });
  assert.deepEqual(s.get(1, "old"), { payload: { v: "written before" }, version: 3 });
  s.apply([{ group: 1, appliedIndex: 4, puts: [["new", { payload: { v: "written now" }, version: 4 }]] }]);
  await s.flushed();
  await s.close();
  const raw = open({ path: dir, compression: false, maxDbs: 8 });
  const bytes = raw.openDB<Uint8Array, [number, string]>({ name: "records", encoding: "binary" }).get([1, "new"])!;
  assert.equal(bytes[0], 0xde, "a map (map 16): no record definition");
  await raw.close();
  const r = StateStore.open({ path: dir });
  assert.deepEqual(r.scan(1, 10), [["new", { payload: { v: "written now" }, version: 4 }], ["old", { payload: { v: "written before" }, version: 3 }]]);
  await r.close();
  rmSync(dir, { recursive: true });
});

test("a snapshot taken in one store installs in another, replacing what was there", async () => {
  const a = StateStore.open({ path: tmp(), snapshotFrameRecords: 7 });
  const b = StateStore.open({ path: tmp() });
  const rng = new Rng(5);
  const puts: [string, unknown][] = Array.from({ length: 100 }, (_, i) => [`k${String(i).padStart(3, "0")}`, { n: rng.int(1000) }]);
  a.apply([{ group: 3, appliedIndex: 42, puts }, { group: 4, appliedIndex: 1, puts: [["other", 1]] }]);
  b.apply([{ group: 3, appliedIndex: 7, puts: [["stale", true], ["k000", "old"]] }]);
  await a.flushed();
  const snap = a.snapshot(3);
  assert.equal(snap.appliedIndex, 42);
  a.apply([{ group: 3, appliedIndex: 43, puts: [["not-yet", 1]] }]); // staged: not in a snapshot of LMDB
  assert.equal(a.snapshot(3).appliedIndex, 42, "a snapshot shows the last LMDB commit");
  b.apply([{ group: 3, appliedIndex: 8, puts: [["staged", true]] }]);
  await b.installSnapshot(3, snap.appliedIndex, 1, snap.data);
  assert.equal(b.get(3, "staged"), undefined, "staged changes of the group are superseded");
  assert.equal(b.applied(3), 42);
  assert.deepEqual(b.scan(3, 1000), a.scan(3, 1000).filter(([k]) => k !== "not-yet"));
  assert.equal(b.get(3, "stale"), undefined);
  assert.deepEqual(b.scan(4, 10), [], "other groups untouched");
  await a.close();
  await b.close();
});

test("kill -9 during snapshot installs: the group holds one whole version, and every returned install survived", async () => {
  const rng = new Rng(11);
  const helper = fileURLToPath(new URL("./testing/install-loop.js", import.meta.url));
  for (let trial = 0; trial < 4; trial++) {
    const dir = tmp();
    const target = rng.range(2, 8);
    const child = spawn(process.execPath, [helper, dir], { stdio: ["ignore", "pipe", "inherit"] });
    let lastReported = 0;
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error("helper made no progress within 60 s")), 60_000);
      child.stdout.on("data", (buf: Buffer) => {
        for (const line of buf.toString().split("\n")) {
          const m = /^installed (\d+)$/.exec(line);
          if (m) lastReported = Number(m[1]);
        }
        if (lastReported >= target) {
          clearTimeout(deadline);
          child.kill("SIGKILL"); // lands in the middle of the next install
          resolve();
        }
      });
    });
    await new Promise((resolve) => child.once("exit", resolve));
    const s = StateStore.open({ path: dir });
    const applied = s.applied(1);
    assert.ok(applied >= lastReported, `trial ${trial}: install ${lastReported} returned but applied is ${applied}`);
    const records = s.scan(1, 10_000);
    assert.equal(records.length, 3000, `trial ${trial}: a partial install is visible`);
    for (const [, value] of records) assert.equal((value as { v: number }).v, applied, `trial ${trial}: mixed versions`);
    await s.close();
    rmSync(dir, { recursive: true });
  }
});

test("a group's configuration is kept with its applied index, travels in its snapshot, and a dropped group leaves nothing", async () => {
  const dir = tmp();
  const a = StateStore.open({ path: dir });
  const conf = (voters: number[], learners: number[] = []) => ({ voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false });
  a.apply([{ group: 1, appliedIndex: 1, confState: conf([1, 2, 3]) }]);
  a.apply([{ group: 1, appliedIndex: 5, puts: [["k", 1]], confState: conf([1, 2, 3], [4]) }]);
  a.apply([{ group: 1, appliedIndex: 6, puts: [["k", 2]] }, { group: 2, appliedIndex: 3, puts: [["x", 1]] }]);
  assert.deepEqual(a.confState(1), conf([1, 2, 3], [4]), "the latest change, staged");
  await a.flushed();
  const snap = a.snapshot(1);
  assert.deepEqual(snap.confState, conf([1, 2, 3], [4]), "the snapshot's configuration is the one as of its index");
  const b = StateStore.open({ path: tmp() });
  await b.installSnapshot(1, snap.appliedIndex, 1, snap.data, snap.confState);
  assert.deepEqual(b.confState(1), conf([1, 2, 3], [4]));
  await a.dropGroup(1);
  assert.equal(a.applied(1), 0);
  assert.equal(a.confState(1), undefined);
  assert.deepEqual(a.scan(1, 10), []);
  assert.deepEqual(a.groups(), [2], "only the other group is left");
  await a.close();
  const reopened = StateStore.open({ path: dir });
  assert.deepEqual(reopened.groups(), [2], "the drop is durable");
  assert.equal(reopened.get(2, "x"), 1);
  await reopened.close();
  await b.close();
});

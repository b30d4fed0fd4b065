import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StateStore, type GroupChanges } from "../../storage/state-store.js";
import { readFrames } from "../../storage/snapshot-frames.js";
import { type GroupLog, Wal, applyRecord } from "../../storage/wal.js";
import type { WalRecord } from "../../storage/wal-record.js";
import { silentLogger } from "../../util/logger.js";
import { Rng } from "../../util/rng.js";
import { SimDisk } from "./disk.js";

/** A seeded mix of applies, commits, snapshots and drops, run on the real store and on the simulated one. */
async function compareStores(seed: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "shoal-simdisk-"));
  const real = StateStore.open({ path: join(dir, "state") });
  const sim = new SimDisk(new Rng(seed)).openStateStore("/sim/state");
  const rng = new Rng(seed);
  const applied = new Map<number, number>();
  let reads = 0;
  let nowMs = 0;
  try {
    for (let step = 0; step < 400; step++) {
      const group = 1 + rng.int(3);
      const dice = rng.float();
      if (dice < 0.6) {
        const index = (applied.get(group) ?? 0) + 1 + rng.int(3);
        applied.set(group, index);
        const c: GroupChanges = { group, appliedIndex: index, puts: [], deletes: [] };
        for (let k = rng.int(4); k > 0; k--) c.puts!.push([`k${rng.int(20)}`, { v: rng.int(1000), at: index }]);
        for (let k = rng.int(2); k > 0; k--) c.deletes!.push(`k${rng.int(20)}`);
        if (rng.chance(0.1)) c.shard = { range: { start: 0, end: rng.int(1000) }, splits: [] };
        if (rng.chance(0.1)) c.unlogged = rng.chance(0.5);
        if (rng.chance(0.1)) c.confState = { voters: [1, 2, 1 + rng.int(5)], votersOutgoing: [], learners: [rng.int(9)], learnersNext: [], autoLeave: false };
        real.apply([c]);
        sim.apply([c]);
      } else if (dice < 0.65) {
        // The node's commit timer, on a virtual clock (both stores commit once a second by default).
        nowMs += rng.int(1500);
        real.commitIfDue(nowMs);
        sim.commitIfDue(nowMs);
      } else if (dice < 0.7) {
        await real.flushed();
        await sim.flushed();
      } else if (dice < 0.75) {
        await real.flushed();
        await sim.flushed();
        const snap = real.snapshot(group);
        assert.deepEqual(sim.snapshot(group).appliedIndex, snap.appliedIndex);
        const to = 1 + ((group + 1) % 3);
        const index = Math.max(snap.appliedIndex, applied.get(to) ?? 0);
        applied.set(to, index);
        await real.installSnapshot(to, index, 1, snap.data, snap.confState);
        await sim.installSnapshot(to, index, 1, snap.data, snap.confState);
      } else if (dice < 0.77) {
        applied.delete(group);
        await real.dropGroup(group);
        await sim.dropGroup(group);
      } else {
        const after = rng.chance(0.5) ? `k${rng.int(20)}` : undefined;
        const end = rng.chance(0.3) ? `k${rng.int(20)}` : undefined;
        const limit = 1 + rng.int(10);
        assert.deepEqual(sim.scan(group, limit, after, end), real.scan(group, limit, after, end), `scan at step ${step}`);
        const key = `k${rng.int(20)}`;
        assert.deepEqual(sim.get(group, key), real.get(group, key), `get ${key} at step ${step}`);
        assert.equal(sim.applied(group), real.applied(group));
        assert.deepEqual(sim.shardState(group), real.shardState(group));
        assert.deepEqual(sim.confState(group), real.confState(group));
        assert.equal(sim.unlogged(group), real.unlogged(group));
        assert.deepEqual(sim.groups(), real.groups());
        reads++;
      }
    }
    await real.flushed();
    await sim.flushed();
    assert.equal(sim.commits, real.commits, "as many commits");
    for (const group of real.groups()) {
      assert.deepEqual(sim.scan(group, 1000), real.scan(group, 1000), `group ${group} at the end`);
      const [a, b] = [sim.snapshot(group), real.snapshot(group)];
      assert.deepEqual([a.appliedIndex, a.confState, readFrames(a.data)], [b.appliedIndex, b.confState, readFrames(b.data)]);
    }
    return reads;
  } finally {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("sim disk: the simulated state store answers as the real one (LMDB) over seeded operations", async () => {
  for (const seed of [1, 2, 3]) assert.ok(await compareStores(seed) > 50, `seed ${seed} compared reads`);
});

const entry = (index: number, term: number) => ({ index, term, type: 0, data: new Uint8Array([index % 256]) });

test("sim disk: the WAL recovers what the real one recovers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shoal-simwal-"));
  try {
    const records: WalRecord[] = [
      { kind: "hard-state", group: 1, hardState: { term: 1, vote: 1, commit: 0 } },
      { kind: "entries", group: 1, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] },
      { kind: "entries", group: 2, entries: [entry(1, 1)] },
      { kind: "entries", group: 1, entries: [entry(3, 2), entry(4, 2)] },
      { kind: "hard-state", group: 1, hardState: { term: 2, vote: 1, commit: 3 } },
      { kind: "compact", group: 1, index: 2, term: 1 },
      { kind: "drop", group: 2 },
    ];
    const real = await Wal.open({ dir });
    const disk = new SimDisk(new Rng(1));
    const sim = await disk.openWal("/sim/wal", silentLogger);
    for (const r of records) {
      await real.wal.append([r]);
      await sim.wal.append([r]);
    }
    await real.wal.close();
    const again = await Wal.open({ dir });
    await again.wal.close();
    disk.crash();
    const simAgain = await disk.openWal("/sim/wal", silentLogger);
    assert.deepEqual(simAgain.groups, again.groups);
    assert.equal(simAgain.groups.get(1)!.entries.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Small segments on both sides, so that both rotate (at different records: the real WAL counts bytes,
 * the simulated one records) and delete segments; what they recover must not depend on where.
 */
const SEGMENT_BYTES = 2048;
const SEGMENT_RECORDS = 20;

/**
 * A seeded stream of valid records (entries that overwrite suffixes, hard states, compactions, snapshots,
 * drops; several groups; batches; synced and not) appended to the real WAL and to the simulated one; both reopened now and then: they must recover the same.
 */
async function compareWals(seed: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "shoal-simwal-"));
  const rng = new Rng(seed);
  const disk = new SimDisk(new Rng(seed), { segmentRecords: SEGMENT_RECORDS });
  let real = (await Wal.open({ dir, segmentBytes: SEGMENT_BYTES })).wal;
  let sim = (await disk.openWal("/sim/wal", silentLogger)).wal;
  /** What the records mean so far (so that generated compactions name the right terms). */
  const model = new Map<number, GroupLog>();
  let compared = 0;
  try {
    for (let step = 0; step < 300; step++) {
      const batch: WalRecord[] = [];
      for (let n = 1 + rng.int(3); n > 0; n--) {
        const group = 1 + rng.int(3);
        const g = model.get(group);
        const start = g?.start.index ?? 0;
        const last = start + (g?.entries.length ?? 0);
        const term = Math.max(g?.hardState.term ?? 0, g?.entries[g.entries.length - 1]?.term ?? 0, g?.start.term ?? 0, 1);
        const dice = rng.float();
        let r: WalRecord;
        if (dice < 0.5) {
          const from = Math.max(start + 1, last + 1 - rng.int(3));
          const t = term + (rng.chance(0.2) ? 1 : 0);
          r = { kind: "entries", group, entries: Array.from({ length: 1 + rng.int(4) }, (_, i) => entry(from + i, t)) };
        } else if (dice < 0.7) {
          r = { kind: "hard-state", group, hardState: { term, vote: rng.int(4), commit: rng.int(last + 1) } };
        } else if (dice < 0.85 && last > start) {
          const index = start + 1 + rng.int(last - start);
          r = { kind: "compact", group, index, term: g!.entries[index - start - 1]!.term };
        } else if (dice < 0.95) {
          const confState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
          r = { kind: "snapshot", group, index: last + rng.int(5), term, confState };
        } else {
          r = { kind: "drop", group };
        }
        applyRecord(model, r);
        batch.push(r);
      }
      const sync = rng.chance(0.7);
      await real.append(batch, sync);
      await sim.append(batch, sync);
      if (rng.chance(0.05) || step === 299) {
        await real.close();
        await sim.close();
        const r = await Wal.open({ dir, segmentBytes: SEGMENT_BYTES });
        const s = await disk.openWal("/sim/wal", silentLogger);
        assert.deepEqual(s.groups, r.groups, `seed ${seed}: recovered at step ${step}`);
        assert.deepEqual([...s.groups.keys()].sort(), [...model.keys()].sort());
        real = r.wal;
        sim = s.wal;
        compared++;
      }
    }
    assert.ok(disk.counts.segmentsOpened > 3 && disk.counts.segmentsDeleted > 0,
      `seed ${seed}: the simulated WAL rotated (${disk.counts.segmentsOpened}) and deleted (${disk.counts.segmentsDeleted}) segments`);
    const newest = Math.max(...readdirSync(dir).map((n) => parseInt(n.slice(0, 16), 16)));
    assert.ok(newest > 3, `seed ${seed}: the real WAL rotated (segment ${newest})`);
    return compared;
  } finally {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("sim disk: the simulated WAL recovers what the real one recovers over seeded record streams", async () => {
  for (const seed of [1, 2, 3, 4]) assert.ok(await compareWals(seed) >= 3, `seed ${seed} reopened several times`);
});

test("sim disk: a crash loses unsynced WAL records (some may land, a torn tail is cut) and staged state; old handles refuse", async () => {
  let lostSome = false;
  let tore = false;
  for (let seed = 1; seed <= 20; seed++) {
    const disk = new SimDisk(new Rng(seed));
    disk.setFaults({ walAppendFailProbability: 0, corruptTailOnCrashProbability: 0.5 });
    const { wal } = await disk.openWal("/sim/wal", silentLogger);
    await wal.append([{ kind: "entries", group: 1, entries: [entry(1, 1)] }], true);
    await wal.append([{ kind: "hard-state", group: 1, hardState: { term: 1, vote: 0, commit: 1 } }], false);
    const store = disk.openStateStore("/sim/state");
    store.apply([{ group: 1, appliedIndex: 1, puts: [["a", 1]] }]);
    await store.flushed();
    store.apply([{ group: 1, appliedIndex: 2, puts: [["b", 2]] }]);
    disk.crash();
    await assert.rejects(wal.append([{ kind: "drop", group: 9 }]), /closed by crash/);
    assert.throws(() => store.apply([]), /closed by crash/);
    const { groups } = await disk.openWal("/sim/wal", silentLogger);
    assert.equal(groups.get(1)!.entries.length, 1, "the synced entry is there");
    const commit = groups.get(1)!.hardState.commit;
    lostSome ||= commit === 0;
    tore ||= disk.counts.tornTails > 0;
    const reopened = disk.openStateStore("/sim/state");
    assert.equal(reopened.applied(1), 1);
    assert.equal(reopened.get(1, "a"), 1);
    assert.equal(reopened.get(1, "b"), undefined);
  }
  assert.ok(lostSome && tore, "over 20 seeds some unsynced records were lost and some tails torn");
});

test("sim disk: an injected write failure rejects the append", async () => {
  const disk = new SimDisk(new Rng(1));
  disk.setFaults({ walAppendFailProbability: 1, corruptTailOnCrashProbability: 0 });
  const { wal } = await disk.openWal("/sim/wal", silentLogger);
  await assert.rejects(wal.append([{ kind: "drop", group: 1 }]), /injected disk fault/);
});

test("sim disk: an append in flight at a crash is never acknowledged; recovery holds it whole or not at all", async () => {
  const outcomes = new Set<number>();
  for (let seed = 1; seed <= 20; seed++) {
    const disk = new SimDisk(new Rng(seed));
    const { wal } = await disk.openWal("/sim/wal", silentLogger);
    await wal.append([{ kind: "entries", group: 1, entries: [entry(1, 1)] }]);
    const inFlight = wal.append([{ kind: "entries", group: 1, entries: [entry(2, 1), entry(3, 1)] }]);
    disk.crash();
    await assert.rejects(inFlight, /closed by crash/);
    const { groups, wal: next } = await disk.openWal("/sim/wal", silentLogger);
    const indexes = groups.get(1)!.entries.map((e) => e.index);
    assert.ok(indexes.length === 1 || indexes.length === 3, `seed ${seed}: recovered ${indexes.join(",")}`);
    outcomes.add(indexes.length);
    // The new incarnation goes on from what was recovered.
    await next.append([{ kind: "entries", group: 1, entries: [entry(2, 2)] }]);
    disk.crash();
    const after = await disk.openWal("/sim/wal", silentLogger);
    assert.deepEqual(after.groups.get(1)!.entries.map((e) => `${e.index}@${e.term}`), ["1@1", "2@2"]);
  }
  assert.deepEqual([...outcomes].sort(), [1, 3], "over 20 seeds the in-flight records were lost and landed");
});

test("sim disk: after a torn tail is cut, later appends recover", async () => {
  let tornSeeds = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new SimDisk(new Rng(seed));
    disk.setFaults({ walAppendFailProbability: 0, corruptTailOnCrashProbability: 1 });
    const { wal } = await disk.openWal("/sim/wal", silentLogger);
    await wal.append([{ kind: "hard-state", group: 1, hardState: { term: 1, vote: 1, commit: 0 } }]);
    await wal.append([{ kind: "entries", group: 1, entries: [entry(1, 1)] }], false);
    disk.crash();
    if (disk.counts.tornTails === 0) continue;
    tornSeeds++;
    const { groups, wal: next } = await disk.openWal("/sim/wal", silentLogger);
    assert.equal(groups.get(1)!.entries.length, 0, "the unsynced entry was lost");
    assert.equal(groups.get(1)!.hardState.term, 1, "the synced hard state stays");
    await next.append([{ kind: "entries", group: 1, entries: [entry(1, 2)] }]);
    disk.crash();
    const after = await disk.openWal("/sim/wal", silentLogger);
    assert.deepEqual(after.groups.get(1)!.entries.map((e) => `${e.index}@${e.term}`), ["1@2"], `seed ${seed}`);
  }
  assert.ok(tornSeeds >= 5, `torn tails in ${tornSeeds} of 40 seeds`);
});

test("sim disk: the node and the disk share no mutable objects once written", async () => {
  const disk = new SimDisk(new Rng(1));
  const { wal } = await disk.openWal("/sim/wal", silentLogger);
  const e = entry(1, 1);
  await wal.append([{ kind: "entries", group: 1, entries: [e] }]);
  e.data[0] = 99;
  e.term = 7;
  const { groups } = await disk.openWal("/sim/wal", silentLogger);
  assert.deepEqual([groups.get(1)!.entries[0]!.term, groups.get(1)!.entries[0]!.data[0]], [1, 1]);

  const store = disk.openStateStore("/sim/state");
  const value = { n: 1, list: [1, 2] };
  const shard = { range: { start: 0, end: 10 }, splits: [] };
  store.apply([{ group: 1, appliedIndex: 1, puts: [["a", value]], shard }]);
  await store.flushed();
  value.n = 2;
  value.list.push(3);
  shard.range.end = 99;
  assert.deepEqual(store.get(1, "a"), { n: 1, list: [1, 2] });
  (store.get(1, "a") as { n: number }).n = 3;
  assert.deepEqual(store.scan(1, 10), [["a", { n: 1, list: [1, 2] }]]);
  assert.equal(store.shardState(1)!.range.end, 10);
});

test("sim disk: every write of a store or WAL handle opened before a crash refuses", async () => {
  const disk = new SimDisk(new Rng(1));
  const { wal } = await disk.openWal("/sim/wal", silentLogger);
  const store = disk.openStateStore("/sim/state");
  store.apply([{ group: 1, appliedIndex: 1, puts: [["a", 1]] }]);
  await store.flushed();
  const snap = store.snapshot(1);
  disk.crash();
  await assert.rejects(wal.append([{ kind: "drop", group: 1 }]), /closed by crash/);
  assert.throws(() => store.apply([{ group: 1, appliedIndex: 2 }]), /closed by crash/);
  assert.throws(() => store.commitIfDue(10_000), /closed by crash/);
  assert.throws(() => store.snapshot(1), /closed by crash/);
  await assert.rejects(store.flushed(), /closed by crash/);
  await assert.rejects(store.installSnapshot(2, 1, 1, snap.data), /closed by crash/);
  await assert.rejects(store.dropGroup(1), /closed by crash/);
  await assert.rejects(store.close(), /closed by crash/);
  // The new incarnation's handles work, on the committed state.
  const again = disk.openStateStore("/sim/state");
  assert.equal(again.get(1, "a"), 1);
  again.apply([{ group: 1, appliedIndex: 2, puts: [["b", 2]] }]);
  await again.flushed();
  assert.deepEqual(again.scan(1, 10), [["a", 1], ["b", 2]]);
});

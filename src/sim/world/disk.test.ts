import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StateStore, type GroupChanges } from "../../storage/state-store.js";
import { Wal } from "../../storage/wal.js";
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
        real.apply([c]);
        sim.apply([c]);
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
        await real.installSnapshot(to, index, snap.data, snap.confState);
        await sim.installSnapshot(to, index, snap.data, snap.confState);
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
        assert.equal(sim.unlogged(group), real.unlogged(group));
        assert.deepEqual(sim.groups(), real.groups());
        reads++;
      }
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

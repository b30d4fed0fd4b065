import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, cpSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Entry, EntryType } from "../raft/index.js";
import { Rng } from "../util/rng.js";
import { tempDir } from "../util/temp-dir.js";
import { type GroupLog, Wal, WalCorruptionError, applyRecord } from "./wal.js";
import { type WalRecord, decodeRecord, encodeRecord } from "./wal-record.js";
import { type Logger, silentLogger } from "../util/logger.js";

const tmp = () => tempDir("shoal-wal-");
const entry = (index: number, term: number, size = 8): Entry =>
  ({ index, term, type: EntryType.Normal, data: new Uint8Array(size).fill(index & 0xff) });

/** A random but valid sequence of batches for a few groups (entries, hard states, compactions). */
function randomBatches(rng: Rng, batches: number, groups = 3): WalRecord[][] {
  const last = new Map<number, { index: number; term: number; start: number; terms: number[] }>();
  const out: WalRecord[][] = [];
  for (let b = 0; b < batches; b++) {
    const batch: WalRecord[] = [];
    for (let k = rng.range(1, 4); k > 0; k--) {
      const group = rng.range(1, groups);
      const g = last.get(group) ?? { index: 0, term: 1, start: 0, terms: [] };
      last.set(group, g);
      const r = rng.int(10);
      if (r < 6) {
        // Sometimes overwrite a suffix (a new leader's entries), never below the start.
        let from = g.index + 1;
        if (rng.chance(0.2) && g.index > g.start) from = rng.range(g.start + 1, g.index);
        if (from <= g.index) g.term++;
        const n = rng.range(1, 5);
        const ents = Array.from({ length: n }, (_, i) => entry(from + i, g.term, rng.range(0, 40)));
        g.terms.length = from - 1;
        for (const e of ents) g.terms[e.index - 1] = e.term;
        g.index = from + n - 1;
        batch.push({ kind: "entries", group, entries: ents });
      } else if (r < 9) {
        batch.push({ kind: "hard-state", group, hardState: { term: g.term, vote: rng.range(0, 3), commit: g.start } });
      } else if (g.index > g.start) {
        const index = rng.range(g.start + 1, g.index);
        g.start = index;
        batch.push({ kind: "compact", group, index, term: g.terms[index - 1]! });
      }
    }
    out.push(batch);
  }
  return out;
}

function model(records: WalRecord[]): Map<number, GroupLog> {
  const groups = new Map<number, GroupLog>();
  for (const r of records) applyRecord(groups, r);
  return groups;
}

async function writeAll(dir: string, batches: WalRecord[][], segmentBytes?: number): Promise<void> {
  const { wal } = await Wal.open({ dir, ...(segmentBytes ? { segmentBytes } : {}) });
  for (const b of batches) await wal.append(b);
  await wal.close();
}

const normalize = (groups: Map<number, GroupLog>) =>
  [...groups].sort((a, b) => a[0] - b[0]).map(([id, g]) => ({
    id, hardState: g.hardState, start: g.start,
    entries: g.entries.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString("hex")]),
  }));

test("records come back after a restart exactly as appended, per group", async () => {
  const dir = tmp();
  const batches = randomBatches(new Rng(1), 60);
  await writeAll(dir, batches);
  const { wal, groups, records } = await Wal.open({ dir });
  await wal.close();
  assert.equal(records, batches.flat().length);
  assert.deepEqual(normalize(groups), normalize(model(batches.flat())));
  rmSync(dir, { recursive: true });
});

test("entries at an existing index replace that entry and everything after it", () => {
  const groups = model([
    { kind: "entries", group: 1, entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)) },
    { kind: "entries", group: 1, entries: [3, 4].map((i) => entry(i, 2)) },
  ]);
  assert.deepEqual(groups.get(1)!.entries.map((e) => [e.index, e.term]), [[1, 1], [2, 1], [3, 2], [4, 2]]);
});

test("a crash at any byte of an unacknowledged write keeps everything acknowledged and nothing torn", async () => {
  const rng = new Rng(2);
  for (let trial = 0; trial < 60; trial++) {
    const dir = tmp();
    const batches = randomBatches(rng, rng.range(1, 20));
    const acked = batches.slice(0, -1);
    const inFlight = batches[batches.length - 1]!;
    await writeAll(dir, acked);
    // The crash: only a prefix of the in-flight batch's bytes reached the disk.
    const bytes = Buffer.concat(inFlight.map((r) => encodeRecord(r)));
    const cut = rng.int(bytes.byteLength);
    const segment = join(dir, readdirSync(dir).find((n) => n.endsWith(".wal"))!);
    appendFileSync(segment, bytes.subarray(0, cut));
    const { wal, groups, records } = await Wal.open({ dir });
    await wal.close();
    const ackedCount = acked.flat().length;
    assert.ok(records >= ackedCount, `trial ${trial}: lost acknowledged records`);
    assert.ok(records <= ackedCount + inFlight.length);
    // Whole records of the torn batch may survive; a torn one never does.
    const expected = model([...acked.flat(), ...inFlight.slice(0, records - ackedCount)]);
    assert.deepEqual(normalize(groups), normalize(expected), `trial ${trial}, cut at ${cut}`);
    // The torn tail was cut: the next open reads the same, and appends continue cleanly.
    const again = await Wal.open({ dir });
    assert.equal(again.records, records);
    await again.wal.append([{ kind: "hard-state", group: 9, hardState: { term: 1, vote: 0, commit: 0 } }]);
    await again.wal.close();
    const third = await Wal.open({ dir });
    await third.wal.close();
    assert.equal(third.records, records + 1);
    rmSync(dir, { recursive: true });
  }
});

/** A logger that keeps the warnings it is given. */
function warnings(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (a: unknown, b?: unknown) => void lines.push(String(typeof a === "string" ? a : b)), child: () => logger };
  return { logger, lines };
}

const segmentsOf = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".wal")).sort().map((n) => join(dir, n));

/** The bytes of a segment that hold records: decoded from the start up to the first that is not one. */
function recordBytes(path: string): { end: number; reason: string } {
  const buf = readFileSync(path);
  let offset = 0;
  for (;;) {
    const d = decodeRecord(buf, offset);
    if (!d.ok) return { end: d.offset, reason: d.reason };
    offset = d.nextOffset;
  }
}

test("the segment being written is allocated ahead: a crash leaves zeros after its records, which recovery reads as its end", async () => {
  const dir = tmp();
  const crashed = tmp();
  const batches = randomBatches(new Rng(5), 40);
  const { wal } = await Wal.open({ dir });
  for (const b of batches) await wal.append(b, true, batches.indexOf(b) % 2 === 0);
  const [segment] = segmentsOf(dir);
  const { end, reason } = recordBytes(segment!);
  assert.equal(reason, "malformed", "zeros follow the records");
  assert.ok(statSync(segment!).size > end, `the segment is allocated past its records (${statSync(segment!).size} > ${end})`);
  // The crash: the directory as it is while the WAL is open, zeros and all.
  cpSync(dir, crashed, { recursive: true });
  await wal.close();
  assert.equal(statSync(segment!).size, end, "close cuts the allocated zeros");

  const { logger, lines } = warnings();
  const recovered = await Wal.open({ dir: crashed, logger });
  assert.deepEqual(lines, [], "the zeros are no torn tail: nothing is cut");
  assert.equal(recovered.records, batches.flat().length);
  assert.deepEqual(normalize(recovered.groups), normalize(model(batches.flat())));
  // Appends continue after the last record, inside the allocated zeros, not after them.
  const more: WalRecord = { kind: "hard-state", group: 9, hardState: { term: 2, vote: 1, commit: 0 } };
  await recovered.wal.append([more]);
  await recovered.wal.close();
  const again = await Wal.open({ dir: crashed });
  await again.wal.close();
  assert.equal(again.records, batches.flat().length + 1);
  assert.deepEqual(normalize(again.groups), normalize(model([...batches.flat(), more])));
  rmSync(dir, { recursive: true });
  rmSync(crashed, { recursive: true });
});

test("a torn write inside the allocated zeros is cut as a torn tail, and the acknowledged records stay", async () => {
  const rng = new Rng(6);
  for (let trial = 0; trial < 20; trial++) {
    const dir = tmp();
    const crashed = tmp();
    const batches = randomBatches(rng, rng.range(2, 15));
    const acked = batches.slice(0, -1);
    const { wal } = await Wal.open({ dir });
    for (const b of acked) await wal.append(b);
    cpSync(dir, crashed, { recursive: true });
    await wal.close();
    // Only a prefix of the in-flight batch reached the disk, inside the zeros allocated after the records.
    const [segment] = segmentsOf(crashed);
    const buf = readFileSync(segment!);
    const { end } = recordBytes(segment!);
    const bytes = Buffer.concat(batches[batches.length - 1]!.map((r) => encodeRecord(r)));
    const cut = rng.range(1, bytes.byteLength - 1);
    bytes.copy(buf, end, 0, cut);
    writeFileSync(segment!, buf);
    const { logger, lines } = warnings();
    const { wal: reopened, records } = await Wal.open({ dir: crashed, logger });
    await reopened.close();
    assert.ok(records >= acked.flat().length, `trial ${trial}: lost acknowledged records`);
    assert.ok(records < batches.flat().length, `trial ${trial}: a torn record was read`);
    // A torn header whose cut left only zeros after the whole records reads as the end; anything else is cut, and said so.
    const whole = recordBytes(segment!).end;
    assert.ok(lines.length === 1 || zeroAfter(buf, whole), `trial ${trial}: the cut was not logged`);
    rmSync(dir, { recursive: true });
    rmSync(crashed, { recursive: true });
  }
});

const zeroAfter = (buf: Buffer, at: number) => buf.subarray(at).every((b) => b === 0);

test("a flipped byte never yields a corrupt record: recovery keeps the valid prefix", async () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 60; trial++) {
    const dir = tmp();
    const batches = randomBatches(rng, rng.range(2, 15));
    await writeAll(dir, batches);
    const segment = join(dir, readdirSync(dir).find((n) => n.endsWith(".wal"))!);
    const buf = readFileSync(segment);
    const at = rng.int(buf.byteLength);
    buf[at]! ^= 1 << rng.int(8);
    writeFileSync(segment, buf);
    const { wal, groups, records } = await Wal.open({ dir });
    await wal.close();
    const all = batches.flat();
    assert.ok(records < all.length, `trial ${trial}: the damaged record was not detected`);
    assert.deepEqual(normalize(groups), normalize(model(all.slice(0, records))), `trial ${trial}, byte ${at}`);
    rmSync(dir, { recursive: true });
  }
});

test("segments rotate with a checkpoint and are deleted once every group has compacted past them", async () => {
  const dir = tmp();
  const { wal } = await Wal.open({ dir, segmentBytes: 2048 });
  const all: WalRecord[] = [];
  for (let i = 1; i <= 400; i++) {
    const batch: WalRecord[] = [
      { kind: "entries", group: 1, entries: [entry(i, 1, 20)] },
      { kind: "entries", group: 2, entries: [entry(i, 1, 20)] },
      { kind: "hard-state", group: 1, hardState: { term: 1, vote: 1, commit: i } },
    ];
    // Both groups compact, group 2 lagging further behind.
    if (i % 10 === 0) batch.push({ kind: "compact", group: 1, index: i - 5, term: 1 });
    if (i % 25 === 0) batch.push({ kind: "compact", group: 2, index: i - 20, term: 1 });
    await wal.append(batch);
    all.push(...batch);
  }
  await wal.close();
  const files = readdirSync(dir).filter((n) => n.endsWith(".wal")).sort();
  const created = parseInt(files[files.length - 1]!.slice(0, 16), 16);
  assert.ok(created > 20, `it rotated (${created} segments)`);
  // Group 2 compacts up to 45 entries behind the tail: a few segments must stay, the rest go.
  assert.ok(files.length <= 8, `old segments were deleted (${files.length} of ${created} left)`);

  const reopened = await Wal.open({ dir });
  await reopened.wal.close();
  // Recovery from the retained segments gives exactly what replaying every record would.
  assert.deepEqual(normalize(reopened.groups), normalize(model(all)));
  rmSync(dir, { recursive: true });
});

test("damage in an older segment is refused, not silently cut", async () => {
  const dir = tmp();
  await writeAll(dir, randomBatches(new Rng(4), 80), 1024);
  const names = readdirSync(dir).filter((n) => n.endsWith(".wal")).sort();
  assert.ok(names.length >= 2);
  const first = join(dir, names[0]!);
  const buf = readFileSync(first);
  buf[Math.floor(buf.byteLength / 2)]! ^= 0xff;
  writeFileSync(first, buf);
  await assert.rejects(Wal.open({ dir }), WalCorruptionError);
  assert.ok(statSync(first).size === buf.byteLength, "nothing was truncated");
  rmSync(dir, { recursive: true });
});

test("a segment is cut to its records before the next one is made: zeros at the end of an older segment are damage", async () => {
  const dir = tmp();
  const { wal } = await Wal.open({ dir, segmentBytes: 1024 });
  for (const b of randomBatches(new Rng(7), 80)) await wal.append(b);
  const names = segmentsOf(dir);
  assert.ok(names.length >= 3, `it rotated (${names.length} segments)`);
  for (const path of names.slice(0, -1)) {
    const { end, reason } = recordBytes(path);
    assert.equal(reason, "end", `${path} holds records up to its end`);
    assert.equal(end, statSync(path).size);
  }
  const last = names[names.length - 1]!;
  assert.ok(statSync(last).size > recordBytes(last).end, "the segment being written is allocated ahead");
  await wal.close();
  // Zeros appended to an older segment are refused like any other damage before newer segments.
  appendFileSync(names[0]!, Buffer.alloc(64));
  await assert.rejects(Wal.open({ dir }), WalCorruptionError);
  rmSync(dir, { recursive: true });
});

test("a dropped group: gone on recovery, restarted from nothing by later records, and its entries no longer hold segments back", async () => {
  const dir = tmp();
  const { wal } = await Wal.open({ dir, segmentBytes: 2048 });
  await wal.append([{ kind: "entries", group: 7, entries: [entry(1, 1), entry(2, 1)] }, { kind: "hard-state", group: 7, hardState: { term: 1, vote: 1, commit: 2 } }]);
  // Group 7 never compacts: before its drop, it would keep every segment.
  for (let i = 1; i <= 100; i++) await wal.append([{ kind: "entries", group: 1, entries: [entry(i, 1, 40)] }, { kind: "compact", group: 1, index: i, term: 1 }]);
  const before = readdirSync(dir).filter((n) => n.endsWith(".wal")).length;
  assert.ok(before > 3, `segments are held back by group 7 (${before})`);
  await wal.append([{ kind: "drop", group: 7 }]);
  for (let i = 101; i <= 200; i++) await wal.append([{ kind: "entries", group: 1, entries: [entry(i, 1, 40)] }, { kind: "compact", group: 1, index: i, term: 1 }]);
  assert.ok(readdirSync(dir).filter((n) => n.endsWith(".wal")).length <= 3, "old segments deleted once group 7 was dropped");
  await wal.close();
  const reopened = await Wal.open({ dir });
  assert.equal(reopened.groups.has(7), false, "a dropped group is not recovered");
  // A new replica of the same group starts from nothing: nothing of the old one shows through.
  await reopened.wal.append([{ kind: "entries", group: 7, entries: [entry(1, 3)] }]);
  await reopened.wal.close();
  const again = await Wal.open({ dir });
  assert.deepEqual(again.groups.get(7)!.entries.map((e) => [e.index, e.term]), [[1, 3]]);
  assert.deepEqual(again.groups.get(7)!.hardState, { term: 0, vote: 0, commit: 0 });
  await again.wal.close();
  rmSync(dir, { recursive: true });
});

const confState = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

test("entries after an installed snapshot survive segment rotations (a checkpoint restates the snapshot, it does not install it)", async () => {
  const dir = tmp();
  const { wal } = await Wal.open({ dir, segmentBytes: 300 });
  await wal.append([{ kind: "snapshot", group: 1, index: 9, term: 1, confState }]);
  for (let i = 10; i <= 14; i++) await wal.append([{ kind: "entries", group: 1, entries: [entry(i, 1, 100)] }]);
  await wal.close();
  assert.ok(readdirSync(dir).length >= 3, "it rotated while entries after the snapshot are retained");
  const again = await Wal.open({ dir });
  await again.wal.close();
  const g = again.groups.get(1)!;
  assert.deepEqual(g.entries.map((e) => e.index), [10, 11, 12, 13, 14]);
  assert.deepEqual(g.start, { index: 9, term: 1 });
  assert.equal(g.snapshot?.index, 9);
  rmSync(dir, { recursive: true });
});

test("segments written before restated snapshots were marked recover their entries too", async () => {
  // The layout of earlier versions: a checkpoint's snapshot record without `checkpoint`, directly followed
  // by the group's checkpoint compaction. An installed snapshot that follows still replaces the log.
  const dir = tmp();
  const old: WalRecord[][] = [
    [{ kind: "snapshot", group: 1, index: 9, term: 1, confState }, { kind: "entries", group: 1, entries: [entry(10, 1), entry(11, 1)] }],
    [{ kind: "snapshot", group: 1, index: 9, term: 1, confState }, { kind: "compact", group: 1, index: 9, term: 1, checkpoint: true },
      { kind: "hard-state", group: 1, hardState: { term: 1, vote: 1, commit: 11 } }, { kind: "entries", group: 1, entries: [entry(12, 1)] }],
  ];
  old.forEach((records, i) => writeFileSync(join(dir, `${String(i + 1).padStart(16, "0")}.wal`), Buffer.concat(records.map((r) => encodeRecord(r)))));
  const { wal, groups } = await Wal.open({ dir });
  assert.deepEqual(groups.get(1)!.entries.map((e) => e.index), [10, 11, 12]);
  await wal.append([{ kind: "snapshot", group: 1, index: 20, term: 2, confState }]);
  await wal.close();
  const again = await Wal.open({ dir });
  await again.wal.close();
  assert.deepEqual(again.groups.get(1)!.entries, []);
  assert.deepEqual(again.groups.get(1)!.start, { index: 20, term: 2 });
  rmSync(dir, { recursive: true });
});

test("a group that went idle with a short log is named as holding segments back, and its compaction lets them go", async () => {
  const dir = tmp();
  const { wal } = await Wal.open({ dir, segmentBytes: 2048, segmentsMax: 3 });
  // Group 9 writes three entries and goes idle: far below any size-based compaction.
  await wal.append([{ kind: "entries", group: 9, entries: [entry(1, 1), entry(2, 1), entry(3, 1)] }]);
  let i = 1;
  const busy = async (until: () => boolean) => {
    for (; !until() && i < 10_000; i++) await wal.append([{ kind: "entries", group: 1, entries: [entry(i, 1, 40)] }, { kind: "compact", group: 1, index: i, term: 1 }]);
  };
  const segments = () => readdirSync(dir).filter((n) => n.endsWith(".wal")).length;
  await busy(() => segments() > 6);
  assert.deepEqual(wal.holdingBack(), [9], "group 9 holds the oldest segment");
  await wal.append([{ kind: "compact", group: 9, index: 3, term: 1 }]);
  await busy(() => segments() <= 3);
  assert.ok(segments() <= 3, `old segments deleted once group 9 compacted (${segments()} left)`);
  assert.deepEqual(wal.holdingBack(), []);
  await wal.close();
  rmSync(dir, { recursive: true });
});

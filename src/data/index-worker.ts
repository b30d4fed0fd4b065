/**
 * The index worker: a worker thread that holds every shard replica index of a node (shard-index.ts)
 * and does all of their work (taking applied writes into the graphs, searches, counts, saves), so that
 * none of it runs on the node's Raft loop. It answers requests at once, between slices of indexing
 * (INDEX_SLICE_OPS ops at a time), so a search never waits for the graph to catch up: it scans the
 * pending ops exactly instead.
 *
 * Messages are index-protocol.ts's. An index is saved once it has nothing pending and either as many
 * ops went in since its last save as half its size (at least SAVE_AFTER_OPS) or it has been idle with
 * unsaved changes for SAVE_IDLE_MS; and on `save-all` (the node stopping). A save writes its files a
 * chunk at a time (index-files.ts), answering searches in between; the index takes in no ops meanwhile.
 */
import { parentPort } from "node:worker_threads";
import { join } from "node:path";
import { ShardIndex, type IndexOp } from "./shard-index.js";
import { loadIndex, removeIndex, saveIndex } from "./index-files.js";
import type { FromWorker, ToWorker, WireOp } from "./index-protocol.js";
import { niceThisThread } from "./thread-priority.js";

/** Ops taken into the graphs per slice, across all indexes (a search waits at most one slice). */
const INDEX_SLICE_OPS = 256;
const SAVE_AFTER_OPS = 50_000;
const SAVE_IDLE_MS = 10_000;
/** Progress is reported at most this often (and whenever an index catches up). */
const PROGRESS_EVERY_MS = 100;

interface Held {
  index: ShardIndex;
  dir: string;
  /** Ops taken in since the last save, and when the last one was taken. */
  unsaved: number;
  changedAtMs: number;
  /** Ops and catch-up records received, ever (the service counts what it posted: the difference is in flight). */
  received: number;
  /** A save in flight: until it settles the index takes in no ops (its vectors are being written), searches go on. */
  saving: Promise<void> | null;
}

const port = parentPort;
if (port === null) throw new Error("index-worker.ts runs as a worker thread");
const held = new Map<number, Held>();
let root = "";
let scheduled = false;
let progressAtMs = 0;

function post(m: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(m, transfer);
}

function opsOf(wire: readonly WireOp[], vectors: Float32Array | null, dim: number): IndexOp[] {
  return wire.map(([id, version, at, fields]) => {
    if (fields === null) return { id, version, deleted: true as const };
    if (at < 0 || vectors === null) return { id, version, fields };
    return { id, version, vector: vectors.subarray(at * dim, (at + 1) * dim), fields };
  });
}

function get(group: number): Held {
  const h = held.get(group);
  if (h === undefined) throw new Error(`no index of shard ${group} is open`);
  return h;
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(work);
}

/** One slice of indexing over the indexes with pending ops, then the saves that are due. */
function work(): void {
  scheduled = false;
  let budget = INDEX_SLICE_OPS;
  const behind = [...held.entries()].filter(([, h]) => h.index.pendingCount > 0 && h.saving === null);
  const caughtUp: number[] = [];
  for (const [group, h] of behind) {
    if (budget <= 0) break;
    const taken = h.index.step(Math.max(16, Math.ceil(budget / behind.length)));
    budget -= taken;
    h.unsaved += taken;
    h.changedAtMs = Date.now();
    if (h.index.pendingCount === 0) caughtUp.push(group);
  }
  const now = Date.now();
  if (caughtUp.length > 0 || now - progressAtMs >= PROGRESS_EVERY_MS) reportProgress();
  for (const [group, h] of held) {
    if (h.index.pendingCount > 0 || h.unsaved === 0 || savingDirs.has(h.dir)) continue;
    // Saves grow with the index: one after as many changes as half its size keeps the bytes written linear.
    if (h.unsaved >= Math.max(SAVE_AFTER_OPS, h.index.size / 2) || now - h.changedAtMs >= SAVE_IDLE_MS) void save(group, h);
  }
  if ([...held.values()].some((h) => h.index.pendingCount > 0 && h.saving === null)) schedule();
  else if ([...held.values()].some((h) => h.unsaved > 0)) setTimeout(schedule, SAVE_IDLE_MS).unref();
}

function reportProgress(): void {
  progressAtMs = Date.now();
  post({ t: "progress", groups: [...held.entries()].map(([g, h]) => [g, h.index.indexedThrough, h.index.pendingCount, h.index.size, h.received]) });
}

/**
 * Folders with a save in flight. A replica's index closed and opened again (a fresh rebuild) must not
 * save into the folder an earlier save of it still writes: it waits for that one to end.
 */
const savingDirs = new Set<string>();

/** Saves one index (nothing pending, no save in flight); settles when its files are in place. */
function save(group: number, h: Held): Promise<void> {
  const indexedThrough = h.index.indexedThrough;
  const unsavedAtStart = h.unsaved;
  savingDirs.add(h.dir);
  const job = (async () => {
    // The body runs once `h.saving` is set, so that its `finally` clears it even when it throws at once.
    await Promise.resolve();
    try {
      const bytes = await saveIndex(h.dir, h.index, () => held.get(group) === h);
      h.unsaved -= unsavedAtStart;
      if (held.get(group) === h) post({ t: "saved", group, indexedThrough, sizeBytes: bytes });
    } catch (e) {
      // A replica closed meanwhile had its folder removed under the save: nothing to report.
      if (held.get(group) === h) post({ t: "log", level: "warn", group, message: `saving the index failed: ${(e as Error).message}` });
      h.unsaved = Math.max(1, h.unsaved); // tried again after SAVE_IDLE_MS
      h.changedAtMs = Date.now();
    } finally {
      savingDirs.delete(h.dir);
      h.saving = null;
      // Ops that came during the save wait for it; a save due again waits for the idle timer.
      schedule();
    }
  })();
  h.saving = job;
  return job;
}

function handle(m: ToWorker): void {
  switch (m.t) {
    case "init": {
      root = m.dir;
      const why = niceThisThread(m.niceness);
      if (why !== null) post({ t: "log", level: "warn", group: null, message: `the index worker runs at the loop's priority: ${why}` });
      return;
    }
    case "open": {
      const dir = join(root, String(m.group));
      const loaded = m.fresh ? { index: null, reason: "asked for a fresh index" } : loadIndex(dir, m.schema, m.keys);
      if (m.fresh) removeIndex(dir);
      const index = loaded.index ?? new ShardIndex(m.schema, m.keys);
      held.set(m.group, { index, dir, unsaved: 0, changedAtMs: Date.now(), received: 0, saving: null });
      post({ t: "opened", group: m.group, loadedThrough: loaded.index === null ? null : loaded.index.indexedThrough, size: index.size, ...(loaded.index === null ? { reason: loaded.reason } : {}) });
      return;
    }
    case "ops": {
      const h = get(m.group);
      h.received += m.ops.length;
      h.index.enqueue(opsOf(m.ops, m.vectors, h.index.schema?.dim ?? 0), m.appliedIndex);
      schedule();
      return;
    }
    case "sync-begin":
      get(m.group).index.beginSync();
      return;
    case "sync-page": {
      const h = get(m.group);
      h.received += m.ops.length;
      h.index.syncPage(opsOf(m.ops, m.vectors, h.index.schema?.dim ?? 0).filter((op): op is Extract<IndexOp, { fields: unknown }> => !("deleted" in op)));
      schedule();
      return;
    }
    case "sync-end":
      get(m.group).index.endSync();
      schedule();
      return;
    case "close": {
      const h = held.get(m.group);
      held.delete(m.group);
      if (h !== undefined && m.removeFiles) removeIndex(h.dir);
      else if (m.removeFiles) removeIndex(join(root, String(m.group)));
      return;
    }
    case "search": {
      const h = get(m.group);
      const r = h.index.search(m.query, m.opts);
      post({ t: "answer", req: m.req, value: { ...r, indexedThrough: h.index.indexedThrough, receivedThrough: h.index.receivedThrough } });
      return;
    }
    case "count": {
      const h = get(m.group);
      post({ t: "answer", req: m.req, value: { count: h.index.count(m.filter), indexedThrough: h.index.indexedThrough, receivedThrough: h.index.receivedThrough } });
      return;
    }
    case "save-all": {
      // What has nothing pending is saved now (after any save in flight); the rest is rebuilt or caught up
      // from the records on restart.
      void (async () => {
        let saved = 0;
        for (const [group, h] of held) {
          if (h.saving !== null) await h.saving;
          if (held.get(group) !== h || h.index.pendingCount > 0 || h.unsaved === 0 || savingDirs.has(h.dir)) continue;
          await save(group, h);
          saved++;
        }
        post({ t: "answer", req: m.req, value: { saved } });
      })();
      return;
    }
  }
}

port.on("message", (m: ToWorker) => {
  try {
    handle(m);
  } catch (e) {
    const req = "req" in m ? m.req : undefined;
    if (req !== undefined) post({ t: "failed", req, message: (e as Error).message });
    else post({ t: "log", level: "error", group: "group" in m ? m.group : null, message: `${m.t} failed: ${(e as Error).stack ?? String(e)}` });
  }
});

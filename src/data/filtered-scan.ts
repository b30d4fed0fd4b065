/**
 * Scanning a collection's records that satisfy a filter, in id order, and deleting them (issue 14:
 * scans and deletes by filter). Each shard's part is read on a replica after a ReadIndex round, in one
 * synchronous step (so at one applied index, with the shard's range then): its first `limit + 1`
 * matches after the cursor, examining at most EXAMINED_PER_PAGE_MAX records, and how far it looked
 * (`through`: the last id examined, or null when it reached the shard's end). The parts must tile the
 * hash space (search.ts fanOut). A page holds the matches up to the smallest `through` of the parts,
 * which every part examined completely: so a sparse filter yields short (even empty) pages with a
 * cursor rather than one unbounded walk, and the cursor is null exactly when every part reached its end.
 */
import type { Gateway } from "../node/gateway.js";
import type { MultiRaftNode } from "../node/multi-raft.js";
import { type StoredRecord, isExpired } from "../node/records.js";
import { sessionPairs } from "../node/scan.js";
import { type Filter, matches } from "./filter.js";
import { fanOut } from "./search.js";
import { type LevelBound, type ReadConsistency, type ShardView, levelBarrier } from "./index-service.js";

/** Records one part examines for one page, at most (one synchronous step on the replica's loop). */
export const EXAMINED_PER_PAGE_MAX = 10_000;
/** Records one delete-by-filter request deletes, at most; `more` says whether to ask again. */
export const DELETED_PER_REQUEST_MAX = 100_000;
const DELETE_PAGE = 1000;

export interface ReplicaScanRequest { filter: Filter | null; limit: number; after?: string; consistency: ReadConsistency; bound?: LevelBound }
/** `version`: the replica's applied version as it read (the answer's pair of a session token). */
export interface ReplicaScanAnswer extends ShardView { version: number; records: [string, StoredRecord][]; through: string | null; examined: number }

/** A part of a filtered scan on this node's replica of `group` (the "records-scan" service). */
export async function scanReplica(node: MultiRaftNode, group: number, req: ReplicaScanRequest): Promise<ReplicaScanAnswer> {
  await levelBarrier(node, group, req.consistency, req.bound);
  const view = node.shardView(group);
  const records: [string, StoredRecord][] = [];
  let after = req.after;
  let examined = 0;
  const nowMs = node.clock.wallMs();
  for (;;) {
    const want = Math.min(1000, EXAMINED_PER_PAGE_MAX - examined);
    const page = node.scan(group, want, after);
    for (const [id, r] of page) {
      examined++;
      after = id;
      if (isExpired(r, nowMs) || (req.filter !== null && !matches(req.filter, r.payload))) continue;
      records.push([id, r]);
      if (records.length > req.limit) return { ...view, version: node.appliedVersion(group), records, through: id, examined };
    }
    if (page.length < want) return { ...view, version: node.appliedVersion(group), records, through: null, examined };
    if (examined >= EXAMINED_PER_PAGE_MAX) return { ...view, version: node.appliedVersion(group), records, through: after ?? null, examined };
  }
}

export interface FilteredPage {
  /** Each answering shard and its version: the page's session token. */
  session: [number, number][];
  records: [string, StoredRecord][];
  /** Where the next page starts (after this id), or null: nothing follows. */
  cursor: string | null;
  examined: number;
}

/** A page of the collection's records satisfying `filter` after `after` (see the header). */
export async function scanFiltered(node: MultiRaftNode, gateway: Gateway, collection: string, filter: Filter | null, limit: number,
  after: string | undefined, consistency: ReadConsistency, timeoutMs: number, level?: LevelBound): Promise<FilteredPage> {
  const body: ReplicaScanRequest = { filter, limit, consistency, ...(after !== undefined ? { after } : {}), ...(level !== undefined ? { bound: level } : {}) };
  const out = await fanOut<ReplicaScanAnswer>(node, gateway, collection, timeoutMs, false,
    (shard) => gateway.ask("records-scan", shard, body, true) as Promise<ReplicaScanAnswer>);
  const bounds = out.parts.map((p) => p.through).filter((t): t is string => t !== null);
  const bound = bounds.length === 0 ? null : bounds.reduce((a, b) => (a < b ? a : b));
  const all = out.parts.flatMap((p) => p.records).filter(([id]) => bound === null || id <= bound);
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const examined = out.parts.reduce((s, p) => s + p.examined, 0);
  const session = sessionPairs(out.parts);
  if (all.length > limit) return { session, records: all.slice(0, limit), cursor: all[limit - 1]![0], examined };
  return { session, records: all, cursor: bound, examined };
}

/**
 * Deletes the collection's records satisfying `filter`, a page at a time (one proposal per shard per
 * page), up to `max` of them; `more`: others may match (ask again). Records written while it runs may or
 * may not be deleted; none deleted is reported twice.
 */
export async function deleteByFilter(node: MultiRaftNode, gateway: Gateway, collection: string, filter: Filter, max: number,
  timeoutMs: number): Promise<{ deleted: number; more: boolean; examined: number }> {
  let after: string | undefined;
  let deleted = 0;
  let examined = 0;
  for (;;) {
    const page = await scanFiltered(node, gateway, collection, filter, Math.min(DELETE_PAGE, max - deleted), after, "linearizable", timeoutMs);
    examined += page.examined;
    if (page.records.length > 0) {
      const r = await gateway.deleteMany(page.records.map(([id]) => id), collection);
      const failed = r.outcomes.find((o) => !o.ok);
      if (failed !== undefined && !failed.ok) throw failed.error;
      deleted += r.removed;
    }
    if (page.cursor === null) return { deleted, more: false, examined };
    if (deleted >= max) return { deleted, more: true, examined };
    after = page.cursor;
  }
}

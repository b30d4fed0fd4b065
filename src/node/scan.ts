/**
 * Scanning the collection in id order, one page at a time, while shards split and merge.
 *
 * In a hash collection shards own ranges of the ids' hash, so every shard holds ids all along the id
 * order: a page is the first `limit` ids after the cursor among every shard's own first `limit + 1`.
 * In a range collection shards own ranges of the ids themselves: a page asks only the shards from the
 * cursor on, one after another in range order, until it holds `limit + 1` records (scanInIdOrder).
 * Two things make either exact under splits and merges:
 *
 * - Each shard's part is read at a ReadIndex (MultiRaftNode.scanPage), on whichever replica serves it:
 *   the replica has applied everything committed before the page was asked, so a record that existed
 *   then is in it (an eventual read of a lagging replica may miss it: a write just acknowledged, or an
 *   absorb whose source the map has retired already). The part carries the range and the freeze the
 *   shard had at the index it was read at, records and range being moved together by every split and
 *   absorb (shard-apply.ts).
 * - The parts must tile the position space, each position covered by exactly one part (`coverSpace`):
 *   a frozen merge source overlapped by a target that absorbed it is left out (the target holds its
 *   records, and newer writes of them); a gap (a split the map does not show yet, a shard the map lists
 *   but this node reached before it existed) or an overlap of two live parts (one read before a split,
 *   one after) means the pieces do not fit: the page is read again, with the map and the children the
 *   parts name, until they fit or the request's time is up (503 `shard_split`, nothing done). A range
 *   collection's page tiles only the positions from the cursor to where it stopped: each part must
 *   hold the position where the one before it ended (and not be frozen), else it is asked again once
 *   the map changed.
 *
 * The map is only a hint of which shards to ask: what a page contains is decided by the shards' own
 * states, so a map that lags or leads the replicas cannot make it miss or repeat a record. The cursor is
 * the last id of the page; the next page starts after it, so no id is returned twice.
 */
import { KEY_SPACE_END, type ShardRange, comparePositions, describeRange, inRange, isEmptyRange, partitioningOf, wholeSpace } from "../meta/ranges.js";
import type { Gateway } from "./gateway.js";
import { type MultiRaftNode, NotHostedError, NotLeaderError, WrongShardError } from "./multi-raft.js";
import { CollectionNotFoundError } from "./group.js";
import { type MetaState, collectionPartitioning } from "../meta/state.js";
import type { Clock } from "../util/clock.js";
import { assert } from "../util/assert.js";
import type { StoredRecord } from "./records.js";

/** Reads of a page whose parts did not fit, at most (each waits for the map to change, briefly). */
const SCAN_ATTEMPTS_MAX = 50;
/** How long a page whose parts did not fit waits for the shard map to change before it reads again. */
const SCAN_RETRY_WAIT_MS = 50;

/** A page of one shard's records with the shard's own state at the index they were read at. */
export interface ShardPage {
  shard: number;
  /** The shard's range as of the read (its records are exactly those of this range). */
  range: ShardRange;
  /** Frozen for a merge: its records are final, and its target may hold them too. */
  frozen: boolean;
  /** Shards its latest splits made (they may not be in the map yet). */
  children: number[];
  /** Its first records after the cursor, in id order. */
  records: [string, StoredRecord][];
  /** The replica's applied version as it read (the page's pair of a session token). */
  version: number;
}

/** Each answering shard and the version it answered at: an answer's session token (api/session.ts). */
export function sessionPairs(parts: readonly { shard: number; version: number }[]): [number, number][] {
  return parts.map((p) => [p.shard, p.version]);
}

/** A page of a collection scan, and each shard read with its version (the page's session token). */
export interface CollectionPage { records: [string, StoredRecord][]; more: boolean; session: [number, number][] }

/**
 * The parts whose ranges tile `space` (a collection's whole position space, meta/ranges.ts wholeSpace)
 * exactly once, or null when they do not (a gap, two live parts overlapping, a range of the other kind).
 * Frozen parts covered by live ones are left out; empty ranges count for nothing.
 */
export function coverSpace<P extends { range: ShardRange; frozen: boolean }>(pages: readonly P[], space: ShardRange): P[] | null {
  const nonEmpty = pages.filter((p) => !isEmptyRange(p.range));
  if (nonEmpty.some((p) => partitioningOf(p.range) !== partitioningOf(space))) return null;
  const overlaps = (a: ShardRange, b: ShardRange) => a.start < b.end && b.start < a.end;
  const live = nonEmpty.filter((p) => !p.frozen);
  const frozen = nonEmpty.filter((p) => p.frozen);
  const chosen = [...live, ...frozen.filter((f) => !live.some((l) => overlaps(l.range, f.range)))].sort((a, b) => comparePositions(a.range.start, b.range.start));
  let at = space.start;
  for (const p of chosen) {
    if (p.range.start !== at) return null;
    at = p.range.end;
  }
  return at === space.end ? chosen : null;
}

/**
 * The first `limit` records after the cursor from parts that tile the position space, and whether more
 * follow. Each part holds its shard's first `limit + 1` records, so more follow exactly when the parts
 * hold more than `limit` together (no shard can hide one: a shard with more has sent limit + 1).
 */
export function mergePages(parts: readonly ShardPage[], limit: number): CollectionPage {
  const all = parts.flatMap((p) => p.records);
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { records: all.slice(0, limit), more: all.length > limit, session: sessionPairs(parts) };
}

/** The parts never fitted in time (splits or merges under way): answered like a split under a request (503). */
class UnsettledScanError extends WrongShardError {
  constructor() {
    super(0);
    this.message = "the shards' ranges did not fit together within the request's time (splits or merges under way): nothing was done; ask again";
  }
}

/** Errors of a shard's part that a newer map (or a moment) fixes: the shard moved, split or went. */
function moved(e: unknown): e is Error {
  return e instanceof WrongShardError || e instanceof NotHostedError || e instanceof NotLeaderError;
}

/** The collection's shards the map shows live (not retired into a merge target). */
export function liveShards(meta: Readonly<MetaState>, collection: string): number[] {
  return [...meta.shards.values()].filter((sh) => sh.collection === collection && sh.retiredInto === undefined).map((sh) => sh.id);
}

/** What a shard answers a request that must cover the position space: its range and freeze as of the answer. */
export interface TiledPart { shard: number; range: ShardRange; frozen: boolean; children: number[] }

export interface AskUntilTiled<A extends TiledPart> {
  /** What the answers must tile: the collection's whole position space (meta/ranges.ts wholeSpace). */
  space: ShardRange;
  /** The shards to ask in a round, from the map (it may throw to end the request: the collection went). */
  shards(meta: Readonly<MetaState>): number[];
  ask(shard: number): Promise<A>;
  /** Errors that a newer map fixes: the round is asked again. Any other error ends the request. */
  moved(e: Error): boolean;
  timeoutMs: number;
  roundsMax: number;
  roundWaitMs: number;
}

export interface Tiled<A> {
  /** The parts tiling the position space, or null when they never did in time. */
  cover: A[] | null;
  /** The last round's answers and failures, and how many shards it asked. */
  parts: A[];
  failed: { shard: number; error: Error }[];
  asked: number;
  rounds: number;
  timedOut: boolean;
}

/**
 * Asks shards until their answers tile the position space (see the header): the map's shards, and the
 * children the answers name when they leave a gap, each round after the map changes (or briefly).
 * Ends at a cover, at an error `moved` does not excuse, or after `roundsMax` rounds or `timeoutMs`.
 */
export async function askUntilTiled<A extends TiledPart>(node: MultiRaftNode, clock: Clock, o: AskUntilTiled<A>): Promise<Tiled<A>> {
  const deadlineMs = clock.nowMs() + o.timeoutMs;
  const named = new Set<number>();
  for (let round = 1; ; round++) {
    const meta = node.metaState();
    const shards = new Set(o.shards(meta));
    for (const child of named) if (meta.shards.get(child)?.retiredInto === undefined) shards.add(child);
    const settled = await Promise.all([...shards].map((shard) => o.ask(shard)
      .then((answer) => ({ shard, answer }), (e: unknown) => ({ shard, error: e instanceof Error ? e : new Error(String(e)) }))));
    const parts: A[] = [];
    const failed: { shard: number; error: Error }[] = [];
    for (const s of settled) {
      if ("error" in s) {
        failed.push(s);
        continue;
      }
      assert(s.answer.shard === s.shard, () => `shard ${s.shard} answered as shard ${s.answer.shard}`);
      parts.push(s.answer);
    }
    const cover = failed.length === 0 ? coverSpace(parts, o.space) : null;
    const timedOut = clock.nowMs() >= deadlineMs;
    if (cover !== null) return { cover, parts, failed, asked: shards.size, rounds: round, timedOut: false };
    for (const p of parts) for (const child of p.children) named.add(child);
    if (!failed.every((f) => o.moved(f.error)) || round >= o.roundsMax || timedOut) return { cover: null, parts, failed, asked: shards.size, rounds: round, timedOut };
    await node.awaitMetaChange(Math.max(1, Math.min(o.roundWaitMs, deadlineMs - clock.nowMs())));
  }
}

/**
 * A page of the collection: the first `limit` records after `after`, and whether more follow. A range
 * collection's page is read shard after shard from the cursor on (scanInIdOrder). A hash collection's
 * asks the map's live shards (before the map is recorded, the shards hosted here), and the children
 * the parts name when they leave a gap; it reads the page again until its parts tile the hash space
 * (see the header).
 */
export async function scanCollection(node: MultiRaftNode, gateway: Gateway, collection: string, limit: number, after: string | undefined,
  timeoutMs = 5000): Promise<CollectionPage> {
  const partitioning = collectionPartitioning(node.metaState().collections.get(collection));
  if (partitioning === "range") return scanInIdOrder(node, gateway, collection, limit, after, timeoutMs);
  const t = await askUntilTiled<ShardPage>(node, gateway.clock, {
    space: wholeSpace(partitioning),
    shards: (meta) => {
      const live = liveShards(meta, collection);
      return live.length > 0 ? live : node.status().groups.map((g) => g.shard);
    },
    ask: (g) => gateway.scan(g, limit + 1, after),
    moved, timeoutMs, roundsMax: SCAN_ATTEMPTS_MAX, roundWaitMs: SCAN_RETRY_WAIT_MS,
  });
  if (t.cover !== null) return mergePages(t.cover, limit);
  throw t.failed.find((f) => !moved(f.error))?.error ?? t.failed[t.failed.length - 1]?.error ?? new UnsettledScanError();
}

/**
 * A page of a range collection, whose shards hold contiguous ids: the shard holding the position just
 * above the cursor is asked for its first records after the cursor, then the shard holding the position
 * where that one's range ended, and so on in range order, until the page holds `limit + 1` records or
 * reached the end of the id space. A part holds every record of its range after the cursor when it
 * answers fewer than asked, so the parts, each read at a ReadIndex with the range it had then and each
 * starting at or before where the last ended, cover the ids from the cursor on without a gap; each is
 * asked only for records after the last one taken, so none is taken twice (a merged shard's part may
 * reach back over ids an earlier part covered). A part that does not hold the position (the map is behind
 * a split or merge), is frozen for a merge, or whose shard moved is asked again once the map changed.
 */
async function scanInIdOrder(node: MultiRaftNode, gateway: Gateway, collection: string, limit: number, after: string | undefined,
  timeoutMs: number): Promise<CollectionPage> {
  const clock = gateway.clock;
  const deadlineMs = clock.nowMs() + timeoutMs;
  const records: [string, StoredRecord][] = [];
  const session: [number, number][] = [];
  // The first position the page may hold: the smallest string above the cursor.
  let at = after === undefined ? "" : `${after}\0`;
  let waits = 0;
  while (records.length <= limit && at < KEY_SPACE_END) {
    const part = await partAt(node, gateway, collection, at, limit + 1 - records.length, records[records.length - 1]?.[0] ?? after);
    if (part !== null) {
      records.push(...part.records);
      session.push([part.shard, part.version]);
      at = part.range.end as string;
      continue;
    }
    if (++waits >= SCAN_ATTEMPTS_MAX || clock.nowMs() >= deadlineMs) throw new UnsettledScanError();
    await node.awaitMetaChange(Math.max(1, Math.min(SCAN_RETRY_WAIT_MS, deadlineMs - clock.nowMs())));
  }
  return { records: records.slice(0, limit), more: records.length > limit, session };
}

/**
 * The part of the shard the map gives position `at`: its first `limit` records after `after`, or null
 * when it cannot be taken now (no shard there in the map, the shard moved, its range does not hold
 * `at` any more, or it is frozen for a merge); an error no newer map fixes is thrown.
 */
async function partAt(node: MultiRaftNode, gateway: Gateway, collection: string, at: string, limit: number, after: string | undefined): Promise<ShardPage | null> {
  let shard: number;
  try {
    shard = node.shardOf(at, collection);
  } catch (e) {
    // A gap in this node's map (between applying a split's two halves, say) while the collection lives.
    if (e instanceof CollectionNotFoundError && node.metaState().collections.has(collection)) return null;
    throw e;
  }
  let part: ShardPage;
  try {
    part = await gateway.scan(shard, limit, after);
  } catch (e) {
    if (moved(e)) return null;
    throw e;
  }
  assert(part.records.every(([id]) => inRange(id, part.range)), () => `shard ${shard}'s part holds ids outside its range ${describeRange(part.range)}`);
  return !part.frozen && inRange(at, part.range) ? part : null;
}

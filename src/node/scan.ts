/**
 * Scanning the collection in id order, one page at a time, while shards split and merge.
 *
 * Shards own ranges of the ids' hash, so every shard holds ids all along the id order: a page is the
 * first `limit` ids after the cursor among every shard's own first `limit + 1`. Two things make that
 * exact under splits and merges:
 *
 * - Each shard's part is read at a ReadIndex (MultiRaftNode.scanPage), on whichever replica serves it:
 *   the replica has applied everything committed before the page was asked, so a record that existed
 *   then is in it (an eventual read of a lagging replica may miss it: a write just acknowledged, or an
 *   absorb whose source the map has retired already). The part carries the range and the freeze the
 *   shard had at the index it was read at, records and range being moved together by every split and
 *   absorb (shard-apply.ts).
 * - The parts must tile the hash space, each hash covered by exactly one part (`coverHashSpace`): a
 *   frozen merge source overlapped by a target that absorbed it is left out (the target holds its
 *   records, and newer writes of them); a gap (a split the map does not show yet, a shard the map lists
 *   but this node reached before it existed) or an overlap of two live parts (one read before a split,
 *   one after) means the pieces do not fit: the page is read again, with the map and the children the
 *   parts name, until they fit or the request's time is up (503 `shard_split`, nothing done).
 *
 * The map is only a hint of which shards to ask: what a page contains is decided by the shards' own
 * states, so a map that lags or leads the replicas cannot make it miss or repeat a record. The cursor is
 * the last id of the page; the next page starts after it, so no id is returned twice.
 */
import { HASH_SPACE, type HashRange } from "../meta/ranges.js";
import type { Gateway } from "./gateway.js";
import { type MultiRaftNode, NotHostedError, NotLeaderError, WrongShardError } from "./multi-raft.js";
import type { MetaState } from "../meta/state.js";
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
  /** The shard's hash range as of the read (its records are exactly those of this range). */
  range: HashRange;
  /** Frozen for a merge: its records are final, and its target may hold them too. */
  frozen: boolean;
  /** Shards its latest splits made (they may not be in the map yet). */
  children: number[];
  /** Its first records after the cursor, in id order. */
  records: [string, StoredRecord][];
}

/**
 * The parts whose ranges tile [0, HASH_SPACE) exactly once, or null when they do not (a gap, or two live
 * parts overlapping). Frozen parts covered by live ones are left out; empty ranges count for nothing.
 */
export function coverHashSpace<P extends { range: HashRange; frozen: boolean }>(pages: readonly P[]): P[] | null {
  const nonEmpty = pages.filter((p) => p.range.end > p.range.start);
  const overlaps = (a: HashRange, b: HashRange) => a.start < b.end && b.start < a.end;
  const live = nonEmpty.filter((p) => !p.frozen);
  const frozen = nonEmpty.filter((p) => p.frozen);
  const chosen = [...live, ...frozen.filter((f) => !live.some((l) => overlaps(l.range, f.range)))].sort((a, b) => a.range.start - b.range.start);
  let at = 0;
  for (const p of chosen) {
    if (p.range.start !== at) return null;
    at = p.range.end;
  }
  return at === HASH_SPACE ? chosen : null;
}

/**
 * The first `limit` records after the cursor from parts that tile the hash space, and whether more
 * follow. Each part holds its shard's first `limit + 1` records, so more follow exactly when the parts
 * hold more than `limit` together (no shard can hide one: a shard with more has sent limit + 1).
 */
export function mergePages(parts: readonly ShardPage[], limit: number): { records: [string, StoredRecord][]; more: boolean } {
  const all = parts.flatMap((p) => p.records);
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return { records: all.slice(0, limit), more: all.length > limit };
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

/** What a shard answers a request that must cover the hash space: its range and freeze as of the answer. */
export interface TiledPart { shard: number; range: HashRange; frozen: boolean; children: number[] }

export interface AskUntilTiled<A extends TiledPart> {
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
  /** The parts tiling the hash space, or null when they never did in time. */
  cover: A[] | null;
  /** The last round's answers and failures, and how many shards it asked. */
  parts: A[];
  failed: { shard: number; error: Error }[];
  asked: number;
  rounds: number;
  timedOut: boolean;
}

/**
 * Asks shards until their answers tile the hash space (see the header): the map's shards, and the
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
    const cover = failed.length === 0 ? coverHashSpace(parts) : null;
    const timedOut = clock.nowMs() >= deadlineMs;
    if (cover !== null) return { cover, parts, failed, asked: shards.size, rounds: round, timedOut: false };
    for (const p of parts) for (const child of p.children) named.add(child);
    if (!failed.every((f) => o.moved(f.error)) || round >= o.roundsMax || timedOut) return { cover: null, parts, failed, asked: shards.size, rounds: round, timedOut };
    await node.awaitMetaChange(Math.max(1, Math.min(o.roundWaitMs, deadlineMs - clock.nowMs())));
  }
}

/**
 * A page of the collection: the first `limit` records after `after`, and whether more follow. Asks the
 * map's live shards (before the map is recorded, the shards hosted here), and the children the parts
 * name when they leave a gap; reads the page again until its parts tile the hash space (see the header).
 */
export async function scanCollection(node: MultiRaftNode, gateway: Gateway, collection: string, limit: number, after: string | undefined,
  timeoutMs = 5000): Promise<{ records: [string, StoredRecord][]; more: boolean }> {
  const t = await askUntilTiled<ShardPage>(node, gateway.clock, {
    shards: (meta) => {
      const live = [...meta.shards.values()].filter((sh) => sh.collection === collection && sh.retiredInto === undefined).map((sh) => sh.id);
      return live.length > 0 ? live : node.status().groups.map((g) => g.shard);
    },
    ask: (g) => gateway.scan(g, limit + 1, after),
    moved, timeoutMs, roundsMax: SCAN_ATTEMPTS_MAX, roundWaitMs: SCAN_RETRY_WAIT_MS,
  });
  if (t.cover !== null) return mergePages(t.cover, limit);
  throw t.failed.find((f) => !moved(f.error))?.error ?? t.failed[t.failed.length - 1]?.error ?? new UnsettledScanError();
}

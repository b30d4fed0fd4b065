/**
 * Records of a collection with a TTL (`ttlMs`) expire `ttlMs` after their last write: the write carries
 * its expiry (the proposer's clock plus the TTL, node/records.ts), and reads, scans, searches and counts
 * leave an expired record out from that moment. The sweeper reclaims them: every SWEEP_EVERY_MS, for each
 * shard this node leads whose collection has a TTL, it reads on from where its last pass stopped (at most
 * SWEEP_EXAMINED_MAX records per shard per pass) and deletes the expired ones it found in one
 * `delete-many` proposal per shard, each only while still at the version that expired, so a record
 * written again meanwhile keeps its new life. The deletes reach the indexes like any other.
 */
import type { Gateway } from "../node/gateway.js";
import type { MultiRaftNode } from "../node/multi-raft.js";
import { isExpired } from "../node/records.js";
import type { Logger } from "../util/logger.js";
import type { Timer } from "../util/clock.js";
import { assert } from "../util/assert.js";

export const SWEEP_EVERY_MS = 5000;
/** Records one pass reads of one shard, at most (one synchronous step on the loop per page of 1,000). */
export const SWEEP_EXAMINED_MAX = 10_000;
const PAGE = 1000;

export class ExpirySweeper {
  private timer: Timer | null = null;
  private running = false;
  /** Per shard, the id a pass stopped after (absent: start from the first record). */
  private readonly cursors = new Map<number, string>();

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly logger?: Logger,
    private readonly everyMs = SWEEP_EVERY_MS) {}

  start(): void {
    assert(this.timer === null, "the sweeper starts once");
    this.timer = this.node.clock.setInterval(() => {
      this.pass().catch((e: unknown) => this.logger?.warn({ err: (e as Error).message }, "an expiry pass failed: the next one tries again"));
    }, this.everyMs);
  }

  stop(): void {
    this.node.clock.clear(this.timer);
    this.timer = null;
  }

  /** One pass over the shards led here; returns the records deleted. Passes do not overlap. */
  async pass(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    try {
      let deleted = 0;
      const meta = this.node.metaState();
      for (const sh of meta.shards.values()) {
        const ttlMs = meta.collections.get(sh.collection)?.schema?.ttlMs ?? null;
        if (ttlMs === null || sh.retiredInto !== undefined || !this.node.hosts(sh.id) || this.node.leaderOf(sh.id) !== this.node.id) continue;
        const nowMs = this.node.clock.wallMs();
        const ids: string[] = [];
        const versions: number[] = [];
        let after = this.cursors.get(sh.id);
        for (let examined = 0; examined < SWEEP_EXAMINED_MAX && ids.length < PAGE;) {
          const page = this.node.scan(sh.id, PAGE, after);
          examined += page.length;
          for (const [id, r] of page) {
            if (!isExpired(r, nowMs)) continue;
            ids.push(id);
            versions.push(r.version);
          }
          after = page.length < PAGE ? undefined : page[page.length - 1]![0];
          if (after === undefined) break; // the end: the next pass starts over
        }
        if (after === undefined) this.cursors.delete(sh.id);
        else this.cursors.set(sh.id, after);
        if (ids.length === 0) continue;
        const r = await this.gateway.deleteMany(ids, sh.collection, versions);
        deleted += r.removed;
      }
      if (deleted > 0) this.logger?.info({ deleted }, "deleted expired records");
      return deleted;
    } finally {
      this.running = false;
    }
  }
}

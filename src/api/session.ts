/**
 * Session tokens (DATA-4): read-your-writes and monotonic reads across nodes. A token is a list of
 * `shard:version` pairs. Every record answer carries, in the `Shoal-Session` header, the version a write
 * got or the applied version of the replica that served a read, for the shard involved; a read with
 * `consistency=session` sends the pairs it holds and is served by a replica of the record's shard once
 * that replica has applied the shard's version (node/multi-raft.ts read). Versions of a shard grow
 * across splits and merges (node/shard-apply.ts), so a pair stays true for the shard it names.
 */
import type { FastifyReply } from "fastify";
import { ApiError } from "./error-table.js";

export const SESSION_HEADER = "shoal-session";

/**
 * On a write this node forwarded to the shard's leader: `shard:node`, that leader's id, so that a client
 * routing by its shard map (client/routing.ts) corrects a stale entry at once.
 */
export const LEADER_HEADER = "shoal-leader";

/** Pairs a token may carry: a header of 512 pairs stays under 10 KiB (Node refuses headers over 16 KiB). */
export const SESSION_SHARDS_MAX = 512;

const PAIR = /^(\d{1,9}):(\d{1,16})$/;

/** The pairs of a request's token (none: an empty session); a malformed token is the client's fault (400). */
export function sessionOf(header: string | string[] | undefined): Map<number, number> {
  const out = new Map<number, number>();
  if (header === undefined) return out;
  const text = Array.isArray(header) ? header.join(",") : header;
  const pairs = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (pairs.length > SESSION_SHARDS_MAX) {
    throw new ApiError("bad_request", `the ${SESSION_HEADER} header carries ${pairs.length} shards: at most ${SESSION_SHARDS_MAX}`, { field: SESSION_HEADER });
  }
  for (const pair of pairs) {
    const m = PAIR.exec(pair);
    const version = m === null ? NaN : Number(m[2]);
    if (m === null || !Number.isSafeInteger(version)) {
      throw new ApiError("bad_request", `the ${SESSION_HEADER} header is shard:version pairs separated by commas (as answers carry it), got ${JSON.stringify(pair.slice(0, 40))}`, { field: SESSION_HEADER });
    }
    const shard = Number(m[1]);
    out.set(shard, Math.max(out.get(shard) ?? 0, version));
  }
  return out;
}

/**
 * Puts the answer's token on the reply: for each shard, the highest version given. Callers add the
 * metadata log's applied index as the metadata group's pair: a session read waits for its node's shard
 * map to be that new, so that a split or merge the session saw is never routed around.
 */
export function sendSession(reply: FastifyReply, pairs: Iterable<readonly [number, number]>): void {
  const highest = new Map<number, number>();
  for (const [shard, version] of pairs) highest.set(shard, Math.max(highest.get(shard) ?? 0, version));
  if (highest.size > 0) void reply.header(SESSION_HEADER, [...highest].map(([shard, version]) => `${shard}:${version}`).join(","));
}

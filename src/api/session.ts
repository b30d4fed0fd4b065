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

/** Digits a pair's shard (a group id) and version may have. */
const SHARD_DIGITS_MAX = 9;
const VERSION_DIGITS_MAX = 16;

/**
 * Walks a token's `shard:version` pairs, separated by commas (blanks around a pair and empty pairs are
 * skipped), without the arrays a split would make: every answer carries a token and every session read
 * sends one (the split and a regular expression were ~1.5 us of a session read's ~55 us on a node:
 * measured). `pair` is called for each well-formed pair, `malformed` with the text of each other one.
 */
export function walkSessionPairs(text: string, pair: (shard: number, version: number) => void, malformed: (pairText: string) => void): void {
  for (let from = 0; from <= text.length;) {
    const comma = text.indexOf(",", from);
    const end = comma === -1 ? text.length : comma;
    let a = from;
    let b = end;
    from = end + 1;
    while (a < b && isBlank(text.charCodeAt(a))) a++;
    while (b > a && isBlank(text.charCodeAt(b - 1))) b--;
    if (a === b) continue;
    const colon = text.indexOf(":", a);
    const inside = colon > a && colon < b;
    const shard = inside ? digitsAt(text, a, colon, SHARD_DIGITS_MAX) : NaN;
    const version = inside ? digitsAt(text, colon + 1, b, VERSION_DIGITS_MAX) : NaN;
    if (Number.isNaN(shard) || Number.isNaN(version)) malformed(text.slice(a, b));
    else pair(shard, version);
  }
}

function isBlank(code: number): boolean {
  return code === 32 || code === 9;
}

/** The decimal number text[from, to) spells with 1 to `digitsMax` digits and nothing else (a safe integer), else NaN. */
function digitsAt(text: string, from: number, to: number, digitsMax: number): number {
  if (to <= from || to - from > digitsMax) return NaN;
  let n = 0;
  for (let i = from; i < to; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return NaN;
    n = n * 10 + digit;
  }
  return Number.isSafeInteger(n) ? n : NaN;
}

/** The pairs of a request's token (none: an empty session); a malformed token is the client's fault (400). */
export function sessionOf(header: string | string[] | undefined): Map<number, number> {
  const out = new Map<number, number>();
  if (header === undefined) return out;
  let pairs = 0;
  walkSessionPairs(Array.isArray(header) ? header.join(",") : header, (shard, version) => {
    pairs++;
    out.set(shard, Math.max(out.get(shard) ?? 0, version));
  }, (pairText) => {
    throw new ApiError("bad_request", `the ${SESSION_HEADER} header is shard:version pairs separated by commas (as answers carry it), got ${JSON.stringify(pairText.slice(0, 40))}`, { field: SESSION_HEADER });
  });
  if (pairs > SESSION_SHARDS_MAX) {
    throw new ApiError("bad_request", `the ${SESSION_HEADER} header carries ${pairs} shards: at most ${SESSION_SHARDS_MAX}`, { field: SESSION_HEADER });
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

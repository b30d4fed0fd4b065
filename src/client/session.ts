/**
 * The client's session (DATA-4): for each shard, the highest version its answers showed (a write's
 * version, a read's applied version), from the `Shoal-Session` header (api/session.ts). A read at
 * `consistency: "session"` sends them, and is served by a replica that has applied them: the client's
 * own writes and whatever it read before are never missing from a later read, whichever node serves it.
 */
import { SESSION_SHARDS_MAX, walkSessionPairs } from "../api/session.js";
import { assert } from "../util/assert.js";

export { SESSION_HEADER } from "../api/session.js";

/**
 * Past SESSION_SHARDS_MAX shards (what a request's header may carry), the shard raised least recently is
 * forgotten, and a session read of that shard is no longer held to what came before.
 */
export class SessionTokens {
  /** Shard -> version; in the order shards were last raised (the first is forgotten first). */
  private readonly versions = new Map<number, number>();
  /** token() as of the last change (null: to be built again); a session read sends it each time. */
  private tokenText: string | null = "";

  constructor(token?: string) {
    if (token !== undefined) this.merge(token);
  }

  /** Takes the pairs of an answer's header (or of a saved token); a malformed pair is skipped. */
  merge(header: string | undefined): void {
    if (header === undefined || header === "") return;
    walkSessionPairs(header, (shard, version) => {
      const held = this.versions.get(shard);
      if (held !== undefined && held >= version) return;
      this.versions.delete(shard);
      this.versions.set(shard, version);
      this.tokenText = null;
      if (this.versions.size > SESSION_SHARDS_MAX) this.versions.delete(this.versions.keys().next().value!);
    }, () => {
      // A malformed pair is skipped: the token is the server's, and the rest of it still holds.
    });
    assert(this.versions.size <= SESSION_SHARDS_MAX, "a session is bounded");
  }

  /** The header a session read carries (empty: nothing seen yet). */
  token(): string {
    this.tokenText ??= [...this.versions].map(([shard, version]) => `${shard}:${version}`).join(",");
    return this.tokenText;
  }
}

/**
 * Every outcome a client can be refused with, in one table: its HTTP status, whether asking again may
 * succeed, and whether the request may have taken effect. A client never has to guess whether its
 * write happened: `applied: "no"` means nothing was written; `"unknown"` means it may have been (retry
 * only what is safe to apply twice). The API's error handler, the OpenAPI document and the README's
 * error table are all made from this one table.
 */

export type Applied = "no" | "unknown";

export interface ErrorEntry {
  status: number;
  /** Asking again, unchanged, may succeed (after Retry-After when the answer carries one). */
  retryable: boolean;
  applied: Applied;
  /** Answered with a Retry-After header (seconds). */
  retryAfterS?: number;
  /** When a client sees it, in a few words (the README and the OpenAPI document show it). */
  meaning: string;
}

const refused = (status: number, meaning: string): ErrorEntry => ({ status, retryable: false, applied: "no", meaning });
const busy = (meaning: string): ErrorEntry => ({ status: 503, retryable: true, applied: "no", retryAfterS: 1, meaning });

export const ERRORS = {
  // Malformed requests: nothing was done.
  bad_request: refused(400, "a parameter, query or body field is missing, of the wrong type or out of range (the message names it)"),
  invalid_json: refused(400, "the body is not valid JSON"),
  unsafe_number: refused(400, "a number cannot be stored exactly: not finite, or an integer beyond ±(2^53-1) (send it as a string)"),
  invalid_string: refused(400, "a body that is not UTF-8, or a string or key with an unpaired surrogate (not Unicode text)"),
  forbidden_key: refused(400, "an object key `__proto__` (refused anywhere in a body)"),
  limit_exceeded: refused(400, "the body nests deeper, has more fields or longer keys than the node's limits (the message names the limit)"),
  unknown_parameter: refused(400, "a query parameter this route does not take (the message names it and the ones it takes)"),
  bad_cursor: refused(400, "a scan cursor that this API did not hand out"),
  invalid_collection: refused(400, "a collection declaration with an unknown field or a value out of range (error.field names it)"),
  invalid_vector: refused(400, "a record's vector does not fit its collection's schema: wrong length, not numbers, beyond float32, all zero under cosine, or a vector where the collection has none (error.field names it)"),
  invalid_filter: refused(400, "a filter that is not one of the filter language's conditions, or over its limits (error.field names the fault)"),
  invalid_settings: refused(400, "a settings change with unknown names or values out of range (each named)"),
  bad_split: refused(400, "a split point outside the shard's range (or of the other kind: a hash for a range collection's shard, an id for a hash collection's), or a range shard of fewer than two records split at its middle"),
  route_not_found: refused(404, "no such route"),
  collection_not_found: refused(404, "no such collection"),
  not_found: refused(404, "no record with this id"),
  node_not_found: refused(404, "no such node"),
  shard_not_found: refused(404, "no such shard"),
  replica_not_found: refused(404, "the shard has no replica on that node"),
  operator_not_found: refused(404, "no such operator"),
  settings_version_not_found: refused(404, "no such settings version in the kept history"),
  method_not_allowed: refused(405, "the route exists but not for this method (the Allow header lists the methods)"),
  payload_too_large: refused(413, "the body is larger than the node's limit (--max-payload-bytes; a batch upsert: --max-batch-bytes)"),
  batch_too_large: refused(413, "a batch upsert with more records than one batch may carry (error.max says how many)"),
  uri_too_long: refused(414, "the URL is longer than the node accepts"),
  unsupported_media_type: refused(415, "a body that is not application/json"),
  expectation_failed: refused(417, "an Expect header other than 100-continue"),
  headers_too_large: refused(431, "the request's headers are larger than the node accepts"),
  // Refused by the state: nothing was done.
  version_mismatch: refused(409, "compare-and-set: the record is at another version (currentVersion says which)"),
  idempotency_key_reused: refused(422, "the Idempotency-Key was used for a different write of this record: a new write needs a new key"),
  stale_settings: refused(409, "the settings changed since they were read: read them again"),
  address_in_use: refused(409, "a joining node's address is already a member's"),
  node_holds_replicas: refused(409, "a node still holding replicas cannot be removed: drain it first"),
  invalid_transition: refused(409, "a node cannot go from its lifecycle state to the one asked for"),
  voters_must_stay_odd: refused(409, "promoting would leave an even number of metadata voters: name a partner"),
  not_caught_up: refused(409, "the learner has not caught up with the metadata leader yet"),
  not_promotable: refused(409, "analytics and standby nodes are never promoted"),
  not_a_learner: refused(409, "the node is not a metadata learner"),
  shard_busy: refused(409, "the shard has an operator running (error.operator names it): ask with waitMs / --wait, or cancel it"),
  replica_exists: refused(409, "the target node already holds a replica of the shard"),
  node_not_placeable: refused(409, "the target node is not ready and healthy, or is draining"),
  not_a_voter: refused(409, "the node is not a voter of the shard"),
  already_leader: refused(409, "the node already leads the shard"),
  no_neighbour: refused(409, "the shard has no lower neighbour to merge into"),
  too_large: refused(409, "the shard is too large to merge"),
  conf_change_refused: refused(409, "Raft refused the membership change: invalid now, or another one is pending (joins and removes wait for it up to the request timeout)"),
  node_exists: refused(409, "a node with this id is registered already"),
  shard_exists: refused(409, "a shard with this id exists already"),
  collection_exists: refused(409, "a collection with this name exists already"),
  collection_protected: refused(409, "the default collection is the cluster's own: it cannot be dropped"),
  not_enough_nodes: refused(409, "fewer ready, healthy nodes on distinct hosts than the replication factor asks for"),
  shard_retired: refused(409, "the shard was merged into another"),
  stale_epoch: refused(409, "the shard map changed under the request (a stale epoch)"),
  stale_split: refused(409, "the split was overtaken by another change of the shard"),
  stale_merge: refused(409, "the merge was overtaken by another change of the shards"),
  stale_configuration: refused(409, "the replica configuration changed under the request"),
  not_adjacent: refused(409, "the shards no longer border each other"),
  no_voter: refused(409, "the change would leave the shard without a voter"),
  transfer_aborted: { status: 409, retryable: true, applied: "no", meaning: "the leadership transfer did not complete" },
  // Not done now; asking again later may succeed.
  no_leader: busy("the shard has no leader right now (an election is under way)"),
  no_quorum: busy("fewer than a quorum of the shard's voters are reachable: nothing was proposed"),
  leader_unreachable: busy("the shard's leader is known but cannot be reached from this node"),
  split_pending: busy("the shard applied a split that is not in the shard map yet (its new part is being filled): nothing was done; ask again"),
  shard_split: busy("the record's shard was split or merged under the request and the new shard was not known in time: nothing was done; ask again"),
  overloaded: busy("the node has too many requests waiting"),
  shutting_down: busy("the node is shutting down: nothing was done; ask another node"),
  not_ready: busy("the node is not ready (it does not know the shard map yet, or a shard or the metadata group has no leader)"),
  join_failed: busy("the join could not be completed; it was rolled back"),
  failed: { status: 503, retryable: false, applied: "no", meaning: "the node has failed, or the cluster removed it (health check: the message says which): restart it, or join it again with an empty data dir" },
  // Outcome unknown: the write may have been applied. All 504: a 503 always means "not applied". A write
  // with an Idempotency-Key is retried safely with the same key (the first outcome is answered again).
  quorum_lost: { status: 504, retryable: true, applied: "unknown", retryAfterS: 1, meaning: "the leader lost its quorum while the write waited to commit: it may still be applied (retry with the same Idempotency-Key)" },
  interrupted: { status: 504, retryable: true, applied: "unknown", retryAfterS: 1, meaning: "the node stopped (or its replica moved away) while the write waited to be applied: it may still be applied (retry with the same Idempotency-Key)" },
  timeout: { status: 504, retryable: true, applied: "unknown", meaning: "not answered within the request timeout: a write may still be applied (retry with the same Idempotency-Key)" },
  not_built: refused(501, "this node does not offer what was asked (a part not built yet, or not enabled where the node was started): the message says which"),
  internal: { status: 500, retryable: true, applied: "unknown", meaning: "a bug: the answer carries a requestId to find the logged stack" },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** A refusal the API answers with the table's status for its code. */
export class ApiError extends Error {
  readonly status: number;
  constructor(readonly code: ErrorCode, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
    this.status = ERRORS[code].status;
  }
}

/**
 * The ApiError for a refusal a state machine or the placement driver answered with (`{code, message}`):
 * its code's entry in the table decides the status. A code missing from the table is a bug, not a 500
 * with a made-up meaning.
 */
export function refusalError(r: { code: string; message: string }, extra: Record<string, unknown> = {}): ApiError {
  if (!isErrorCode(r.code)) throw new Error(`refusal code ${r.code} is missing from the error table (${r.message})`);
  return new ApiError(r.code, r.message, extra);
}

/** Errors of the node layer, by name, and the code a client sees for each. */
export const NODE_ERROR_CODES: Record<string, ErrorCode> = {
  NotLeaderError: "no_leader",
  NotHostedError: "no_leader",
  LeaderUnreachableError: "leader_unreachable",
  WrongShardError: "shard_split",
  ConfChangeRefusedError: "conf_change_refused",
  RequestTimeoutError: "timeout",
  OverloadedError: "overloaded",
  CollectionNotFoundError: "collection_not_found",
  ShuttingDownError: "shutting_down",
  InterruptedError: "interrupted",
  NoQuorumError: "no_quorum",
  QuorumLostError: "quorum_lost",
  RemovedFromClusterError: "failed",
};

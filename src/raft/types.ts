/**
 * Wire- and storage-level types of the Raft core. Everything here is plain data so that a host can
 * encode it with any codec (msgpack in the transport, structured clone in the simulator).
 */

/** A member id (util/ids.ts). 0 means "nobody" (no leader, no vote). */
import { type NodeId, NONE } from "../util/ids.js";
export { type NodeId, NONE } from "../util/ids.js";

export enum EntryType {
  Normal = 0,
  /** data is an encoded ConfChange (see confchange-codec.ts). */
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

export enum MessageType {
  // Local inputs (never sent over the wire).
  Hup = 0,
  Beat = 1,
  Propose = 2, // also forwarded from followers to the leader
  Unreachable = 3,
  CheckQuorum = 4,
  // Wire messages.
  Append = 10,
  AppendResponse = 11,
  Vote = 12,
  VoteResponse = 13,
  PreVote = 14,
  PreVoteResponse = 15,
  SnapshotChunk = 16,
  SnapshotChunkResponse = 17,
  Heartbeat = 18,
  HeartbeatResponse = 19,
  TransferLeader = 20,
  TimeoutNow = 21,
  ReadIndex = 22,
  ReadIndexResponse = 23,
}

/** Which messages never leave the node. */
export function isLocalMessage(type: MessageType): boolean {
  return type < MessageType.Append && type !== MessageType.Propose;
}

/** Maps a vote request type to its response type. */
export function voteResponseType(type: MessageType): MessageType {
  if (type === MessageType.Vote) return MessageType.VoteResponse;
  if (type === MessageType.PreVote) return MessageType.PreVoteResponse;
  throw new Error(`not a vote message: ${MessageType[type]}`);
}

export interface ConfState {
  voters: NodeId[];
  /** Voters of the outgoing configuration while in a joint configuration, else empty. */
  votersOutgoing: NodeId[];
  learners: NodeId[];
  /** Voters of the outgoing configuration that become learners when the joint configuration is left. */
  learnersNext: NodeId[];
  autoLeave: boolean;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/** One piece of a snapshot on its way from a leader to a follower. */
export interface SnapshotChunk {
  meta: SnapshotMeta;
  /** Byte offset of data within the snapshot. */
  offset: number;
  data: Uint8Array;
  totalBytes: number;
  /** The leader's transfer attempt; a rewind starts a new one so late responses are recognized. */
  attempt: number;
}

export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/**
 * A Raft message. Fields unused by a type are left at their zero value. One flat shape for all types
 * keeps the objects monomorphic for the JS engine and the codec simple.
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** Append: term of the entry at `index`. Vote: term of the candidate's last entry. */
  logTerm: number;
  /** Append: index preceding `entries`. Vote: candidate's last index. Responses: see handlers. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** On a rejected Append: the follower's guess of where the logs may match. */
  rejectHint: number;
  /** Term of the entry at rejectHint on the follower (fast backtracking). */
  rejectHintTerm: number;
  snapshotChunk: SnapshotChunk | null;
  /** ReadIndex request context, echoed through heartbeats. */
  context: Uint8Array | null;
  /** Heartbeat: the leader's tick counter at send time, echoed back; drives the lease. */
  leaseTick: number;
  /** SnapshotChunkResponse: the next byte offset the follower expects. */
  offset: number;
  /** SnapshotChunkResponse: the attempt of the chunk it answers. */
  attempt: number;
  /** Vote / TimeoutNow: the election was started by a leader transfer and bypasses leases. */
  transfer: boolean;
}

export function message(fields: Partial<Message> & Pick<Message, "type">): Message {
  return {
    from: NONE,
    to: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: EMPTY_ENTRIES,
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshotChunk: null,
    context: null,
    leaseTick: 0,
    offset: 0,
    attempt: 0,
    transfer: false,
    ...fields,
  };
}

export const EMPTY_ENTRIES: Entry[] = Object.freeze([]) as unknown as Entry[];

/**
 * Entries as a flat run of (term, index, type, data) quadruples appended to `into`: what hosts put on the
 * wire and in the WAL, without a key string per field.
 */
export function flattenEntries(entries: readonly Entry[], into: unknown[]): void {
  for (const e of entries) into.push(e.term, e.index, e.type, e.data);
}

/** The entries of `flat` from `start` (see flattenEntries); null if any quadruple is malformed. */
export function entriesFromFlat(flat: readonly unknown[], start: number): Entry[] | null {
  if ((flat.length - start) % 4 !== 0) return null;
  const entries: Entry[] = [];
  for (let i = start; i < flat.length; i += 4) {
    const [term, index, type, data] = [flat[i], flat[i + 1], flat[i + 2], flat[i + 3]];
    if (!isCount(term) || !isCount(index) || (type !== EntryType.Normal && type !== EntryType.ConfChange) || !(data instanceof Uint8Array)) {
      return null;
    }
    entries.push({ term, index, type, data });
  }
  return entries;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function entrySizeBytes(e: Entry): number {
  // A fixed overhead for term, index and type, plus the payload.
  return 24 + e.data.byteLength;
}

export function entriesSizeBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (const e of entries) size += entrySizeBytes(e);
  return size;
}

/** Payload size only: what counts against the uncommitted-entries budget. */
export function payloadSizeBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (const e of entries) size += e.data.byteLength;
  return size;
}

/** Entries in [lo..) are limited to maxBytes, always keeping at least one. */
export function limitSize(entries: Entry[], maxBytes: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entrySizeBytes(entries[0]!);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entrySizeBytes(entries[n]!);
    if (size > maxBytes) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}

export enum Role {
  Follower = "follower",
  PreCandidate = "pre-candidate",
  Candidate = "candidate",
  Leader = "leader",
}

export interface ReadState {
  /** The commit index at the time the read was requested; serve the read once applied >= index. */
  index: number;
  context: Uint8Array;
}

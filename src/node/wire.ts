/**
 * How Raft messages travel between nodes: as positional tuples inside the transport's msgpack frames,
 * not as objects. A Message has fifteen fields and an Entry four; written as maps, their key strings
 * were most of the bytes and most of msgpack's time (a CPU profile under load put frame encoding and
 * decoding at ~10% of a node's busy time). `from` and `to` are not sent: the link says who sent it,
 * and it is addressed to the receiver.
 *
 * Heartbeats of all groups between two nodes travel as one message per loop turn: a list of compact
 * tuples instead of one full message per group (with thousands of groups per node, heartbeats are most
 * of the traffic when idle).
 *
 * Decoding checks shapes and types: a peer's bytes never reach the Raft core malformed.
 */
import { type ConfState, type Message, type SnapshotChunk, EMPTY_ENTRIES, MessageType, entriesFromFlat, flattenEntries, message } from "../raft/index.js";

/**
 * [type, term, logTerm, index, commit, flags (1 reject, 2 transfer), rejectHint, rejectHintTerm, leaseTick,
 *  offset, attempt, context, snapshotChunk, ...entries as (term, index, type, data) quadruples]
 */
export type MessageTuple = unknown[];
const FIXED_FIELDS = 13;

/** [group, response?, term, commit, leaseTick, reject?, rejectHint, context] */
export type BeatTuple = [number, 0 | 1, number, number, number, 0 | 1, number, Uint8Array | null];

export class WireError extends Error {
  override name = "WireError";
}

export function packMessage(m: Message): MessageTuple {
  const t: unknown[] = [
    m.type, m.term, m.logTerm, m.index, m.commit, (m.reject ? 1 : 0) | (m.transfer ? 2 : 0), m.rejectHint, m.rejectHintTerm,
    m.leaseTick, m.offset, m.attempt, m.context, m.snapshotChunk === null ? null : packChunk(m.snapshotChunk),
  ];
  flattenEntries(m.entries, t);
  return t;
}

export function unpackMessage(from: number, to: number, t: unknown): Message {
  if (!Array.isArray(t) || t.length < FIXED_FIELDS || (t.length - FIXED_FIELDS) % 4 !== 0) throw new WireError("malformed message tuple");
  for (let i = 0; i <= 10; i++) if (!isCount(t[i])) throw new WireError(`message field ${i} is not a count`);
  const type = t[0] as MessageType;
  if (MessageType[type] === undefined) throw new WireError(`unknown message type ${type}`);
  const flags = t[5] as number;
  let entries = EMPTY_ENTRIES;
  if (t.length > FIXED_FIELDS) {
    const decoded = entriesFromFlat(t, FIXED_FIELDS);
    if (decoded === null) throw new WireError("malformed entry");
    entries = decoded;
  }
  return message({
    type, from, to, term: t[1] as number, logTerm: t[2] as number, index: t[3] as number, commit: t[4] as number,
    reject: (flags & 1) !== 0, transfer: (flags & 2) !== 0, rejectHint: t[6] as number, rejectHintTerm: t[7] as number,
    leaseTick: t[8] as number, offset: t[9] as number, attempt: t[10] as number, context: bytesOrNull(t[11]),
    snapshotChunk: t[12] === null ? null : unpackChunk(t[12]), entries,
  });
}

function packChunk(c: SnapshotChunk): unknown[] {
  const s = c.meta.confState;
  return [c.meta.index, c.meta.term, s.voters, s.votersOutgoing, s.learners, s.learnersNext, s.autoLeave, c.offset, c.data, c.totalBytes, c.attempt];
}

function unpackChunk(t: unknown): SnapshotChunk {
  if (!Array.isArray(t) || t.length !== 11) throw new WireError("malformed snapshot chunk");
  const [index, term, voters, votersOutgoing, learners, learnersNext, autoLeave, offset, data, totalBytes, attempt] = t as unknown[];
  if (!isCount(index) || !isCount(term) || !isCount(offset) || !isCount(totalBytes) || !isCount(attempt) ||
    typeof autoLeave !== "boolean" || !(data instanceof Uint8Array)) {
    throw new WireError("malformed snapshot chunk");
  }
  const confState: ConfState = {
    voters: ids(voters), votersOutgoing: ids(votersOutgoing), learners: ids(learners), learnersNext: ids(learnersNext), autoLeave,
  };
  return { meta: { index, term, confState }, offset, data, totalBytes, attempt };
}

export function isBeat(m: Message): boolean {
  return m.type === MessageType.Heartbeat || m.type === MessageType.HeartbeatResponse;
}

export function packBeat(group: number, m: Message): BeatTuple {
  return [group, m.type === MessageType.HeartbeatResponse ? 1 : 0, m.term, m.commit, m.leaseTick, m.reject ? 1 : 0, m.rejectHint, m.context];
}

export function unpackBeat(from: number, to: number, t: unknown): { group: number; msg: Message } {
  if (!Array.isArray(t) || t.length !== 8) throw new WireError("malformed heartbeat tuple");
  const [group, response, term, commit, leaseTick, reject, rejectHint, context] = t as unknown[];
  if (!isCount(group) || !isCount(term) || !isCount(commit) || !isCount(leaseTick) || !isCount(rejectHint) ||
    (response !== 0 && response !== 1) || (reject !== 0 && reject !== 1)) {
    throw new WireError("malformed heartbeat tuple");
  }
  return {
    group,
    msg: message({
      type: response === 1 ? MessageType.HeartbeatResponse : MessageType.Heartbeat,
      from, to, term, commit, leaseTick, reject: reject === 1, rejectHint, context: bytesOrNull(context),
    }),
  };
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function bytesOrNull(v: unknown): Uint8Array | null {
  if (v === null || v === undefined) return null;
  if (!(v instanceof Uint8Array)) throw new WireError("expected bytes");
  return v;
}

function ids(v: unknown): number[] {
  if (!Array.isArray(v) || !v.every(isCount)) throw new WireError("expected a list of node ids");
  return v as number[];
}

/**
 * Whether a message only tells its peer of a commit index (an Append without entries, a Heartbeat that
 * carries no ReadIndex round): nothing on the peer's or the client's path waits for it, so it may
 * leave after this turn's clients are answered (NodeTurn.turn). Everything else goes at once.
 */
export function onlyTellsCommit(m: Message): boolean {
  return (m.type === MessageType.Append && m.entries.length === 0) || (m.type === MessageType.Heartbeat && m.context === null);
}

/**
 * Splits one group's outgoing messages into those to send now and those that may wait (onlyTellsCommit),
 * per peer: a peer that is sent anything else now gets all of its messages now, in their order.
 */
export function splitCommitNotices(msgs: readonly Message[]): { now: Message[]; later: Message[] } {
  if (msgs.every((m) => !onlyTellsCommit(m))) return { now: msgs as Message[], later: [] };
  const urgentPeers = new Set<number>();
  for (const m of msgs) if (!onlyTellsCommit(m)) urgentPeers.add(m.to);
  const now: Message[] = [];
  const later: Message[] = [];
  for (const m of msgs) (urgentPeers.has(m.to) ? now : later).push(m);
  return { now, later };
}

/**
 * Heartbeats of all groups between two nodes travel as one message per loop turn: a list of compact
 * tuples instead of one full Raft message per group (with thousands of groups per node, heartbeats are
 * most of the traffic when idle).
 */
import { type Message, MessageType, message } from "../raft/index.js";

/** [group, response?, term, commit, leaseTick, reject?, rejectHint, context] */
export type BeatTuple = [number, 0 | 1, number, number, number, 0 | 1, number, Uint8Array | null];

export function isBeat(m: Message): boolean {
  return m.type === MessageType.Heartbeat || m.type === MessageType.HeartbeatResponse;
}

export function packBeat(group: number, m: Message): BeatTuple {
  return [group, m.type === MessageType.HeartbeatResponse ? 1 : 0, m.term, m.commit, m.leaseTick, m.reject ? 1 : 0, m.rejectHint, m.context];
}

export function unpackBeat(from: number, to: number, t: BeatTuple): { group: number; msg: Message } {
  const [group, response, term, commit, leaseTick, reject, rejectHint, context] = t;
  return {
    group,
    msg: message({
      type: response === 1 ? MessageType.HeartbeatResponse : MessageType.Heartbeat,
      from, to, term, commit, leaseTick, reject: reject === 1, rejectHint, context: context ?? null,
    }),
  };
}

/**
 * The state machine of a shard of the `default` collection: records with a JSON payload and a version
 * (the log index of the write that produced it). Commands travel in log entries as msgpack.
 */
import { pack, unpack } from "msgpackr";

export type RecordCommand =
  | { op: "put"; key: string; payload: unknown; ifVersion?: number }
  | { op: "delete"; key: string; ifVersion?: number };

export interface StoredRecord {
  payload: unknown;
  version: number;
}

export type CommandResult =
  | { ok: true; version: number }
  | { ok: false; code: "version_mismatch"; currentVersion: number };

/** A proposal: a command plus the id the proposing node uses to answer its client. */
export interface Proposal {
  /** Node id of the proposer and its request number: unique in the cluster. */
  origin: [number, number];
  cmd: RecordCommand;
}

export function encodeProposal(p: Proposal): Uint8Array {
  return pack(p) as Uint8Array;
}

export function decodeProposal(data: Uint8Array): Proposal {
  return unpack(data) as Proposal;
}

/**
 * Applies a command at log index `index` to the current record: the result for the client, and the
 * record's new state (null: deleted; undefined: unchanged).
 */
export function applyCommand(cmd: RecordCommand, index: number, current: StoredRecord | undefined):
  { result: CommandResult; write: StoredRecord | null | undefined } {
  const currentVersion = current?.version ?? 0;
  if (cmd.ifVersion !== undefined && cmd.ifVersion !== currentVersion) {
    return { result: { ok: false, code: "version_mismatch", currentVersion }, write: undefined };
  }
  if (cmd.op === "put") return { result: { ok: true, version: index }, write: { payload: cmd.payload, version: index } };
  return { result: { ok: true, version: index }, write: current === undefined ? undefined : null };
}

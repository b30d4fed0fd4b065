/**
 * Proposals of the metadata group: a metadata command and the id its proposer answers with. Checked
 * on decode: the log must never hold something the state machine cannot apply.
 */
import { pack, unpack } from "msgpackr";
import { assert } from "../util/assert.js";
import type { MetaCommand } from "../meta/state.js";

export interface MetaProposal {
  origin: [number, number];
  cmd: MetaCommand;
}

export function encodeMetaProposal(p: MetaProposal): Uint8Array {
  return pack([p.origin[0], p.origin[1], p.cmd]) as Uint8Array;
}

export function decodeMetaProposal(data: Uint8Array): MetaProposal {
  const t = unpack(data) as unknown;
  assert(Array.isArray(t) && t.length === 3 && typeof t[0] === "number" && typeof t[1] === "number" &&
    typeof t[2] === "object" && t[2] !== null && typeof (t[2] as { kind?: unknown }).kind === "string", "malformed metadata proposal in the log");
  return { origin: [t[0] as number, t[1] as number], cmd: t[2] as MetaCommand };
}

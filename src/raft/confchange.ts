/**
 * Configuration changes: their encoding in log entries and the pure transition function
 * (configuration, progress) -> (configuration', progress').
 *
 * A change that alters more than one member goes through a joint configuration (Raft §6): the old
 * and new voter sets must both agree until the joint configuration is left. A simple change alters at
 * most one voter, which keeps any two consecutive majorities overlapping.
 */
import { assert } from "../util/assert.js";
import { Progress } from "./progress.js";
import { isJoint } from "./quorum.js";
import { type TrackerConfig, checkConfigInvariants, cloneTrackerConfig } from "./tracker.js";
import type { NodeId } from "./types.js";

export enum ConfChangeType {
  AddVoter = "add-voter",
  AddLearner = "add-learner",
  RemoveNode = "remove-node",
}

export interface ConfChangeSingle {
  type: ConfChangeType;
  nodeId: NodeId;
}

export enum ConfChangeTransition {
  /** Simple when possible (one change), else joint with automatic leave. */
  Auto = "auto",
  /** Joint, left automatically once applied. */
  JointImplicit = "joint-implicit",
  /** Joint, left only when the application proposes an empty change. */
  JointExplicit = "joint-explicit",
}

export interface ConfChange {
  transition: ConfChangeTransition;
  /** No changes = leave the current joint configuration. */
  changes: ConfChangeSingle[];
  /** Opaque to Raft, carried to the application (e.g. a node's address). */
  context?: string;
}

export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/** Whether applying cc enters a joint configuration, and if so whether it is left automatically. */
export function entersJoint(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  if (cc.transition !== ConfChangeTransition.Auto || cc.changes.length > 1) {
    return { joint: true, autoLeave: cc.transition !== ConfChangeTransition.JointExplicit };
  }
  return { joint: false, autoLeave: false };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const cc = JSON.parse(decoder.decode(data)) as ConfChange;
  assert(Array.isArray(cc.changes), "malformed configuration change");
  return cc;
}

export class ConfChangeError extends Error {
  override name = "ConfChangeError";
}

export interface ChangeResult {
  config: TrackerConfig;
  progress: Map<NodeId, Progress>;
}

export interface ChangerContext {
  config: TrackerConfig;
  progress: ReadonlyMap<NodeId, Progress>;
  lastIndex: number;
  newProgress: (next: number, isLearner: boolean) => Progress;
}

function copyProgress(src: ReadonlyMap<NodeId, Progress>): Map<NodeId, Progress> {
  // Progress objects are shared until one must change (see withRole), so a change that fails
  // validation leaves the live configuration untouched.
  return new Map(src);
}

/** Sets id's learner flag on a copy of its progress. */
function withRole(progress: Map<NodeId, Progress>, id: NodeId, isLearner: boolean): void {
  const pr = progress.get(id);
  assert(pr !== undefined, () => `${id} has no progress`);
  if (pr.isLearner === isLearner) return;
  const copy = pr.clone();
  copy.isLearner = isLearner;
  progress.set(id, copy);
}

/** Applies a configuration change, returning the new configuration. Throws ConfChangeError if invalid. */
export function applyChange(ctx: ChangerContext, cc: ConfChange): ChangeResult {
  if (isLeaveJoint(cc)) return leaveJoint(ctx);
  const { joint, autoLeave } = entersJoint(cc);
  return joint ? enterJoint(ctx, autoLeave, cc.changes) : simple(ctx, cc.changes);
}

export function enterJoint(ctx: ChangerContext, autoLeave: boolean, changes: ConfChangeSingle[]): ChangeResult {
  const config = cloneTrackerConfig(ctx.config);
  if (isJoint(config.voters)) throw new ConfChangeError("configuration is already joint");
  if (config.voters.incoming.size === 0) throw new ConfChangeError("can't make a zero-voter configuration joint");
  config.voters.outgoing = new Set(config.voters.incoming);
  const progress = copyProgress(ctx.progress);
  applySingles(ctx, config, progress, changes);
  config.autoLeave = autoLeave;
  return check(config, progress);
}

export function leaveJoint(ctx: ChangerContext): ChangeResult {
  const config = cloneTrackerConfig(ctx.config);
  if (!isJoint(config.voters)) throw new ConfChangeError("can't leave a non-joint configuration");
  const progress = copyProgress(ctx.progress);
  for (const id of config.learnersNext) {
    config.learners.add(id);
    withRole(progress, id, true);
  }
  config.learnersNext = new Set();
  for (const id of config.voters.outgoing) {
    if (!config.voters.incoming.has(id) && !config.learners.has(id)) progress.delete(id);
  }
  config.voters.outgoing = new Set();
  config.autoLeave = false;
  return check(config, progress);
}

export function simple(ctx: ChangerContext, changes: ConfChangeSingle[]): ChangeResult {
  const config = cloneTrackerConfig(ctx.config);
  if (isJoint(config.voters)) throw new ConfChangeError("can't apply a simple change in a joint configuration");
  const progress = copyProgress(ctx.progress);
  applySingles(ctx, config, progress, changes);
  let diff = 0;
  for (const id of config.voters.incoming) if (!ctx.config.voters.incoming.has(id)) diff++;
  for (const id of ctx.config.voters.incoming) if (!config.voters.incoming.has(id)) diff++;
  if (diff > 1) throw new ConfChangeError("more than one voter changed without a joint configuration");
  return check(config, progress);
}

function applySingles(
  ctx: ChangerContext,
  config: TrackerConfig,
  progress: Map<NodeId, Progress>,
  changes: ConfChangeSingle[],
): void {
  for (const cc of changes) {
    if (cc.nodeId === 0) continue; // etcd convention: id 0 is ignored
    switch (cc.type) {
      case ConfChangeType.AddVoter:
        makeVoter(ctx, config, progress, cc.nodeId);
        break;
      case ConfChangeType.AddLearner:
        makeLearner(ctx, config, progress, cc.nodeId);
        break;
      case ConfChangeType.RemoveNode:
        remove(config, progress, cc.nodeId);
        break;
      default:
        throw new ConfChangeError(`unknown change type ${String(cc.type)}`);
    }
  }
  if (config.voters.incoming.size === 0) throw new ConfChangeError("removed all voters");
}

function initProgress(ctx: ChangerContext, progress: Map<NodeId, Progress>, id: NodeId, isLearner: boolean): void {
  // A new member is probed from the leader's last index; it will be walked back as needed.
  progress.set(id, ctx.newProgress(Math.max(ctx.lastIndex, 1), isLearner));
}

function makeVoter(ctx: ChangerContext, config: TrackerConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  if (progress.has(id)) withRole(progress, id, false);
  else initProgress(ctx, progress, id, false);
  config.learners.delete(id);
  config.learnersNext.delete(id);
  config.voters.incoming.add(id);
}

function makeLearner(ctx: ChangerContext, config: TrackerConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  const pr = progress.get(id);
  if (pr === undefined) {
    initProgress(ctx, progress, id, true);
    config.learners.add(id);
    return;
  }
  if (pr.isLearner) return;
  config.voters.incoming.delete(id);
  config.learners.delete(id);
  config.learnersNext.delete(id);
  // A voter of the outgoing half must keep voting until the joint configuration is left.
  if (config.voters.outgoing.has(id)) {
    config.learnersNext.add(id);
  } else {
    withRole(progress, id, true);
    config.learners.add(id);
  }
}

function remove(config: TrackerConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  if (!progress.has(id)) return;
  config.voters.incoming.delete(id);
  config.learners.delete(id);
  config.learnersNext.delete(id);
  // An outgoing voter keeps its progress until the joint configuration is left.
  if (!config.voters.outgoing.has(id)) progress.delete(id);
}

function check(config: TrackerConfig, progress: Map<NodeId, Progress>): ChangeResult {
  checkConfigInvariants(config, progress);
  return { config, progress };
}

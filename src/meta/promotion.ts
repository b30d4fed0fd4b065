/**
 * Quorum-aware promotion of metadata learners (MEM-2, MEM-3). Pure: (members, settings, now) -> the
 * next decisions. The metadata group's voters stay odd: 3, or 5 once the cluster has five members.
 * A ready standard learner is promoted alone when that keeps the count odd, else it waits for a
 * partner (FIFO by readiness) and the two are promoted together in one joint configuration change.
 * Waiting is bounded: a pairing that finds no partner in `pairingWaitMs` is cancelled, and a learner
 * not promoted within `promotionWindowMs` of being ready becomes a StandbyLearner.
 */
import { DEFAULT_PLACEMENT, type NodeId, type PlacementConfig } from "../placement/types.js";
import type { MemberLifecycle, MetaNode } from "./state.js";

/** The settings promotion reads (the cluster's central configuration, PD-8). */
export type PromotionConfig = Pick<PlacementConfig, "pairingWaitMs" | "promotionWindowMs">;

export const DEFAULT_PROMOTION: PromotionConfig = { pairingWaitMs: DEFAULT_PLACEMENT.pairingWaitMs, promotionWindowMs: DEFAULT_PLACEMENT.promotionWindowMs };

export type PromotionDecision =
  /** One or two learners become voters in one configuration change (two: joint consensus). */
  | { kind: "promote"; nodes: NodeId[] }
  | { kind: "set-lifecycle"; node: NodeId; lifecycle: MemberLifecycle };

/** The voter count the metadata group aims at for this many members. */
export function targetVoters(members: number): number {
  return members >= 5 ? 5 : Math.min(3, members % 2 === 1 ? members : members - 1);
}

export function planPromotions(nodes: readonly MetaNode[], cfg: PromotionConfig, nowMs: number): PromotionDecision[] {
  const members = nodes.filter((n) => n.worker !== "removed");
  const decisions: PromotionDecision[] = [];
  // Roles that never vote settle into their lifecycle as soon as they are caught up.
  for (const n of members) {
    if (n.lifecycle !== "ready") continue;
    if (n.role === "analytics") decisions.push({ kind: "set-lifecycle", node: n.id, lifecycle: "keep-as-learner" });
    if (n.role === "standby") decisions.push({ kind: "set-lifecycle", node: n.id, lifecycle: "standby-learner" });
  }
  const voters = members.filter((n) => n.lifecycle === "voter").length;
  const target = Math.max(voters, targetVoters(members.length));
  const waiting = members
    .filter((n) => n.role === "standard" && (n.lifecycle === "ready" || n.lifecycle === "pairing") && n.readyAtMs !== null)
    .sort((a, b) => a.readyAtMs! - b.readyAtMs! || a.id - b.id);
  let room = target - voters;
  let queue = waiting;
  if (room > 0 && voters % 2 === 0 && queue.length > 0) {
    // Even (a voter was lost, or the first one): one more makes it odd.
    decisions.push({ kind: "promote", nodes: [queue[0]!.id] });
    queue = queue.slice(1);
    room--;
  }
  while (room >= 2 && queue.length >= 2) {
    decisions.push({ kind: "promote", nodes: [queue[0]!.id, queue[1]!.id] });
    queue = queue.slice(2);
    room -= 2;
  }
  for (const n of queue) {
    if (nowMs - n.readyAtMs! >= cfg.promotionWindowMs) {
      decisions.push({ kind: "set-lifecycle", node: n.id, lifecycle: "standby-learner" });
    } else if (room >= 2 && n.lifecycle === "ready") {
      decisions.push({ kind: "set-lifecycle", node: n.id, lifecycle: "pairing" });
    } else if (n.lifecycle === "pairing" && (room < 2 || nowMs - (n.pairingSinceMs ?? nowMs) >= cfg.pairingWaitMs)) {
      decisions.push({ kind: "set-lifecycle", node: n.id, lifecycle: "ready" });
    }
  }
  return decisions;
}

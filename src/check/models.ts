/**
 * Sequential specifications for the checker. A model partitions a history into independent parts
 * (keys), gives an initial state, and says whether an operation with its observed result is possible
 * in a state, and the state after it.
 */
import type { Operation } from "./history.js";

export interface Model<S> {
  name: string;
  partition(ops: Operation[]): Operation[][];
  init(): S;
  /** Returns the next state, or undefined if the operation with its observed output is impossible. */
  step(state: S, op: Operation): S | undefined;
  /** A string that is equal for equal states (for the search cache). */
  hash(state: S): string;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** A single register: read / write / cas, initially null. */
export const registerModel: Model<unknown> = {
  name: "register",
  partition: (ops) => [ops],
  init: () => null,
  step(state, op) {
    switch (op.f) {
      case "read":
        return !op.known || same(state, op.output) ? state : undefined;
      case "write":
        return op.input;
      case "cas": {
        const [expected, next] = op.input as [unknown, unknown];
        if (!op.known) return same(state, expected) ? next : state;
        if (op.ok) return same(state, expected) ? next : undefined;
        return same(state, expected) ? undefined : state;
      }
      default:
        return undefined;
    }
  },
  hash: (s) => JSON.stringify(s ?? null),
};

/**
 * A map of string keys to string values; keys are independent. An unset key reads as "" (or null).
 * get / put / append / delete / cas.
 */
export const kvModel: Model<string> = {
  name: "kv",
  partition(ops) {
    const byKey = new Map<string, Operation[]>();
    for (const op of ops) {
      let list = byKey.get(op.key);
      if (list === undefined) byKey.set(op.key, (list = []));
      list.push(op);
    }
    return [...byKey.values()];
  },
  init: () => "",
  step(state, op) {
    const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));
    switch (op.f) {
      case "get":
      case "read":
        return !op.known || state === str(op.output) ? state : undefined;
      case "put":
      case "write":
        return str(op.input);
      case "append":
        return state + str(op.input);
      case "delete":
        return "";
      case "cas": {
        const [expected, next] = op.input as [unknown, unknown];
        const matches = state === str(expected);
        if (!op.known) return matches ? str(next) : state;
        if (op.ok) return matches ? str(next) : undefined;
        return matches ? undefined : state;
      }
      default:
        return undefined;
    }
  },
  hash: (s) => s,
};

export const models: Record<string, Model<unknown>> = {
  register: registerModel,
  kv: kvModel as Model<unknown>,
};

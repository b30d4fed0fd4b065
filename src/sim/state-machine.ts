/**
 * The replicated state machine of the simulator: a small key-value map whose commands come through
 * the log. Every command carries the id of the client request, so the node where the client waits
 * can answer it when the command is applied.
 */
export type Command =
  | { req: number; op: "put"; key: string; value: string }
  | { req: number; op: "cas"; key: string; expected: string; value: string }
  | { req: number; op: "get"; key: string };

export type CommandResult = { ok: boolean; value: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(c: Command): Uint8Array {
  return encoder.encode(JSON.stringify(c));
}

export function decodeCommand(data: Uint8Array): Command {
  return JSON.parse(decoder.decode(data)) as Command;
}

export class KvStateMachine {
  readonly data = new Map<string, string>();

  apply(c: Command): CommandResult {
    const current = this.data.get(c.key) ?? "";
    switch (c.op) {
      case "put":
        this.data.set(c.key, c.value);
        return { ok: true, value: c.value };
      case "cas":
        if (current !== c.expected) return { ok: false, value: current };
        this.data.set(c.key, c.value);
        return { ok: true, value: c.value };
      case "get":
        return { ok: true, value: current };
    }
  }

  read(key: string): string {
    return this.data.get(key) ?? "";
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.data.entries()].sort()));
  }

  static restore(bytes: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (bytes.byteLength === 0) return sm;
    for (const [k, v] of JSON.parse(decoder.decode(bytes)) as [string, string][]) sm.data.set(k, v);
    return sm;
  }

  fingerprint(): string {
    return JSON.stringify([...this.data.entries()].sort());
  }
}

/** The client history a simulation records, in the JSON-lines format of src/check. */
import type { HistoryEvent } from "../check/index.js";

export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];

  record(ev: HistoryEvent): void {
    this.events.push(ev);
  }

  toJsonLines(): string {
    return this.events.map((e) => JSON.stringify(e)).join("\n") + "\n";
  }
}

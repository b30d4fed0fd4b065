export * from "./history.js";
export * from "./models.js";
export * from "./linearizability.js";
export * from "./parse.js";
export * from "./versions.js";
export * from "./recorder.js";
export * from "./sessions.js";

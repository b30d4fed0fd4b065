export { Simulation, runSeed, type SimOptions, type SimResult, type SimStats } from "./simulation.js";
export { Rng } from "../util/rng.js";

/** A flag or setting of `shoal start` that cannot work: printed as is, and the command exits with 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * The one error type of the config layer. Thrown for problems that stop the server (a missing
 * agents directory, a malformed server config file, a bad flag or environment value); problems
 * with a single agent definition are not thrown but reported as an INVALID agent.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** Absolute path of the file at fault, when a file is at fault. */
  readonly file: string | undefined;
  /**
   * What was wrong inside it: a key path (`deployment.base_port`), a flag (`--base-port`) or an
   * environment variable (`ATOLL_DEPLOY_BASE_PORT`); undefined when the whole file or directory
   * is at fault.
   */
  readonly key: string | undefined;

  /** @param message one line, already naming the file and key (the CLI prints it as is). */
  constructor(
    message: string,
    location: { readonly file?: string | undefined; readonly key?: string | undefined } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.file = location.file;
    this.key = location.key;
  }
}

/** True when `error` is a ConfigError. */
export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError;
}

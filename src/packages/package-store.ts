/**
 * The local backend's package capability (SPEC §12): installs an uploaded archive into
 * `<state_dir>/packages/<name>/` after checking everything, provisions it, and removes it again.
 * The state machine of one install and its error model are in docs/packages.md; in short:
 *
 *   receive (sha256, size) → check entries and definition → lock the name → conflicts
 *   → unpack into a new version directory → provision → facts file → link → rediscover
 *   → collect old versions no process uses → start (when asked)
 *
 * Until the link is replaced nothing outside `.staging/` and the new version directory has
 * changed, and both are removed on any failure or abort: a refused or interrupted install
 * leaves nothing behind.
 */
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { parseAgentDefinition } from "../config/parse-definition.ts";
import type {
  AgentBackend,
  InstallResult,
  PackageInstaller,
  PackageUploadHeader,
} from "../core/agent-backend.ts";
import { isValidAgentName } from "../core/agent-name.ts";
import { isLive } from "../core/agent-state.ts";
import type { AgentStatus, ProvisioningStep } from "../core/agent-status.ts";
import { runInBackground } from "../core/background-task.ts";
import type { Clock } from "../core/clock.ts";
import { DeployError, isDeployError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { agentLogPath } from "../platform/log-file.ts";
import {
  MAX_ENTRIES,
  MAX_UNPACKED_BYTES,
  type PackageLimits,
  packageInvalid,
} from "./archive-entries.ts";
import {
  type CheckedArchive,
  checkArchive,
  detectFormat,
  extractArchive,
} from "./archive-reader.ts";
import { NameLocks } from "./name-locks.ts";
import { PackageLayout, readMeta, writeMeta } from "./package-layout.ts";
import {
  DEFAULT_PROVISION_TIMEOUT_MS,
  type ProvisionOptions,
  planProvisioning,
  provision,
} from "./provision.ts";
import { receiveUpload } from "./upload.ts";
import { collectVersions } from "./version-collector.ts";

/** What the store needs from the rest of the daemon. */
export interface PackageHost {
  /** The agents (deploy, undeploy, restart, status and changes of installed agents). */
  readonly backend: AgentBackend;
  /** Config path of `name` in the agents directory; undefined when it is not defined there. */
  directoryAgent(name: string): string | undefined;
  /** Rescans the packages directory and applies the result to the registry, now. */
  refreshPackages(): Promise<void>;
}

export interface PackageStoreOptions {
  /** `<state_dir>`: packages go to `<state_dir>/packages`. */
  readonly stateDir: string;
  /** Directory of the agents' logs: provisioning output goes to `<logDir>/<name>.log`. */
  readonly logDir: string;
  /**
   * Where provisioning output of agent `name` is written instead (the daemon: the agent's FIFO,
   * read by the output keeper, which owns the log file). Default `<logDir>/<name>.log`.
   */
  readonly provisioningOutput?: (name: string) => Promise<string>;
  /** `max_package_bytes`. */
  readonly maxPackageBytes: number;
  readonly host: PackageHost;
  /** Environment of the provisioning steps (the daemon's). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Default 1 GiB (SPEC §12); smaller in tests. */
  readonly maxUnpackedBytes?: number;
  /** Default 10,000 (SPEC §12). */
  readonly maxEntries?: number;
  /** Time limit of all provisioning steps of one install, ms; default 10 minutes. */
  readonly provisionTimeoutMs?: number;
  /** Installs under way at once (uploads included) before TOO_MANY_INSTALLS; default 4. */
  readonly maxConcurrentInstalls?: number;
  /** Interpreter that makes virtual environments; default `python3`. */
  readonly python?: string;
  /** Longest pause in an upload before it is refused, ms; default 60 s. */
  readonly uploadIdleTimeoutMs?: number;
  /** Runs the provisioning steps; default `provision` (tests replace it to hold an install). */
  readonly provision?: (
    steps: readonly ProvisioningStep[],
    options: ProvisionOptions,
  ) => Promise<void>;
}

export class PackageStore implements PackageInstaller {
  readonly maxPackageBytes: number;
  readonly layout: PackageLayout;
  readonly #options: PackageStoreOptions;
  readonly #limits: PackageLimits;
  readonly #locks: NameLocks;
  #active = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(options: PackageStoreOptions) {
    this.#options = options;
    this.maxPackageBytes = options.maxPackageBytes;
    this.layout = new PackageLayout(options.stateDir);
    this.#locks = new NameLocks((name) => this.#collectHeld(name), options.logger);
    this.#limits = {
      maxPackageBytes: options.maxPackageBytes,
      maxUnpackedBytes: options.maxUnpackedBytes ?? MAX_UNPACKED_BYTES,
      maxEntries: options.maxEntries ?? MAX_ENTRIES,
    };
  }

  /**
   * Creates the directories, removes uploads a previous run left in `.staging/`, and starts
   * collecting an agent's old versions when it stops.
   */
  async open(): Promise<void> {
    await mkdir(this.layout.store, { recursive: true });
    await rm(this.layout.staging, { recursive: true, force: true });
    await mkdir(this.layout.staging, { recursive: true });
    this.#unsubscribe ??= this.#options.host.backend.events.subscribe((change) => {
      if (
        change.kind === "change" &&
        isLive(change.previousState) &&
        !isLive(change.status.state)
      ) {
        this.#collectInBackground(change.name);
      }
    });
  }

  /** Stops listening for changes. */
  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /**
   * Deletes every version no agent needs: not installed, not run by a live agent. Run once the
   * daemon knows its live agents (after restoring state), and after a crash mid-install.
   */
  async collectAll(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.layout.store);
    } catch {
      return;
    }
    for (const name of names) await this.#collect(name);
  }

  async install(
    header: PackageUploadHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<InstallResult> {
    if (header.sizeBytes !== undefined && header.sizeBytes > this.maxPackageBytes) {
      throw packageInvalid(
        `the archive is larger than max_package_bytes, ${this.maxPackageBytes} bytes (${header.sizeBytes} bytes announced)`,
        { max_package_bytes: String(this.maxPackageBytes) },
      );
    }
    const limit = this.#options.maxConcurrentInstalls ?? 4;
    if (this.#active >= limit) {
      throw new DeployError(
        "TOO_MANY_INSTALLS",
        `${limit} installs are under way; try again when one has finished`,
      );
    }
    this.#active += 1;
    let staging: string | undefined;
    try {
      await mkdir(this.layout.staging, { recursive: true });
      staging = await mkdtemp(path.join(this.layout.staging, "upload-"));
      const archive = path.join(staging, "archive");
      const received = await receiveUpload(chunks, {
        file: archive,
        maxBytes: this.maxPackageBytes,
        expectedBytes: header.sizeBytes,
        sha256: header.sha256,
        signal,
        ...(this.#options.uploadIdleTimeoutMs !== undefined && {
          idleTimeoutMs: this.#options.uploadIdleTimeoutMs,
        }),
      });
      const format = detectFormat(received.head, header.format);
      const checked = await checkArchive(archive, format, this.#limits, signal);
      const name = this.#definedName(checked);
      return await this.#locks.hold(name, "install", () =>
        this.#installNamed(name, header, archive, staging ?? "", checked, received.bytes, signal),
      );
    } finally {
      this.#active -= 1;
      if (staging !== undefined) await rm(staging, { recursive: true, force: true });
    }
  }

  /** The agent's name from the package's definition, which must be valid per SPEC §2. */
  #definedName(checked: CheckedArchive): string {
    const { layout } = checked;
    const shownPath = `/${[...layout.root, layout.definitionFile].join("/")}`;
    const parsed = parseAgentDefinition(shownPath, checked.definitionText, layout.folderName ?? "");
    if (!parsed.ok) throw packageInvalid(`its definition is invalid: ${parsed.message}`);
    return parsed.definition.name;
  }

  async #installNamed(
    name: string,
    header: PackageUploadHeader,
    archive: string,
    staging: string,
    checked: CheckedArchive,
    archiveBytes: number,
    signal: AbortSignal,
  ): Promise<InstallResult> {
    const { host, logger } = this.#options;
    const taken = host.directoryAgent(name);
    if (taken !== undefined) {
      throw new DeployError(
        "AGENT_NAME_TAKEN",
        `agent ${name} is defined in the agents directory (${taken}); an installed package never replaces it: rename the package's agent or remove ${taken}`,
        { agent: name, config_path: taken },
      );
    }
    const current = await this.layout.current(name);
    const currentMeta = current === undefined ? undefined : await readMeta(this.layout, current);
    if (current !== undefined && currentMeta?.sha256 === header.sha256) {
      await host.refreshPackages();
      const status = header.start ? await this.#start(name, false) : host.backend.status(name);
      return { outcome: "ALREADY_INSTALLED", status };
    }
    if (current !== undefined && !header.force) {
      const from =
        currentMeta === undefined
          ? ""
          : ` (sha256 ${currentMeta.sha256.slice(0, 12)}…, installed ${new Date(currentMeta.installedAtMs).toISOString()})`;
      throw new DeployError(
        "PACKAGE_EXISTS",
        `agent ${name} is installed already from another archive${from}; install with force to replace it`,
        { agent: name, ...(currentMeta !== undefined && { sha256: currentMeta.sha256 }) },
      );
    }

    const nowMs = this.#options.clock.now();
    const versionDir = this.layout.versionDir(name, this.layout.newVersion(header.sha256, nowMs));
    const metaFile = this.layout.metaFile(versionDir);
    await mkdir(this.layout.versions(name), { recursive: true });
    try {
      await extractArchive(archive, checked, this.#limits, versionDir, signal);
      const steps = await planProvisioning(versionDir);
      await (this.#options.provision ?? provision)(steps, {
        dir: versionDir,
        name,
        logPath:
          (await this.#options.provisioningOutput?.(name)) ??
          agentLogPath(this.#options.logDir, name),
        env: this.#options.env,
        timeoutMs: this.#options.provisionTimeoutMs ?? DEFAULT_PROVISION_TIMEOUT_MS,
        signal,
        ...(this.#options.python !== undefined && { python: this.#options.python }),
      });
      await writeMeta(metaFile, {
        name,
        sha256: header.sha256,
        installedAtMs: nowMs,
        format: checked.format,
        archiveBytes,
        unpackedBytes: checked.unpackedBytes,
        entries: checked.entries,
        provisioned: steps,
      });
      // The last moment to give up: after the link moves, the install has happened.
      signal.throwIfAborted();
      await this.layout.activate(name, versionDir, staging);
    } catch (error) {
      await rm(versionDir, { recursive: true, force: true });
      await rm(metaFile, { force: true });
      // Removes .store/<name> too when nothing else is there or in use (a first install).
      await this.#collectHeld(name);
      throw error;
    }
    logger.info("agent package installed", {
      agent: name,
      sha256: header.sha256,
      version: path.basename(versionDir),
      replaced: current !== undefined,
    });
    await host.refreshPackages();
    await this.#collectHeld(name);
    const status = header.start
      ? await this.#start(name, current !== undefined)
      : host.backend.status(name);
    return { outcome: current === undefined ? "INSTALLED" : "REPLACED", status };
  }

  /** Deploys the agent; restarts it instead when it runs an older version that was replaced. */
  async #start(name: string, replaced: boolean): Promise<AgentStatus> {
    const { backend } = this.#options.host;
    try {
      return replaced && isLive(backend.status(name).state)
        ? await backend.restart(name)
        : await backend.deploy(name);
    } catch (error) {
      if (!isDeployError(error)) throw error;
      throw new DeployError(
        error.code,
        `agent ${name} is installed, but it did not start: ${error.message}`,
        { ...error.metadata, agent: name, installed: "true" },
        { cause: error },
      );
    }
  }

  async remove(name: string): Promise<AgentStatus> {
    if (!isValidAgentName(name)) {
      // The backend words the refusal of a malformed name (INVALID_AGENT_NAME).
      this.#options.host.backend.status(name);
    }
    return this.#locks.hold(name, "remove", () => this.#removeNamed(name));
  }

  async #removeNamed(name: string): Promise<AgentStatus> {
    const { host, logger } = this.#options;
    const current = await this.layout.current(name);
    if (current === undefined) {
      const taken = host.directoryAgent(name);
      if (taken !== undefined) {
        throw new DeployError(
          "AGENT_NOT_INSTALLED",
          `agent ${name} comes from the agents directory (${taken}), not from a package; only installed agents can be removed`,
          { agent: name, config_path: taken },
        );
      }
      host.backend.status(name); // AGENT_NOT_FOUND when the server does not know it at all
      throw new DeployError("AGENT_NOT_INSTALLED", `agent ${name} is not an installed package`, {
        agent: name,
      });
    }
    let last = host.backend.status(name);
    if (isLive(last.state)) last = await host.backend.undeploy(name);
    await this.layout.deactivate(name);
    await host.refreshPackages();
    // A Deploy may have slipped in before the link went: stop what runs from the store.
    for (;;) {
      let now: AgentStatus;
      try {
        now = host.backend.status(name);
      } catch {
        break;
      }
      if (!isLive(now.state) || !now.configPath.startsWith(this.layout.versions(name) + path.sep)) {
        break;
      }
      last = await host.backend.undeploy(name);
    }
    await rm(this.layout.versions(name), { recursive: true, force: true });
    logger.info("agent package removed", { agent: name });
    return last;
  }

  /** {@link #collect} without waiting for it, when an agent stops. */
  #collectInBackground(name: string): void {
    const { logger } = this.#options;
    runInBackground({ logger, fields: { agent: name } }, "collect old package versions", () =>
      this.#collect(name),
    );
  }

  /** Collects `name`'s old versions now or after the operation holding it; logs a failure. */
  async #collect(name: string): Promise<void> {
    await this.#locks.collect(name).catch((error: unknown) =>
      this.#options.logger.warn("collecting old package versions failed", {
        agent: name,
        error: String(error),
      }),
    );
  }

  /** Collects `name`'s old versions; the caller holds the name. */
  #collectHeld(name: string): Promise<void> {
    return collectVersions(this.layout, this.#options.host.backend, name);
  }
}

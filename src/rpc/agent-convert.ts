import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Agent,
  AgentSchema,
  AgentSource,
  AgentState,
  ExitInfoSchema,
  HealthStatus,
  type InstalledPackage,
  InstalledPackageSchema,
  PackageFormat as ProtoPackageFormat,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import type { AgentStateName, HealthName } from "../core/agent-state.ts";
import type { AgentStatus, InstalledPackageInfo, PackageFormat } from "../core/agent-status.ts";

/** Domain state name → proto enum value (the proto names carry the `AGENT_STATE_` prefix). */
export function agentStateToProto(state: AgentStateName): AgentState {
  return AgentState[state];
}

/** Proto enum value → domain state name; undefined for UNSPECIFIED or unknown values. */
export function agentStateFromProto(value: number): AgentStateName | undefined {
  for (const [name, number] of Object.entries(AgentState)) {
    if (number === value && name !== "UNSPECIFIED") return name as AgentStateName;
  }
  return undefined;
}

export function healthToProto(health: HealthName): HealthStatus {
  return HealthStatus[health];
}

/** Domain package format → proto enum value. */
export function packageFormatToProto(format: PackageFormat): ProtoPackageFormat {
  return format === "zip" ? ProtoPackageFormat.ZIP : ProtoPackageFormat.TAR_GZ;
}

/** Proto enum value → domain package format; undefined for UNSPECIFIED; null for unknown values. */
export function packageFormatFromProto(value: number): PackageFormat | undefined | null {
  switch (value) {
    case ProtoPackageFormat.UNSPECIFIED:
      return undefined;
    case ProtoPackageFormat.TAR_GZ:
      return "tar.gz";
    case ProtoPackageFormat.ZIP:
      return "zip";
    default:
      return null;
  }
}

function installedPackageToProto(info: InstalledPackageInfo): InstalledPackage {
  return create(InstalledPackageSchema, {
    sha256: info.sha256,
    installTime: timestampFromMs(info.installedAtMs),
    format: packageFormatToProto(info.format),
    archiveBytes: BigInt(info.archiveBytes),
    unpackedBytes: BigInt(info.unpackedBytes),
    entries: info.entries,
    provisioned: [...info.provisioned],
  });
}

function timestamp(ms: number | undefined) {
  return ms === undefined ? undefined : timestampFromMs(ms);
}

/** The proto `Agent` for a domain status. */
export function agentToProto(s: AgentStatus): Agent {
  return create(AgentSchema, {
    name: s.name,
    state: agentStateToProto(s.state),
    health: healthToProto(s.health),
    port: s.port,
    pid: s.pid,
    restartCount: s.restartCount,
    maxRestarts: s.maxRestarts,
    configPath: s.configPath,
    version: s.version,
    description: s.description,
    capabilities: [...s.capabilities],
    startTime: timestamp(s.startTimeMs),
    stateReason: s.stateReason,
    stateMessage: s.stateMessage,
    stateTime: timestamp(s.stateSinceMs),
    lastExit:
      s.lastExit === undefined
        ? undefined
        : create(ExitInfoSchema, {
            code: s.lastExit.code ?? undefined,
            signal: s.lastExit.signal ?? "",
            time: timestampFromMs(s.lastExit.atMs),
          }),
    nextRestartTime: timestamp(s.nextRestartAtMs),
    lastHealthCheckTime: timestamp(s.lastHealthCheckMs),
    healthMessage: s.healthMessage,
    memoryBytes: BigInt(s.memoryBytes),
    warnings: [...s.warnings],
    definitionRemoved: s.definitionRemoved,
    logPath: s.logPath,
    host: s.host,
    instance: s.instance,
    source: s.installedPackage === undefined ? AgentSource.DIRECTORY : AgentSource.PACKAGE,
    installedPackage:
      s.installedPackage === undefined ? undefined : installedPackageToProto(s.installedPackage),
  });
}

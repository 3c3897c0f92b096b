/**
 * The cgroup hierarchies of this machine (docs/platform.md, "cgroups"): which are mounted where
 * (`/proc/self/mountinfo`: cgroup2 at `/sys/fs/cgroup` on a pure v2 system, at
 * `/sys/fs/cgroup/unified` on a hybrid one; v1 ones per controller) and which cgroup of each a
 * process is in (`/proc/<pid>/cgroup`). Pure parsing; `cgroups.ts` decides which to use.
 */

/** The cgroup version of a hierarchy. */
export type CgroupVersion = 1 | 2;

/** A mounted cgroup hierarchy. */
export interface CgroupHierarchy {
  readonly version: CgroupVersion;
  /** Where it is mounted, e.g. `/sys/fs/cgroup` (pure v2) or `/sys/fs/cgroup/unified`. */
  readonly mountPoint: string;
  /** v1: the controllers bound to it (`pids`, `freezer`, ... or `name=systemd`); v2: none. */
  readonly controllers: readonly string[];
}

/**
 * The cgroup hierarchies of `/proc/self/mountinfo` text: cgroup2 mounts, and cgroup (v1) mounts
 * with their controllers (from the super options, e.g. `rw,pids`). The root of each mount must be
 * `/` (a bind mount of a sub-cgroup, as in some containers, cannot place the daemon's own path).
 */
export function parseCgroupMounts(mountinfo: string): CgroupHierarchy[] {
  const found: CgroupHierarchy[] = [];
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const [left, right] = line.split(" - ");
    if (left === undefined || right === undefined) continue;
    const fields = left.split(" ");
    const [fstype, , superOptions = ""] = right.split(" ");
    const root = fields[3];
    const mountPoint = fields[4];
    if (root !== "/" || mountPoint === undefined) continue;
    const unescaped = mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) =>
      String.fromCharCode(Number.parseInt(octal, 8)),
    );
    if (fstype === "cgroup2") {
      found.push({ version: 2, mountPoint: unescaped, controllers: [] });
    } else if (fstype === "cgroup") {
      const controllers = superOptions
        .split(",")
        .filter((o) => o !== "rw" && o !== "ro" && !o.startsWith("release_agent"));
      found.push({ version: 1, mountPoint: unescaped, controllers });
    }
  }
  return found;
}

/**
 * The path of this process's cgroup in `hierarchy` (`/proc/self/cgroup`: `0::/path` for v2,
 * `N:controllers:/path` for v1), or undefined when it is not listed.
 */
export function ownCgroupPath(
  hierarchy: CgroupHierarchy,
  procSelfCgroup: string,
): string | undefined {
  for (const line of procSelfCgroup.split("\n")) {
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first === -1 || second === -1) continue;
    const controllers = line.slice(first + 1, second);
    const cgroupPath = line.slice(second + 1);
    if (hierarchy.version === 2 && line.startsWith("0::")) return cgroupPath;
    if (
      hierarchy.version === 1 &&
      controllers !== "" &&
      controllers.split(",").some((c) => hierarchy.controllers.includes(c))
    ) {
      return cgroupPath;
    }
  }
  return undefined;
}

import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DeployError } from "../../src/core/errors.ts";
import {
  packageToml,
  sha256,
  type TarEntry,
  tarGz,
  withDeclaredSize,
  type ZipEntry,
  zip,
} from "./archives.ts";
import { createPackageHarness, EMPTY_TREE, FAULT_COMMAND, type PackageHarness } from "./harness.ts";

let h: PackageHarness;
beforeEach(async () => {
  h = await createPackageHarness({ store: { maxEntries: 200, maxUnpackedBytes: 2 * 1024 * 1024 } });
});
afterEach(() => h.close());

const definition = { name: "evil/agent.toml", content: packageToml("evil", FAULT_COMMAND) };

/** Installing `archive` fails with PACKAGE_INVALID whose message matches `why`; nothing landed. */
async function refused(archive: Buffer, why: RegExp, header = {}): Promise<DeployError> {
  const error = await h.install(archive, header).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeployError);
  const deployError = error as DeployError;
  expect(deployError.code).toBe("PACKAGE_INVALID");
  expect(deployError.message).toMatch(why);
  expect(await h.tree()).toEqual(EMPTY_TREE);
  expect(h.registry.has("evil")).toBe(false);
  return deployError;
}

function tarOf(...entries: TarEntry[]): Buffer {
  return tarGz([{ name: "evil/", type: "Directory" }, definition, ...entries]);
}

function zipOf(...entries: ZipEntry[]): Buffer {
  return zip([definition, ...entries]);
}

describe("hostile .tar.gz packages", () => {
  it("refuses an entry that climbs out with .. (zip-slip)", async () => {
    await refused(
      tarOf({ name: "evil/../../escaped.txt", content: "x" }),
      /leaves the package with "\.\."/,
    );
  });

  it("refuses an absolute path", async () => {
    await refused(tarOf({ name: "/tmp/atoll-absolute.txt", content: "x" }), /absolute path/);
  });

  it("refuses a symbolic link, inside or out of the tree", async () => {
    await refused(
      tarOf({ name: "evil/out", type: "SymbolicLink", linkpath: "/etc" }),
      /symbolic link/,
    );
    await refused(
      tarOf({ name: "evil/in", type: "SymbolicLink", linkpath: "agent.toml" }),
      /symbolic link/,
    );
  });

  it("refuses a hard link out of the tree", async () => {
    await refused(
      tarOf({ name: "evil/passwd", type: "Link", linkpath: "/etc/passwd" }),
      /hard link/,
    );
  });

  it("refuses device and FIFO entries", async () => {
    await refused(tarOf({ name: "evil/null", type: "CharacterDevice" }), /is a device/);
    await refused(tarOf({ name: "evil/disk", type: "BlockDevice" }), /is a device/);
    await refused(tarOf({ name: "evil/pipe", type: "FIFO" }), /FIFO/);
  });

  it("refuses a gzip bomb before inflating it to the end", async () => {
    // 64 MiB of zeros, a few dozen KiB compressed, far over the 2 MiB test bound.
    const bomb = tarOf({ name: "evil/zeros", content: new Uint8Array(64 * 1024 * 1024) });
    expect(bomb.length).toBeLessThan(1024 * 1024);
    await refused(bomb, /unpacks to more than/);
  });

  it("refuses more entries than the bound", async () => {
    const many = Array.from({ length: 250 }, (_, i) => ({ name: `evil/f${i}`, content: "" }));
    await refused(tarOf(...many), /more than 200 entries/);
  });

  it("refuses duplicate entries and files under files", async () => {
    await refused(
      tarOf({ name: "evil/a", content: "1" }, { name: "evil/a", content: "2" }),
      /more than once/,
    );
    await refused(
      tarOf({ name: "evil/a", content: "1" }, { name: "evil/a/b", content: "2" }),
      /which is a file/,
    );
  });

  it("refuses a package without a definition at the root or in one top-level folder", async () => {
    await refused(
      tarGz([{ name: "a/b/agent.toml", content: packageToml("evil", FAULT_COMMAND) }]),
      /no agent\.toml/,
    );
    await refused(tarGz([definition, { name: "other/x", content: "" }]), /no agent\.toml/);
  });

  it("refuses an invalid definition, naming the key", async () => {
    const bad = tarGz([
      { name: "evil/agent.toml", content: '[agent]\nname = "evil"\n[deployment]\nport = "x"\n' },
    ]);
    await refused(bad, /invalid: \/evil\/agent\.toml: deployment\.port/);
  });

  it("refuses a shipped .venv", async () => {
    await refused(
      tarOf({ name: "evil/.venv/bin/python", content: "#!/bin/sh\n", mode: 0o755 }),
      /\.venv/,
    );
  });

  it("refuses bytes that are neither a gzip nor a zip, and a damaged tar", async () => {
    await refused(Buffer.from("#!/bin/sh\nrm -rf /\n"), /neither a \.tar\.gz nor a \.zip/);
    const damaged = Buffer.from(tarOf());
    await refused(
      damaged.subarray(0, damaged.length - 30),
      /not a valid gzip stream|not a valid tar/,
    );
  });
});

describe("hostile .zip packages", () => {
  it("refuses zip-slip, absolute paths and backslashes", async () => {
    await refused(
      zipOf({ name: "../escaped.txt", content: "x" }),
      /invalid relative path|leaves the package/,
    );
    await refused(zipOf({ name: "/tmp/atoll-absolute.txt", content: "x" }), /absolute path/);
    await refused(zipOf({ name: "evil\\..\\..\\x", content: "x" }), /backslash|invalid characters/);
  });

  it("refuses symbolic links and devices by their Unix mode", async () => {
    await refused(
      zipOf({ name: "evil/out", content: "/etc", unixMode: 0o120777 }),
      /symbolic link/,
    );
    await refused(zipOf({ name: "evil/null", unixMode: 0o020666 }), /is a device/);
  });

  it("refuses a zip bomb that declares its size, without inflating anything", async () => {
    const honest = zipOf({ name: "evil/zeros", content: new Uint8Array(8 * 1024 * 1024) });
    await refused(honest, /unpacks to more than/);
  });

  it("refuses a zip bomb whose directory lies about the size, while it inflates", async () => {
    const zeros = zip([definition, { name: "evil/zeros", content: new Uint8Array(1024 * 1024) }]);
    // Every entry now claims 10 bytes: the listing passes, the inflation overruns.
    await refused(
      withDeclaredSize(zeros, 10),
      /too many bytes|more bytes than it declares|fewer bytes/,
    );
  });

  it("refuses more than 10,000 entries at the real bound", async () => {
    await h.close();
    h = await createPackageHarness();
    const many = Array.from({ length: 10_001 }, (_, i) => ({ name: `evil/f${i}`, content: "" }));
    await refused(zipOf(...many), /more than 10000 entries/);
  });
});

describe("uploads that do not add up", () => {
  it("refuses a wrong checksum", async () => {
    const archive = tarOf();
    await refused(archive, /checksum mismatch/, { sha256: sha256(Buffer.from("something else")) });
  });

  it("refuses an archive over max_package_bytes while it streams, and one announced as such", async () => {
    const big = tarOf({
      name: "evil/noise",
      content: randomBytes(65_536),
    });
    await h.close();
    h = await createPackageHarness({ store: { maxPackageBytes: 16 * 1024 } });
    await refused(big, /larger than max_package_bytes/, { sizeBytes: undefined });
    await refused(big, /larger than max_package_bytes, 16384 bytes \(\d+ bytes announced\)/);
  });

  it("refuses a truncated upload and one longer than announced", async () => {
    const archive = tarOf();
    await refused(archive.subarray(0, archive.length - 10), /truncated/, {
      sha256: sha256(archive),
      sizeBytes: archive.length,
    });
    await refused(archive, /more than the \d+ bytes announced/, { sizeBytes: archive.length - 1 });
  });

  it("refuses an upload that stalls, and frees its slot", async () => {
    await h.close();
    h = await createPackageHarness({
      store: { uploadIdleTimeoutMs: 200, maxConcurrentInstalls: 1 },
    });
    const archive = tarOf();
    async function* stalls() {
      yield archive.subarray(0, 10);
      await new Promise(() => {});
    }
    const header = {
      sha256: sha256(archive),
      force: false,
      start: false,
      format: undefined,
      sizeBytes: undefined,
    };
    await expect(h.store.install(header, stalls(), new AbortController().signal)).rejects.toThrow(
      /the upload stalled: no bytes for 0.2 s/,
    );
    expect(await h.tree()).toEqual(EMPTY_TREE);
    // The one slot is free again.
    await refused(archive, /checksum mismatch/, { sha256: sha256(Buffer.from("x")) });
  });

  it("leaves nothing behind when the upload is cut mid-stream", async () => {
    const archive = tarOf({ name: "evil/blob", content: new Uint8Array(300_000).fill(7) });
    const controller = new AbortController();
    async function* cut() {
      yield archive.subarray(0, 100_000);
      controller.abort(new DOMException("the client cancelled the call", "AbortError"));
      throw controller.signal.reason;
    }
    const error = await h.store
      .install(
        {
          sha256: sha256(archive),
          force: false,
          start: false,
          format: undefined,
          sizeBytes: undefined,
        },
        cut(),
        controller.signal,
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect((error as DOMException).name).toBe("AbortError");
    expect(await h.tree()).toEqual(EMPTY_TREE);
  });
});

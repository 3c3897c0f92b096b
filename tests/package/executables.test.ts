import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "./installed.ts";

describe("the executables' Node version check", () => {
  it("asks for exactly the Node version that package.json's engines names", async () => {
    const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8"));
    const launch = await readFile(path.join(REPO, "bin", "launch.js"), "utf8");
    const minimum = /^export const MINIMUM = \[(\d+), (\d+), (\d+)\];$/m.exec(launch);
    expect(pkg.engines.node).toBe(`>=${minimum?.slice(1).join(".")}`);
  });

  it("imports nothing before the check: each bin loads only bin/launch.js statically", async () => {
    for (const name of ["atoll-deploy.js", "atoll-agent.js", "launch.js"]) {
      const text = await readFile(path.join(REPO, "bin", name), "utf8");
      const imports = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
      expect(imports).toEqual(name === "launch.js" ? [] : ["./launch.js"]);
    }
  });
});

#!/usr/bin/env node
// Entry point of the `atoll-deploy` executable. The sources are TypeScript run
// directly by Node's type stripping (Node >= 22.18 / 24), so there is no build step.
import "../src/cli/main.ts";

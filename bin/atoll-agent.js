#!/usr/bin/env node
// Entry point of the `atoll-agent` executable, the reference agent runtime (SPEC §8): the
// Node.js version check, then the compiled runtime (bin/launch.js says why in that order).
import { launch } from "./launch.js";

launch("atoll-agent", "../dist/src/agent/main.js");

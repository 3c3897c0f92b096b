#!/usr/bin/env node
// Entry point of the `atoll-agent` executable: the reference agent runtime (SPEC §8).
import "../src/agent/main.ts";

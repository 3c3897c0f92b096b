#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=50
// Entry point of the `atoll-deploy` executable: the Node.js version check, then the compiled CLI
// (bin/launch.js says why in that order).
// --max-semi-space-size=2 (MiB): V8 sizes the young generation by the machine's memory
// (tens of MiB here) and a daemon answering status calls fills it with short-lived garbage
// before collecting; a small one keeps the daemon's RSS about 50 MiB lower at the cost of
// more, shorter scavenges. --heap-growing-percent=50: after a full collection V8 lets the old
// generation grow to 1.5 times what is live (by default up to 4 times); under the benchmark's
// status load that keeps the daemon about 45 MiB smaller for about 10-15 % more CPU per
// GetStatus. `npm start` and the benchmark pass the same flags.
import { launch } from "./launch.js";

launch("atoll-deploy", "../dist/src/cli/main.js");

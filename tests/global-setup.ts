/**
 * Runs once before the test files: builds the dashboard bundle into `dist-ui/` (as
 * `npm run build:ui` does), so the HTTP and browser tests on a fresh clone serve the page built
 * from the current `src/ui/`, never a stale or missing one. Takes well under a second.
 */
import { buildDashboard } from "../src/ui/build.ts";

export default async function setup(): Promise<void> {
  await buildDashboard();
}
